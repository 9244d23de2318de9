"""The coordinator's writer thread: job inserts grouped and ahead of other writes, a bad row alone refused;
jobs accepted through the intake log before their rows commit, and stored after a crash."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from aitbc.coordinator.db import writer
from aitbc.coordinator.db.engine import create_db_engine, migrate
from aitbc.coordinator.db.intake_log import IntakeLog
from aitbc.coordinator.db.records import JobRecord
from aitbc.coordinator.db.repo import CoordinatorRepo
from aitbc.coordinator.db.writer import DbWriter, job_log_record
from aitbc.market.lifecycle import JobRuleViolation
from aitbc.protocol.job import JobInput
from support.job_records import queued_job

JOB_INPUT = JobInput(type="inference", model="m", prompt="hi")


def record(job_id: str) -> JobRecord:
    return queued_job(job_id, JOB_INPUT)


@pytest.fixture
def repo(tmp_path: Path) -> CoordinatorRepo:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    return CoordinatorRepo(engine)


def hold(started: threading.Event, release: threading.Event) -> None:
    started.set()
    release.wait(10)


class Recorder:
    """Wraps ``insert_jobs`` to record each transaction's ids, in order, with the other writes."""

    def __init__(self, repo: CoordinatorRepo) -> None:
        self.log: list[str | list[str]] = []
        self._insert = repo.insert_jobs
        repo.insert_jobs = self.insert_jobs  # type: ignore[method-assign]

    def insert_jobs(self, records: Sequence[JobRecord]) -> None:
        self.log.append([r.id for r in records])
        self._insert(records)


async def _test_inserts_waiting_go_as_one_transaction_before_the_writes_queued_earlier(repo: CoordinatorRepo) -> None:
    recorder = Recorder(repo)
    db = DbWriter(repo)
    started, release = threading.Event(), threading.Event()
    try:
        busy = asyncio.ensure_future(db.write(hold, started, release))  # the writer is busy with a long write
        await asyncio.to_thread(started.wait, 10)
        later = [asyncio.ensure_future(db.write(recorder.log.append, f"w{i}")) for i in range(2)]
        inserts = [asyncio.ensure_future(db.accept_job(record(f"job_{i}"), id_drawn_here=False)) for i in range(5)]
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in [*later, *inserts])
        release.set()
        await asyncio.gather(busy, *later, *inserts)
    finally:
        db.close()
    assert recorder.log == [[f"job_{i}" for i in range(5)], "w0", "w1"]
    assert repo.get_job("job_3") is not None


async def _test_a_bad_row_fails_alone(repo: CoordinatorRepo) -> None:
    repo.insert_jobs([record("job_taken")])
    db = DbWriter(repo)
    started, release = threading.Event(), threading.Event()
    try:
        busy = asyncio.ensure_future(db.write(hold, started, release))
        await asyncio.to_thread(started.wait, 10)
        good = [asyncio.ensure_future(db.accept_job(record(f"job_{i}"), id_drawn_here=False)) for i in range(3)]
        bad = asyncio.ensure_future(db.accept_job(record("job_taken"), id_drawn_here=False))
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(busy, *good)
        with pytest.raises(JobRuleViolation, match="job job_taken was already submitted") as refused:
            await bad
        assert refused.value.reason == "duplicate_job"
    finally:
        db.close()
    assert all(repo.get_job(f"job_{i}") is not None for i in range(3))


async def _test_close_finishes_what_is_queued(repo: CoordinatorRepo) -> None:
    db = DbWriter(repo)
    inserts = [asyncio.ensure_future(db.accept_job(record(f"job_{i}"), id_drawn_here=False)) for i in range(20)]
    await asyncio.sleep(0)
    await asyncio.to_thread(db.close)
    await asyncio.gather(*inserts)
    assert all(repo.get_job(f"job_{i}") is not None for i in range(20))


def test_inserts_waiting_go_as_one_transaction_before_the_writes_queued_earlier(repo: CoordinatorRepo) -> None:
    asyncio.run(_test_inserts_waiting_go_as_one_transaction_before_the_writes_queued_earlier(repo))


def test_a_bad_row_fails_alone(repo: CoordinatorRepo) -> None:
    asyncio.run(_test_a_bad_row_fails_alone(repo))


