"""One devnet per directory and per set of ports: the lock ``devnet up`` holds, and ``status`` / ``down`` / ``reset``.

``devnet up`` takes an exclusive ``flock`` on ``DIR/devnet.lock`` (the file holds its pid) for as long as
it runs; the kernel drops the lock when the process ends, however it ends, so a stale lock cannot exist.
A second ``up`` on the same directory finds the lock held, and one on another directory finds a port
taken; either refuses at once, before it creates, migrates or rewrites anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from aitbc.devnet.config import DevnetInfo, devnet_file, read_devnet_info
from aitbc.protocol.errors import AitbcError, ConfigError

LOCK_FILE = "devnet.lock"


class DevnetRunning(ConfigError):
    reason = "devnet_running"


def lock_path(data_dir: Path) -> Path:
    return data_dir / LOCK_FILE


def holder_pid(data_dir: Path) -> int | None:
    """The pid of the ``devnet up`` that holds the directory's lock, or None when none runs."""
    path = lock_path(data_dir)
    try:
        with path.open("r") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = f.read().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(f, fcntl.LOCK_UN)
            return None
    except FileNotFoundError:
        return None


def busy_ports(host: str, ports: Iterable[int]) -> list[int]:
    """The ports something already listens on (binding them fails)."""
    taken = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                taken.append(port)
    return taken


def check_can_start(data_dir: Path, host: str, ports: Iterable[int]) -> None:
    """Refuse (``DevnetRunning``) when a devnet runs on ``data_dir`` or any of ``ports`` is taken; touches nothing."""
    pid = holder_pid(data_dir)
    if pid is not None:
        raise DevnetRunning(
            f"a devnet is already running on {data_dir} (pid {pid}); nothing was changed. "
            "See it with `aitbc devnet status`, stop it with `aitbc devnet down`"
        )
    taken = busy_ports(host, ports)
    if taken:
        raise DevnetRunning(
            f"port{'s' if len(taken) > 1 else ''} {', '.join(map(str, taken))} on {host} "
            f"{'are' if len(taken) > 1 else 'is'} already in use (another devnet or service?); nothing was changed. "
            "Stop it, or choose other ports (--rpc-port, --coordinator-port, …)"
        )


def acquire_lock(data_dir: Path) -> IO[str]:
    """Take the directory's lock for this process (keep the returned file open while the devnet runs)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    f = lock_path(data_dir).open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise DevnetRunning(f"a devnet is already running on {data_dir}") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    alive: bool
    healthy: bool | None
    url: str | None


def service_urls(info: DevnetInfo) -> dict[str, str | None]:
    urls = {
        "node": info.rpc_url.rstrip("/") + "/healthz",
        "coordinator": None if info.coordinator_url is None else info.coordinator_url + "/healthz",
        "poolhub": None if info.poolhub_url is None else info.poolhub_url + "/healthz",
        "web": None if info.web_url is None else info.web_url + "/healthz",
    }
    for i, url in enumerate(info.coordinator_urls[1:], start=1):  # replicas (``devnet up --coordinators N``)
        urls[f"coordinator{i}"] = url + "/healthz"
    return urls


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with contextlib.suppress(OSError):  # a zombie has exited; only its parent has not read its status yet
        if Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1].startswith("Z"):
            return False
    return True


def get_status(data_dir: Path) -> tuple[int | None, list[ServiceStatus]]:
    """(pid of the running ``devnet up`` or None, each service's process and health)."""
    pid = holder_pid(data_dir)
    if not devnet_file(data_dir).exists():
        return pid, []
    info = read_devnet_info(data_dir)
    urls = service_urls(info)
    services = []
    for name, service_pid in info.pids.items():
        alive = pid_alive(service_pid)
        url = urls.get(name) or (urls["node"] if name.startswith("validator0") else None)
        healthy = None
        if alive and url is not None:
            try:
                healthy = httpx.get(url, timeout=2.0).status_code == 200
            except httpx.HTTPError:
                healthy = False
        services.append(ServiceStatus(name, service_pid, alive, healthy, url))
    return pid, services


def _is_ours(pid: int) -> bool:
    """A devnet service process (``python -m aitbc …``), not an unrelated one that reused the pid."""
    try:
        return b"aitbc" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop_devnet(data_dir: Path, timeout: float = 60.0) -> list[str]:
    """Stop the devnet on ``data_dir``: SIGTERM its ``devnet up`` (which stops its services in order) and
    wait for the lock to be released; then SIGTERM any service still alive (an ``up`` killed with -9 leaves
    them running). Returns what was stopped."""
    stopped: list[str] = []
    pid = holder_pid(data_dir)
    if pid is not None and pid > 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while holder_pid(data_dir) is not None:
            if time.monotonic() > deadline:
                raise ConfigError(f"the devnet (pid {pid}) did not stop within {timeout:.0f} s")
            time.sleep(0.1)
        stopped.append(f"devnet up (pid {pid})")
    if devnet_file(data_dir).exists():
        with contextlib.suppress(AitbcError):
            leftovers = {name: p for name, p in read_devnet_info(data_dir).pids.items() if pid_alive(p) and _is_ours(p)}
            for p in leftovers.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while any(pid_alive(p) for p in leftovers.values()) and time.monotonic() < deadline:
                time.sleep(0.1)
            for name, p in leftovers.items():
                if pid_alive(p):
                    os.kill(p, signal.SIGKILL)
                stopped.append(f"{name} (pid {p})")
    return stopped


def reset_devnet(data_dir: Path) -> None:
    """Stop the devnet on ``data_dir`` and delete its directory (chain, keys, databases, logs)."""
    if not data_dir.exists():
        return
    looks_like_devnet = any((data_dir / name).exists() for name in ("devnet.json", LOCK_FILE, "node", "validators"))
    if not looks_like_devnet:
        raise ConfigError(f"{data_dir} does not look like a devnet directory; not deleting it")
    stop_devnet(data_dir)
    shutil.rmtree(data_dir)
