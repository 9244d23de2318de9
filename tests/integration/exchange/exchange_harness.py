"""Helpers for the exchange tests: an app on a fresh SQLite database (in process through Starlette's
TestClient, lifespan and all), users with sessions, funding through the same command path as deposits."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from aitbc.exchange.app import create_app
from aitbc.exchange.config import ExchangeSettings
from aitbc.exchange.service import ExchangeService
from aitbc.market.trading import Deposit, compute_state_hash
from support.ports import free_port

AIT = 1_000_000
_refs = itertools.count(1)


class Harness:
    def __init__(self, client: TestClient, service: ExchangeService) -> None:
        self.client = client
        self.service = service

    def user(self, name: str, password: str = "correct horse battery") -> dict[str, Any]:
        r = self.client.post("/api/v1/users", json={"username": name, "password": password})
        assert r.status_code == 201, r.text
        r = self.client.post("/api/v1/sessions", json={"username": name, "password": password})
        assert r.status_code == 201, r.text
        body = r.json()
        return {"id": body["user_id"], "token": body["token"], "h": {"Authorization": f"Bearer {body['token']}"}}

    def fund(self, user: dict[str, Any], btc: int = 0, ait: int = 0) -> None:
        for asset, amount in (("BTC", btc), ("AITBC", ait)):
            if amount:
                self.run(self.service.submit(Deposit(str(user["id"]), asset, amount, f"test-{next(_refs)}")))

    def run(self, coro: Any) -> Any:
        portal = self.client.portal
        assert portal is not None

        async def call() -> Any:
            return await coro

        return portal.call(call)

    def balances(self, user: dict[str, Any]) -> dict[str, Any]:
        r = self.client.get("/api/v1/balances", headers=user["h"])
        assert r.status_code == 200, r.text
        return dict(r.json()["balances"])

    def state(self) -> str:
        return compute_state_hash(self.service.engine)

    def check_invariants(self) -> None:
        self.run(self.service.check_all_invariants())


def settings_for(tmp: Path, **overrides: Any) -> ExchangeSettings:
    base: dict[str, Any] = {
        "data_dir": tmp,
        "password_opslimit": 1,
        "password_memlimit": 8 * 1024 * 1024,
        "market": {"tick_size": 10, "lot_size": 100_000, "taker_fee_bps": 10},
    }
    base.update(overrides)
    return ExchangeSettings(**base)


@contextmanager
def running(settings: ExchangeSettings, service: ExchangeService | None = None) -> Iterator[Harness]:
    service = service or ExchangeService(settings)
    app = create_app(settings, service)
    with TestClient(app) as client:
        harness = Harness(client, service)
        yield harness
        harness.check_invariants()


# -- a real ``aitbc exchange run`` process ------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")}
    return {**env, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb", **extra}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aitbc", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(**(env or {})),
        check=False,
    )


@contextmanager
def exchange_process(data_dir: Path, env: dict[str, str]) -> Iterator[str]:
    """``aitbc exchange run`` on a free port until /healthz answers; yields its URL, stops it (SIGTERM) after."""
    port = free_port()
    log = (data_dir.parent / f"{data_dir.name}.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aitbc",
            "exchange",
            "run",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=child_env(**env),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"exchange exited: {(data_dir.parent / f'{data_dir.name}.log').read_text()}"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "exchange did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
