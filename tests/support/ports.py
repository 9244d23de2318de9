"""Ports for tests: let the service pick one (port 0) and read it back from its announcement.

Every service started through ``aitbc.runtime.server`` binds before it announces: with ``--port 0`` the OS
picks a free port and the service writes it to its ``announce_file`` (``AITBC_<SERVICE>_ANNOUNCE_FILE``),
so a test never races another process for a port. ``free_port`` remains for what must be known before a
start (a peer's address in a network manifest, an address nobody listens on).
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from aitbc.runtime.server import read_announcement


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now (another process may take it before you bind: prefer port 0 + announcements)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free ports (held together while picked, so they differ)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_for_announcement(
    path: Path, proc: subprocess.Popen[bytes] | None = None, timeout: float = 45.0
) -> dict[str, Any]:
    """What the service announced at ``path`` once it listens; fails early if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        found = read_announcement(path)
        if found is not None:
            return found
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.returncode}) before announcing its port at {path}")
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing announced at {path} within {timeout:.0f} s")
        time.sleep(0.02)
