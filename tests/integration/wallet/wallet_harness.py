"""Helpers for the REAL wallet daemon (``python -m aitbc wallet daemon``) over a real node, on loopback sockets."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from aitbc.client.wallet import WalletClient
from support.ports import free_port

PASSPHRASE = "correct horse battery staple"
PYTHON = sys.executable


def clean_env(**extra: str) -> dict[str, str]:
    """No AITBC_* settings leaking in from the developer's shell; a wide terminal for rich."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")}
    return {**env, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb", **extra}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "aitbc", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(**(env or {})),
        check=False,
    )


@dataclass
class DaemonProcess:
    wallet_dir: Path
    log_path: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.wallet_dir / "daemon.token").read_text().strip()

    def client(self, token: str | None = None) -> WalletClient:
        return WalletClient(self.url, self.token if token is None else token)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("wallet daemon ignored SIGTERM") from None
        return int(self.proc.returncode)


def start_daemon(wallet_dir: Path, rpc_url: str | None, *extra: str) -> DaemonProcess:
    log_path = wallet_dir.parent / f"{wallet_dir.name}-daemon.log"
    for _ in range(4):
        port = free_port()
        args = [PYTHON, "-m", "aitbc", "wallet", "daemon", "--wallet-dir", str(wallet_dir), "--port", str(port)]
        if rpc_url:
            args += ["--rpc", rpc_url]
        with log_path.open("ab") as log:
            proc = subprocess.Popen([*args, *extra], stdout=log, stderr=subprocess.STDOUT, env=clean_env())
        daemon = DaemonProcess(wallet_dir, log_path, port, proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError, OSError):
                if (wallet_dir / "daemon.token").exists() and httpx.get(f"{daemon.url}/healthz", timeout=1).is_success:
                    return daemon
            time.sleep(0.05)
        daemon.stop()
        if "cannot listen" not in daemon.log_text():
            raise AssertionError(f"wallet daemon did not start:\n{daemon.log_text()[-3000:]}")
    raise AssertionError("wallet daemon: no free port")


DaemonFactory = Callable[..., DaemonProcess]


def wallet_cli(*args: str, passphrase: str | None = PASSPHRASE, **env: str) -> subprocess.CompletedProcess[str]:
    extra = {"AITBC_WALLET_PASSPHRASE": passphrase} if passphrase is not None else {}
    return run_cli(*args, env={**extra, **env})


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def wait_status(client: Any, tx_hash: str) -> dict[str, Any]:
    status: dict[str, Any] = client.wait_for_tx(tx_hash)
    return status