def test_close_finishes_what_is_queued(repo: CoordinatorRepo) -> None:
    asyncio.run(_test_close_finishes_what_is_queued(repo))


# -- jobs accepted through the intake log ---------------------------------------------------------------------


async def _test_a_logged_job_is_accepted_before_its_row_commits(repo: CoordinatorRepo, directory: Path) -> None:
    db = DbWriter(repo, intake_log=IntakeLog(directory))
    started, release = threading.Event(), threading.Event()
    try:
        busy = asyncio.ensure_future(db.write(hold, started, release))
        await asyncio.to_thread(started.wait, 10)
        row = await asyncio.wait_for(db.accept_job(record("job_a"), id_drawn_here=True), 1)  # the writer is busy
        assert not row.done() and db.unstored == 1
        assert IntakeLog(directory).read_all() == [job_log_record(record("job_a"))]  # durable already
        reading = asyncio.ensure_future(db.get_job("job_a"))
        listing = asyncio.ensure_future(db.all_stored())
        await asyncio.sleep(0.05)
        assert not reading.done() and not listing.done()  # they wait for the row, not answer "no such job"
        release.set()
        found = await reading
        await asyncio.gather(busy, row, listing)
        assert found is not None and found.id == "job_a" and db.unstored == 0
        # a client-chosen id waits for its own commit
        chosen = await db.accept_job(record("job_b"), id_drawn_here=False)
        assert chosen.done() and repo.get_job("job_b") is not None
    finally:
        db.close()


async def _test_a_failed_insert_is_tried_again(
    repo: CoordinatorRepo, directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "STORE_RETRY_S", 0.01)
    insert, failures = repo.insert_jobs, [1]

    def flaky(records: Sequence[JobRecord]) -> None:
        if failures:
            failures.pop()
            raise OSError("disk full")
        insert(records)

    repo.insert_jobs = flaky  # type: ignore[method-assign]
    db = DbWriter(repo, intake_log=IntakeLog(directory))
    try:
        row = await db.accept_job(record("job_r"), id_drawn_here=True)
        await asyncio.wait_for(row, 5)
        assert not failures and repo.get_job("job_r") is not None
    finally:
        db.close()


def test_a_logged_job_is_accepted_before_its_row_commits(repo: CoordinatorRepo, tmp_path: Path) -> None:
    asyncio.run(_test_a_logged_job_is_accepted_before_its_row_commits(repo, tmp_path / "intake"))


def test_a_failed_insert_is_tried_again(repo: CoordinatorRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_test_a_failed_insert_is_tried_again(repo, tmp_path / "intake", monkeypatch))


def test_a_restart_stores_what_was_logged_but_not_stored(repo: CoordinatorRepo, tmp_path: Path) -> None:
    """As after kill -9 between the log and the commit: the next start inserts the missing rows, once."""
    directory = tmp_path / "intake"
    crashed = IntakeLog(directory)
    repo.insert_jobs([record("job_stored")])
    for job_id in ("job_stored", "job_lost_1", "job_lost_2"):
        crashed.append(job_log_record(record(job_id)))
    db = DbWriter(repo, intake_log=IntakeLog(directory))
    try:
        assert db.recover() == 2
        assert repo.get_job("job_lost_1") == record("job_lost_1")
        assert repo.get_job("job_lost_2") is not None
        assert list(directory.glob("intake-*.log")) == []
        assert db.recover() == 0
    finally:
        db.close()


def _nice_here() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def _test_the_writer_and_readers_yield_the_cpu_to_the_loop(repo: CoordinatorRepo) -> None:
    loop_nice = _nice_here()
    db = DbWriter(repo, thread_nice=4)
    try:
        written = await db.write(_nice_here)
        read = await asyncio.gather(*(db.read(_nice_here) for _ in range(4)))
    finally:
        db.close()
    assert written == min(19, loop_nice + 4)
    assert set(read) == {min(19, loop_nice + 4)}
    assert _nice_here() == loop_nice


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")
def test_the_writer_and_readers_yield_the_cpu_to_the_loop(repo: CoordinatorRepo) -> None:
    asyncio.run(_test_the_writer_and_readers_yield_the_cpu_to_the_loop(repo))
