"""One child process of the devnet: started with its log, waited on until healthy, stopped gently."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from aitbc.protocol.errors import ConfigError
from aitbc.runtime.priority import lower_process

BATCH_NICE: Final = 5
"""The nice value of every process the devnet starts except the coordinators (node, miners, pool hub, exchange,
web): on one shared machine their work is batch work (blocks once a second, jobs, polls), while a coordinator
answers clients, so a coordinator ready to run gets a core first. Only the order changes: a lowered process
still gets every idle cycle (``aitbc.runtime.priority``; measured in ``docs/performance.md``, session 10)."""


@dataclass
class ManagedProcess:
    name: str
    args: list[str]
    log_path: Path
    health_url: str
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None
    """Extra environment (the services' ``AITBC_*_CORS_ORIGINS``)."""
    nice: int = BATCH_NICE
    """Its nice value (and its session's: ``aitbc.runtime.priority.lower_process``); 0 for a coordinator."""

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = None if self.env is None else {**os.environ, **self.env}
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        lower_process(self.proc.pid, self.nice)
        log.close()

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ConfigError(f"{self.name} exited with code {self.proc.returncode}; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.health_url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise ConfigError(f"{self.name} did not become healthy within {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_for_miner(coordinator_url: str, miner: ManagedProcess, timeout: float) -> None:
    """Until the miner has registered its models (it loads them first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if miner.proc is not None and miner.proc.poll() is not None:
            raise ConfigError(f"miner exited with code {miner.proc.returncode}; see {miner.log_path}")
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if httpx.get(f"{coordinator_url}/api/v1/models", timeout=1.0).json().get("models"):
                return
        time.sleep(0.2)
    raise ConfigError(f"miner did not register within {timeout:.0f}s; see {miner.log_path}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
