"""Two REAL coordinator replicas (``aitbc coordinator run``) on one throwaway PostgreSQL serve one API.

- a job submitted through replica A wakes a miner long-polling replica B at once (LISTEN/NOTIFY), not at
  a poll interval;
- miners claiming concurrently through both replicas never get one job twice (FOR UPDATE SKIP LOCKED), and
  every job completes once with one receipt, its result delivered through either replica;
- a client watching a job on one replica sees it finish when its miner reports to the other;
- a second coordinator on one SQLite data dir is refused (replicas need PostgreSQL).

The paid half (one settler; a replica killed with -9 mid-run loses no job and no payment) is in
test_replica_payments.py.
"""

from __future__ import annotations

import concurrent.futures
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import sqlalchemy as sa
from coordinator_harness import (
    PYTHON,
    CoordinatorProcess,
    FakeMiner,
    cli_env,
    echo_job,
    fake_model,
    launch_replicas,
    wait_until,
)

from aitbc.coordinator.db.schema import jobs, receipts

if TYPE_CHECKING:
    from support.postgres import PostgresServer


@pytest.fixture(scope="module")
def replicas(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[CoordinatorProcess]]:
    url = postgres.create_database(f"replicas_{int(time.time() * 1000)}")
    started = launch_replicas(tmp_path_factory.mktemp("replicas"), 2, url, lease_seconds=3.0)
    try:
        yield started
    finally:
        for replica in started:
            replica.stop()
            replica.dispose()


@pytest.fixture(scope="module")
def api_key(replicas: list[CoordinatorProcess]) -> str:
    return replicas[0].create_key_cli("--name", "replicas", "--rate", "5000", "--burst", "5000")


def serves(replica: CoordinatorProcess, model: str) -> bool:
    models = httpx.get(f"{replica.url}/api/v1/models", timeout=10).json()["models"]
    return any(m["name"] == model for m in models)


def waiting_claims(replica: CoordinatorProcess) -> float:
    for line in httpx.get(f"{replica.url}/metrics", timeout=10).text.splitlines():
        if line.startswith("aitbc_claims_waiting "):
            return float(line.split()[1])
    return 0.0


def submit(replica: CoordinatorProcess, api_key: str, model: str, prompt: str) -> str:
    answer = httpx.post(
        f"{replica.url}/api/v1/jobs",
        json={**echo_job(prompt), "model": model},
        headers={"X-Api-Key": api_key},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["job_id"])


def test_a_job_submitted_on_one_replica_wakes_a_miner_polling_the_other(
    replicas: list[CoordinatorProcess], api_key: str
) -> None:
    a, b = replicas
    model = fake_model()
    miner = FakeMiner(b)
    try:
        miner.register([model])
        wait_until(lambda: serves(a, model["name"]), 10, "replica A to learn the miner registered on B")
        latencies = []
        for i in range(5):
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                polled = pool.submit(lambda: (miner.claim(wait=20), time.monotonic()))
                wait_until(lambda: waiting_claims(b) >= 1, 10, "the miner's claim to long-poll replica B")
                sent = time.monotonic()
                job_id = submit(a, api_key, model["name"], f"wake {i}")
                claim, arrived = polled.result(timeout=20)
            assert claim is not None and claim["job"]["job_id"] == job_id
            latencies.append(arrived - sent)
            lease = claim["lease"]["lease_id"]
            output, receipt = miner.build_result(claim)
            assert miner.result(job_id, lease, output, receipt).status_code == 200
        # a poll interval (or the 5 s safety wake) would show as seconds; NOTIFY takes milliseconds
        assert statistics.median(latencies) < 0.5, latencies
        assert max(latencies) < 2.0, latencies
    finally:
        miner.close()


