"""One devnet per directory and per ports (issue 14): a second ``devnet up`` refuses at once and touches
nothing; ``devnet status``, ``down`` and ``reset``; ``down`` also ends services an ``up`` killed with -9
left behind; the devnet runs the pool hub, so ``aitbc miners list`` works on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from aitbc.devnet.config import devnet_file, read_devnet_info
from e2e.test_devnet import ENV, DevnetUp, aitbc, alive, free_ports


def _snapshot(data_dir: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under the devnet (logs excluded: the running services write them)."""
    return {
        str(p.relative_to(data_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in data_dir.rglob("*")
        if p.is_file() and "logs" not in p.parts and p.suffix not in (".db-wal", ".db-shm") and "wal" not in p.name
    }


def test_second_up_refuses_status_down_reset(tmp_path: Path) -> None:
    data_dir = tmp_path / "devnet"
    devnet = DevnetUp(data_dir, free_ports(7), tmp_path / "up.log", miner_backend="echo")
    try:
        info = devnet.start()
        assert devnet.proc is not None
        files_json = devnet_file(data_dir).read_bytes()
        before = _snapshot(data_dir)
        rpc, ws, p2p, coordinator, poolhub, web, exchange = (str(p) for p in devnet.ports)
        ports = ["--rpc-port", rpc, "--ws-port", ws, "--p2p-port", p2p, "--coordinator-port", coordinator]
        ports += ["--poolhub-port", poolhub, "--web-port", web, "--exchange-port", exchange]
        ports += ["--no-demo", "--miner-backend", "echo"]

        # The same directory: refused at once, nothing rewritten (no migration, devnet.json as it was).
        started = time.monotonic()
        again = aitbc("devnet", "up", "--data-dir", str(data_dir), *ports)
        assert again.returncode != 0 and time.monotonic() - started < 15
        assert "already running" in again.stdout + again.stderr and str(devnet.proc.pid) in again.stdout + again.stderr
        assert devnet_file(data_dir).read_bytes() == files_json
        assert _snapshot(data_dir) == before
        # Another directory on the same ports: refused too, and that directory is not even created.
        other = tmp_path / "other"
        clash = aitbc("devnet", "up", "--data-dir", str(other), *ports)
        assert clash.returncode != 0 and "already in use" in clash.stdout + clash.stderr
        assert not other.exists()
        assert devnet.proc.poll() is None and all(alive(p) for p in info.pids.values())

        # The pool hub runs, so the README's `aitbc miners list` works on the devnet.
        assert info.poolhub_url is not None
        listed = aitbc("miners", "list", "--poolhub", info.poolhub_url, "--json")
        assert listed.returncode == 0, listed.stderr
        assert len(orjson.loads(listed.stdout)) == 1  # the echo miner, registered through the coordinator

        status = aitbc("devnet", "status", "--data-dir", str(data_dir), "--json")
        assert status.returncode == 0, status.stderr
        report = orjson.loads(status.stdout)
        assert report["running"] and report["pid"] == devnet.proc.pid
        assert {s["name"] for s in report["services"]} >= {"node", "coordinator", "poolhub", "exchange", "miner"}
        assert all(s["alive"] for s in report["services"])
        assert all(s["healthy"] is not False for s in report["services"])

        down = aitbc("devnet", "down", "--data-dir", str(data_dir))
        assert down.returncode == 0, down.stderr
        assert devnet.proc.wait(5) == 0
        assert not any(alive(p) for p in info.pids.values())
        assert aitbc("devnet", "status", "--data-dir", str(data_dir)).returncode == 3

        reset = aitbc("devnet", "reset", "--data-dir", str(data_dir), "--yes")
        assert reset.returncode == 0, reset.stderr
        assert not data_dir.exists()
    finally:
        devnet.cleanup()


def test_down_ends_the_services_of_an_up_killed_with_sigkill(tmp_path: Path) -> None:
    data_dir = tmp_path / "devnet"
    devnet = DevnetUp(data_dir, free_ports(7), tmp_path / "up.log", miner_backend="none")
    try:
        info = devnet.start()
        assert devnet.proc is not None
        os.kill(devnet.proc.pid, signal.SIGKILL)
        devnet.proc.wait(5)
        assert all(alive(p) for p in info.pids.values())  # its services run on in their own sessions
        # The lock died with it: a new `up` is not refused for the directory, only for the ports still held.
        clash = subprocess.run(
            [sys.executable, "-m", "aitbc", "devnet", "up", "--data-dir", str(data_dir), "--no-demo",
             "--rpc-port", str(devnet.ports[0]), "--ws-port", str(devnet.ports[1]), "--p2p-port", str(devnet.ports[2]),
             "--coordinator-port", str(devnet.ports[3]), "--poolhub-port", str(devnet.ports[4]),
             "--web-port", str(devnet.ports[5]), "--exchange-port", str(devnet.ports[6])],
            capture_output=True, text=True, timeout=60, env=ENV, check=False,
        )  # fmt: skip
        assert clash.returncode != 0 and "already in use" in clash.stdout + clash.stderr
        down = aitbc("devnet", "down", "--data-dir", str(data_dir))
        assert down.returncode == 0, down.stderr
        assert "node" in down.stdout
        assert not any(alive(p) for p in read_devnet_info(data_dir).pids.values())
    finally:
        devnet.cleanup()
