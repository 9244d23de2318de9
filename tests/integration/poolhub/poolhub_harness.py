"""The pool hub test harness: ``Stores`` (a backend's stores, opened as a registry as often as a test needs) and
``PoolHubProcess`` (the real ``aitbc poolhub run`` over such stores, on a free loopback port)."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from aitbc.poolhub.redis_registry import RedisRegistry
from aitbc.poolhub.registry import Registry
from aitbc.poolhub.sql_registry import SqlRegistry
from support.ports import free_port
from support.postgres import PostgresServer
from support.redis import RedisServer

BACKENDS = ["sqlite", "postgresql", "redis+postgresql"]
_counter = itertools.count()


@dataclass
class Stores:
    backend: str
    sql_url: str
    redis_url: str | None = None
    prefix: str = ""
    opened: list[Registry] = field(default_factory=list)

    def open(self, live_ttl_ms: int = 60_000) -> Registry:
        registry: Registry
        if self.redis_url is None:
            registry = SqlRegistry(self.sql_url)
        else:
            registry = RedisRegistry(self.redis_url, self.sql_url, live_ttl_ms=live_ttl_ms, prefix=self.prefix)
        self.opened.append(registry)
        return registry

    def close_all(self) -> None:
        for registry in self.opened:
            registry.close()


def make_stores(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    n = next(_counter)
    if backend == "sqlite":
        return Stores(backend, f"sqlite:///{tmp_path / 'poolhub.db'}")
    pg: PostgresServer = request.getfixturevalue("postgres")
    sql_url = pg.create_database(f"poolhub_{int(time.time() * 1000)}_{n}")
    if backend == "postgresql":
        return Stores(backend, sql_url)
    redis: RedisServer = request.getfixturevalue("redis_server")
    return Stores(backend, sql_url, redis.url(), prefix=f"test{n}:")


@dataclass
class PoolHubProcess:
    """``python -m aitbc poolhub run`` on a free loopback port, over the given stores."""

    data_dir: Path
    stores: Stores | None = None
    token: str | None = None
    miner_timeout_seconds: float = 15.0
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(4):
            self.port = free_port()
            command = [sys.executable, "-m", "aitbc", "poolhub", "run", "--data-dir", str(self.data_dir)]
            command += ["--port", str(self.port), "--miner-timeout-seconds", str(self.miner_timeout_seconds)]
            if self.stores is not None and self.stores.backend != "sqlite":
                command += ["--database-url", self.stores.sql_url]
            if self.stores is not None and self.stores.redis_url:
                command += ["--redis-url", self.stores.redis_url]
            if self.token:
                command += ["--api-token", self.token]
            env = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")} | self.env
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                        return
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if "address already in use" not in self.log_path.read_text(errors="replace").lower():
                break
        raise AssertionError(f"pool hub did not start; log:\n{self.log_path.read_text(errors='replace')[-4000:]}")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("pool hub ignored SIGTERM") from None
        return int(self.proc.returncode)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"} if (token or self.token) else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)