def test_concurrent_claims_through_both_replicas_never_take_a_job_twice(
    replicas: list[CoordinatorProcess], api_key: str
) -> None:
    a, b = replicas
    total = 120
    model = fake_model()
    miners = [FakeMiner(a) for _ in range(6)]
    for miner in miners:
        miner.register([model], max_concurrency=4)
    wait_until(lambda: serves(b, model["name"]), 10, "replica B to learn the miners registered on A")
    # every miner claims through both replicas at once, and delivers each result through the replica it
    # did not claim from
    pairs = [(FakeMiner(a, key=m.key), FakeMiner(b, key=m.key)) for m in miners]
    clients = [c for pair in pairs for c in pair]
    claims: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def work(miner: FakeMiner, other: FakeMiner) -> None:
        while not stop.is_set():
            claim = miner.claim(wait=1.0)
            if claim is None:
                continue
            job_id = claim["job"]["job_id"]
            with lock:
                claims.append(job_id)
            output, receipt = miner.build_result(claim)
            answer = other.result(job_id, claim["lease"]["lease_id"], output, receipt)
            assert answer.status_code == 200, answer.text

    submitted: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(len(clients) + 4) as pool:
        workers = [pool.submit(work, x, y) for one, other in pairs for x, y in ((one, other), (other, one))]
        submitted = list(pool.map(lambda i: submit(replicas[i % 2], api_key, model["name"], f"job {i}"), range(total)))

        def finished() -> bool:
            with a.engine.connect() as conn:
                query = sa.select(sa.func.count()).where(jobs.c.id.in_(submitted), jobs.c.state == "completed")
                return int(conn.execute(query).scalar_one()) == total

        try:
            wait_until(finished, 90, "every job to complete", interval=0.2)
        finally:
            stop.set()
        for worker in workers:
            worker.result(timeout=30)
    for client in [*clients, *miners]:
        client.close()
    duplicates = {j: n for j, n in Counter(claims).items() if n > 1}
    assert duplicates == {}, duplicates
    assert sorted(claims) == sorted(submitted)
    with a.engine.connect() as conn:
        stored = Counter(conn.execute(sa.select(receipts.c.job_id).where(receipts.c.job_id.in_(submitted))).scalars())
    assert stored == Counter(submitted)


def test_events_of_a_job_reach_a_client_watching_the_other_replica(
    replicas: list[CoordinatorProcess], api_key: str
) -> None:
    a, b = replicas
    model = fake_model()
    miner = FakeMiner(b)
    try:
        miner.register([model])
        wait_until(lambda: serves(a, model["name"]), 10, "replica A to learn the miner")
        job_id = submit(a, api_key, model["name"], "watched")
        seen: list[str] = []
        with (
            httpx.Client(base_url=a.url, headers={"X-Api-Key": api_key}, timeout=30) as http,
            http.stream("GET", f"/api/v1/jobs/{job_id}/events") as stream,
        ):
            claim = miner.claim(wait=10)
            assert claim is not None and claim["job"]["job_id"] == job_id
            lease = claim["lease"]["lease_id"]
            assert miner.progress(job_id, lease, ["to", "ken"]).status_code == 200
            output, receipt = miner.build_result(claim)
            assert miner.result(job_id, lease, output, receipt).status_code == 200
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    seen.append(line.split(":", 1)[1].strip())
                if line.startswith("data:") and '"completed"' in line:
                    break
        assert "token" in seen and "receipt" in seen, seen
    finally:
        miner.close()


def test_a_second_coordinator_on_one_sqlite_data_dir_is_refused(tmp_path: Path) -> None:
    import subprocess

    first = CoordinatorProcess(tmp_path / "coordinator")
    first.start()
    try:
        second = subprocess.run(
            [PYTHON, "-m", "aitbc", "coordinator", "run", "--data-dir", str(first.data_dir), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
            env=cli_env(),
        )
        assert second.returncode != 0
        assert "PostgreSQL" in second.stdout + second.stderr, second.stdout + second.stderr
        assert first.running and first.health()["status"] == "ok"
    finally:
        first.stop()


def test_the_settler_lock_has_one_holder_and_passes_on_when_its_session_ends(postgres: PostgresServer) -> None:
    from aitbc.coordinator.db.replicas import SettlerLock

    url = postgres.create_database(f"settler_lock_{int(time.time() * 1000)}")
    first, second = SettlerLock(url), SettlerLock(url)
    try:
        assert first.held()
        assert not second.held()
        assert first.held() and not second.held()  # held, not taken again
        first.release()  # its session ends, as when its process is killed: PostgreSQL drops the lock
        assert second.held()
        assert not first.held()
    finally:
        first.release()
        second.release()
