"""Fixtures: the REAL wallet daemon (``python -m aitbc wallet daemon``) over the shared real node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wallet_harness import DaemonFactory, DaemonProcess, start_daemon


@pytest.fixture
def wallet_daemon(tmp_path: Path, shared_node: Any) -> Iterator[DaemonFactory]:
    """Factory: ``wallet_daemon(*extra_flags)`` starts a daemon over a fresh wallet dir and the shared node."""
    started: list[DaemonProcess] = []

    def make(*extra: str, wallet_dir: Path | None = None) -> DaemonProcess:
        directory = wallet_dir or tmp_path / f"wallets{len(started)}"
        daemon = start_daemon(directory, shared_node.rpc_url, *extra)
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        assert daemon.stop() == 0, daemon.log_text()[-3000:]
