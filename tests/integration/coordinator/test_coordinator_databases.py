"""The coordinator's core guarantees on both stores it supports: SQLite (default) and PostgreSQL.

One stack per store (coordinator with a 1 s lease + two echo miners that take ~0.1 s per job), and
the same tests on each: submit → claim → complete with a verifiable receipt; lease expiry requeues
(then fails after max attempts); two miners and 20 jobs, each completed exactly once with one
receipt, checked through the API and then directly in the stopped coordinator's database.

Without PostgreSQL binaries the PostgreSQL half FAILS with a hint (set AITBC_SKIP_POSTGRES=1 to skip).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from coordinator_harness import (
    Stack,
    check_receipt,
    echo_job,
    fake_model,
    launch_stack,
    submit,
    wait_done,
    wait_state,
    wait_until,
)

from aitbc.coordinator.db.schema import jobs, receipts

LEASE_SECONDS = 1.0
MAX_ATTEMPTS = 3  # the coordinator's default


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    database_url = None
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres")
        database_url = server.create_database(f"coordinator_{int(time.time() * 1000)}")
    base: Path = tmp_path_factory.mktemp(f"db-{request.param}")
    stack = launch_stack(base, lease_seconds=LEASE_SECONDS, database_url=database_url, token_delay=0.01)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def on_db(db_stack: Stack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    if not db_stack.coordinator.running:  # stopped by the exactly-once test (normally the module's last)
        db_stack.coordinator.ensure_running()
        wait_until(lambda: db_stack.coordinator.health()["miners_online"] >= 2, 30, "the miners to reconnect")
    try:
        yield db_stack
    finally:
        db_stack.cleanup_test_objects()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(db_stack.diagnostics())


def test_the_store_is_the_one_asked_for(on_db: Stack) -> None:
    dialect = on_db.coordinator.engine.dialect.name
    expected = "postgresql" if on_db.coordinator.database_url else "sqlite"
    assert dialect == expected
    with on_db.coordinator.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    if expected == "postgresql":
        assert not (on_db.coordinator.data_dir / "coordinator.db").exists()


def test_submit_claim_complete(on_db: Stack) -> None:
    with on_db.http() as http:
        job = submit(http, echo_job("one two three four", max_price=1_000))
        done = wait_done(http, job["job_id"])
        assert done["state"] == "completed", done
        assert done["attempts"] == 1
        checked = check_receipt(on_db, http, job["job_id"])
    assert checked["result"]["output"]["text"] == "one two three four"
    row = on_db.coordinator.db_job(job["job_id"])
    assert row["state"] == "completed"
    assert row["result"] == {"text": "one two three four", "dimensions": 0, "vectors_f32": "", "training": None}
    stored = on_db.coordinator.db_receipts([job["job_id"]])
    assert len(stored) == 1 and stored[0]["receipt_hash"] == checked["result"]["receipt_hash"]


def test_lease_expiry_requeues_then_fails_after_max_attempts(on_db: Stack) -> None:
    model = fake_model()
    miner = on_db.fake_miner([model])
    with on_db.http() as http:
        job = submit(http, {"type": "inference", "model": model["name"], "input": {"prompt": "x"}})
        leases = []
        for attempt in range(1, MAX_ATTEMPTS + 1):
            claim = miner.claim(wait=5)
            assert claim is not None and claim["job"]["job_id"] == job["job_id"]
            assert claim["job"]["attempt"] == attempt
            leases.append(claim["lease"]["lease_id"])
            # Silence: the lease runs out and the sweeper requeues (or, at the last attempt, fails) the job.
            final = "failed" if attempt == MAX_ATTEMPTS else "queued"
            view = wait_state(http, job["job_id"], final, timeout=LEASE_SECONDS + 5)
            assert view["attempts"] == attempt
        assert len(set(leases)) == MAX_ATTEMPTS, "every claim gets a fresh lease"
        assert f"gave up after {MAX_ATTEMPTS} attempts" in view["error"]
        result = http.get(f"/api/v1/jobs/{job['job_id']}/result")
        assert result.status_code == 410 and result.json()["error"]["reason"] == "job_failed"
        output, receipt = miner.build_result(claim)
        late = miner.result(job["job_id"], leases[-1], output, receipt)
        assert late.status_code == 409 and late.json()["error"]["reason"] == "job_finished"
        assert miner.claim() is None
    assert on_db.coordinator.db_job(job["job_id"])["state"] == "failed"
    assert on_db.coordinator.db_receipts([job["job_id"]]) == []


def test_lease_expiry_requeues_to_a_live_miner(on_db: Stack) -> None:
    model = fake_model()
    silent = on_db.fake_miner([model])
    live = on_db.fake_miner([model])
    with on_db.http() as http:
        job = submit(http, {"type": "inference", "model": model["name"], "input": {"prompt": "x"}})
        first = silent.claim()
        assert first is not None
        second = live.claim(wait=LEASE_SECONDS + 5)  # wakes when the lease ran out and the job was requeued
        assert second is not None and second["job"]["job_id"] == job["job_id"]
        output, receipt = live.build_result(second)
        accepted = live.result(job["job_id"], second["lease"]["lease_id"], output, receipt)
        assert accepted.status_code == 200, accepted.text
        output, receipt = silent.build_result(first)
        late = silent.result(job["job_id"], first["lease"]["lease_id"], output, receipt)
        assert late.status_code == 409 and late.json()["error"]["reason"] == "job_finished"
        done = http.get(f"/api/v1/jobs/{job['job_id']}").json()
        assert done["state"] == "completed" and done["attempts"] == 2 and done["miner"] == live.address
        check_receipt(on_db, http, job["job_id"])
    assert len(on_db.coordinator.db_receipts([job["job_id"]])) == 1


def test_twenty_jobs_two_miners_each_completed_exactly_once(on_db: Stack) -> None:
    key = on_db.new_key()
    with on_db.http(key) as http:
        ids = [submit(http, echo_job(f"job {i} " + "tok " * 9))["job_id"] for i in range(20)]
        views = [wait_done(http, job_id, timeout=60) for job_id in ids]
        assert [v["state"] for v in views] == ["completed"] * 20, views
        assert all(v["attempts"] == 1 for v in views)
        per_miner = Counter(v["miner"] for v in views)
        assert set(per_miner) == {m.address for m in on_db.miners}, f"both miners worked: {per_miner}"
        for job_id in ids:
            checked = check_receipt(on_db, http, job_id)
            assert checked["receipt"].job_id == job_id
        listed = http.get("/api/v1/jobs", params={"limit": 50}).json()["jobs"]
        assert sorted(j["job_id"] for j in listed) == sorted(ids)
    # The ground truth, with the coordinator stopped: one receipt row per job, by the miner that ran it.
    on_db.coordinator.stop()
    with on_db.coordinator.engine.connect() as conn:
        rows = conn.execute(sa.select(receipts.c.job_id, receipts.c.miner).where(receipts.c.job_id.in_(ids))).all()
        job_rows = conn.execute(sa.select(jobs.c.id, jobs.c.state, jobs.c.miner).where(jobs.c.id.in_(ids))).all()
        total_receipts = conn.execute(sa.select(sa.func.count()).select_from(receipts)).scalar_one()
        completed = conn.execute(
            sa.select(sa.func.count()).select_from(jobs).where(jobs.c.state == "completed")
        ).scalar_one()
    assert len(rows) == 20
    assert Counter(r.job_id for r in rows) == Counter(ids), "exactly one receipt per job"
    assert {r.id: r.miner for r in job_rows} == {r.job_id: r.miner for r in rows}
    assert all(r.state == "completed" for r in job_rows)
    # Store-wide: every receipt belongs to a completed job and every completed job has one receipt.
    assert total_receipts == completed
    on_db.coordinator.dispose()
