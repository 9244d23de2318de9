"""``aitbc devnet up --coordinators 2 --database-url …``: the replicated coordinator, locally, as real processes.

A throwaway PostgreSQL (tests/support/postgres.py) holds the coordinator's database; the devnet starts two
coordinator replicas on it (the second on coordinator port + 10) and its echo miner on the first. A job
posted to the second replica with the devnet's API key is paid from the devnet deposit, claimed by the
miner polling the first (woken through LISTEN/NOTIFY) and completed; both replicas report the same job.
Without a PostgreSQL URL, ``--coordinators 2`` is refused before anything starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from aitbc.devnet.config import devnet_file, read_devnet_info
from support.ports import free_ports
from support.postgres import PostgresServer

ENV = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")} | {"COLUMNS": "250", "NO_COLOR": "1"}


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _coordinator_port() -> int:
    """A free port whose +10 (the second replica's) is free too."""
    for _ in range(50):
        (port,) = free_ports(1)
        if port + 10 < 65536 and _free(port + 10):
            return port
    raise AssertionError("no pair of free ports")


def test_two_coordinator_replicas_on_one_postgres(tmp_path: Path) -> None:
    data_dir = tmp_path / "devnet"
    rpc, ws, p2p = free_ports(3)
    coordinator = _coordinator_port()
    log = tmp_path / "devnet.log"
    with PostgresServer.start() as pg:
        url = pg.create_database("devnet_coordinator")
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "aitbc", "devnet", "up", "--data-dir", str(data_dir)),
                    *("--rpc-port", str(rpc), "--ws-port", str(ws), "--p2p-port", str(p2p)),
                    *("--coordinator-port", str(coordinator), "--coordinators", "2", "--database-url", url),
                    *("--miner-backend", "echo", "--no-poolhub", "--no-exchange", "--no-web", "--no-demo"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=ENV,
            )
        try:
            deadline = time.monotonic() + 120
            while not devnet_file(data_dir).exists():
                assert proc.poll() is None, f"devnet up exited with {proc.returncode}:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"no devnet.json after 120 s:\n{log.read_text()}"
                time.sleep(0.2)
            info = read_devnet_info(data_dir)
            assert info.coordinator_urls == [f"http://127.0.0.1:{coordinator}", f"http://127.0.0.1:{coordinator + 10}"]
            first, second = info.coordinator_urls
            health = [httpx.get(f"{u}/healthz", timeout=10).json() for u in (first, second)]
            assert health[0]["coordinator"] == health[1]["coordinator"] == info.coordinator_address
            assert health[0]["replica"]["id"] != health[1]["replica"]["id"]
            headers = {"X-Api-Key": info.api_key or ""}
            deadline = time.monotonic() + 10  # the miner registered on the first replica; the second hears of it
            while not httpx.get(f"{second}/api/v1/models", timeout=10).json()["models"]:
                assert time.monotonic() < deadline, "the second replica never learnt the miner"
                time.sleep(0.05)
            with httpx.Client(base_url=second, headers=headers, timeout=30) as http:
                wanted = {"type": "inference", "model": "echo", "input": {"prompt": "through the second replica"}}
                posted = http.post("/api/v1/jobs", json=wanted)
                assert posted.status_code == 201, posted.text
                job_id = posted.json()["job_id"]
                deadline = time.monotonic() + 60
                while (job := http.get(f"/api/v1/jobs/{job_id}").json())["state"] != "completed":
                    assert job["state"] in ("queued", "assigned", "running"), job
                    assert time.monotonic() < deadline, job
                    time.sleep(0.1)
            seen_on_first = httpx.get(f"{first}/api/v1/jobs/{job_id}", headers=headers, timeout=10).json()
            assert seen_on_first["state"] == "completed"
            assert (
                "through the second replica"
                in httpx.get(f"{first}/api/v1/jobs/{job_id}/result", headers=headers, timeout=10).json()["output"][
                    "text"
                ]
            )
            status = subprocess.run(
                [sys.executable, "-m", "aitbc", "devnet", "status", "--data-dir", str(data_dir), "--json"],
                capture_output=True,
                text=True,
                timeout=60,
                env=ENV,
            )
            assert status.returncode == 0, status.stdout + status.stderr
            services = {s["name"]: s for s in json.loads(status.stdout)["services"]}
            assert services["coordinator1"]["healthy"] is True, services
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            with contextlib.suppress(Exception):
                for pid in read_devnet_info(data_dir).pids.values():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


def test_two_coordinators_without_postgres_are_refused(tmp_path: Path) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "aitbc", "devnet", "up", "--data-dir", str(tmp_path / "d"), "--coordinators", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert ran.returncode != 0
    assert "PostgreSQL" in ran.stdout + ran.stderr, ran.stdout + ran.stderr
    assert not (tmp_path / "d").exists()


def test_postgres_flag_starts_a_throwaway_server_for_the_replicas(tmp_path: Path) -> None:
    rpc, ws, p2p = free_ports(3)
    coordinator = _coordinator_port()
    ran = subprocess.run(
        [
            *(sys.executable, "-m", "aitbc", "devnet", "up", "--data-dir", str(tmp_path / "devnet")),
            *("--rpc-port", str(rpc), "--ws-port", str(ws), "--p2p-port", str(p2p)),
            *("--coordinator-port", str(coordinator), "--coordinators", "2", "--postgres"),
            *("--miner-backend", "echo", "--no-poolhub", "--no-exchange", "--no-web", "--exit-after-start"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=ENV,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"replica 1:    http://127.0.0.1:{coordinator + 10}" in ran.stdout, ran.stdout
    info = read_devnet_info(tmp_path / "devnet")
    assert len(info.coordinator_urls) == 2 and "postgres" in info.pids
    # the demo job ran through the replicated coordinator, and everything stopped, the server too
    assert "completed" in ran.stdout, ran.stdout
    deadline = time.monotonic() + 20
    while running := [pid for pid in info.pids.values() if _alive(pid)]:
        assert time.monotonic() < deadline, f"still running after --exit-after-start: {running}"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return not Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1].startswith("Z")
    except OSError:
        return False
