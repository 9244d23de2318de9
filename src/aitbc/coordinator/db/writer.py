"""Database calls off the event loop: one writer thread, a small reader pool, and group commit for jobs.

Writes run on one thread (SQLite has one writer anyway, and it keeps commits ordered), reads on a
small pool. New jobs are inserted by group commit (``accept_job``). A job whose id this coordinator drew
is durable, and its submission answered, once its record is in the intake log
(``aitbc.coordinator.db.intake_log``, on SQLite); its row follows by group commit, and whoever reads a
job by id (``get_job``) or lists jobs (``all_stored``) waits for rows still on their way. Otherwise (a
client-chosen id, which may be a duplicate; PostgreSQL, where replicas share the database) a submission
returns once the transaction holding its row committed.

A submission that waits for its insert (a client-chosen id, PostgreSQL) shares the thread with miners'
claims and results, chain events and settlement marks (each 5 to 15 ms under load). So the writer
thread itself groups and orders the work: whenever it is free it first takes every job insert waiting (up to
``JOB_INSERT_BATCH``) into one transaction, and only then the next other write, in the order they
came. A submission waits for at most the one write already running and its own group's commit, not
for the queue in front of it nor for a turn of the event loop between groups (``bench/settlement.py``,
open loop at 600 POSTs/s: POST p99 80 ms with a FIFO writer and an event-loop flusher).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Final, ParamSpec, TypeVar

import msgspec

from aitbc.coordinator.config import CoordinatorSettings
from aitbc.coordinator.db.intake_log import IntakeLog, Segment
from aitbc.coordinator.db.records import JobRecord, job_from_row, job_to_row
from aitbc.coordinator.db.repo import CoordinatorRepo
from aitbc.market.lifecycle import JobRuleViolation
from aitbc.runtime.priority import background_executor, lower_this_thread

log = logging.getLogger("aitbc.coordinator.db")

P = ParamSpec("P")
T = TypeVar("T")

JOB_INSERT_BATCH = 256
STORE_RETRY_S: Final = 1.0
"""A logged job whose insert failed (the database locked, the disk full) is tried again this often; its
record stays in the intake log meanwhile, so a restart stores it too."""


class _GroupingWriter:
    """The writer thread: pending job inserts first, as one transaction per group, then other writes in order."""

    def __init__(self, insert_jobs: Callable[[list[JobRecord]], None], name: str, nice: int = 0) -> None:
        self._insert_jobs = insert_jobs
        self._nice = nice
        self._inserts: deque[tuple[JobRecord, Future[None]]] = deque()
        self._writes: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def insert(self, job: JobRecord) -> Future[None]:
        future: Future[None] = Future()
        with self._wake:
            self._inserts.append((job, future))
            self._wake.notify()
        return future

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._wake:
            self._writes.append((fn, future))
            self._wake.notify()
        return future

    def _run(self) -> None:
        lower_this_thread(self._nice)
        while True:
            with self._wake:
                while not self._inserts and not self._writes and not self._stopping:
                    self._wake.wait()
                if self._inserts:
                    group = [self._inserts.popleft() for _ in range(min(JOB_INSERT_BATCH, len(self._inserts)))]
                    write = None
                elif self._writes:
                    group, write = [], self._writes.popleft()
                else:  # stopping, and nothing left to do
                    return
            if write is None:
                self._run_inserts(group)
            else:
                _run_one(*write)

    def _run_inserts(self, group: list[tuple[JobRecord, Future[None]]]) -> None:
        group = [(job, future) for job, future in group if future.set_running_or_notify_cancel()]
        if not group:
            return
        try:
            self._insert_jobs([job for job, _ in group])
        except Exception as exc:
            if len(group) == 1:
                group[0][1].set_exception(exc)
                return
            # One bad row must not fail its neighbours: retry them one by one.
            for job, future in group:
                try:
                    self._insert_jobs([job])
                except Exception as row_exc:
                    future.set_exception(row_exc)
                else:
                    future.set_result(None)
            return
        for _, future in group:
            future.set_result(None)

    def shutdown(self) -> None:
        """Finish what is queued, then stop."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join()


def _run_one(fn: Callable[[], Any], future: Future[Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


class DbWriter:
    def __init__(
        self, repo: CoordinatorRepo, readers: int = 2, intake_log: IntakeLog | None = None, thread_nice: int = 0
    ) -> None:
        """``thread_nice``: the writer and reader threads run this many nice levels below the caller's
        (``aitbc.runtime.priority``: the event loop gets a core first)."""
        self.repo = repo
        self._writer = _GroupingWriter(lambda jobs: repo.insert_jobs(jobs), "db-write", thread_nice)
        self._readers = background_executor("db-read", thread_nice, max_workers=readers)
        self._log = intake_log
        self._unstored: dict[str, asyncio.Future[None]] = {}
        """Logged jobs whose rows are not committed yet, by id: done when the row is."""

    def recover(self) -> int:
        """Store the jobs an earlier run logged but did not store (before anything reads the database);
        returns how many were missing."""
        if self._log is None:
            return 0
        logged = {job.id: job for job in map(job_from_log_record, self._log.read_all())}
        present = self.repo.get_jobs(list(logged)) if logged else {}
        missing = [job for job_id, job in logged.items() if job_id not in present]
        if missing:
            self.repo.insert_jobs(missing)
            log.warning("jobs accepted before a stop stored from the intake log", extra={"jobs": len(missing)})
        self._log.discard_read()
        return len(missing)

    async def write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.wrap_future(self._writer.submit(lambda: fn(*args, **kwargs)))

    async def read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, lambda: fn(*args, **kwargs))

    async def accept_job(self, job: JobRecord, *, id_drawn_here: bool) -> asyncio.Future[None]:
        """Make a new job durable; returns a future that is done once its row is committed.

        With the intake log and an id this coordinator drew (``id_drawn_here``: no other request can carry
        it), the job is durable as soon as its record is logged, which is at once; the row follows by group
        commit. Otherwise this returns once the job's own transaction committed (a duplicate id: 409):
        submissions that arrive while the writer is busy go together in the next transaction.
        """
        loop = asyncio.get_running_loop()
        row: asyncio.Future[None] = loop.create_future()
        if self._log is None or not id_drawn_here:
            await asyncio.wrap_future(self._writer.insert(job))
            row.set_result(None)
            return row
        number, finished = self._log.append(job_log_record(job))
        self._forget(finished)
        self._unstored[job.id] = row
        # Off the table in a callback registered before the caller's (``announce_work``), so the two run back to
        # back: a claim that finds the row stored also finds the work announced (see ``all_stored``).
        row.add_done_callback(lambda _: self._unstored.pop(job.id, None))
        self._store_logged(job, number, row)
        return row

    def _store_logged(self, job: JobRecord, number: int, row: asyncio.Future[None]) -> None:
        loop = row.get_loop()

        def committed(insert: Future[None]) -> None:  # on the writer thread
            error = insert.exception() if not insert.cancelled() else RuntimeError("insert cancelled")
            with contextlib.suppress(RuntimeError):  # a closed loop: the record stays logged for the next start
                loop.call_soon_threadsafe(self._on_logged_insert, job, number, row, error)

        self._writer.insert(job).add_done_callback(committed)

    def _on_logged_insert(
        self, job: JobRecord, number: int, row: asyncio.Future[None], error: BaseException | None
    ) -> None:
        if error is not None and not (isinstance(error, JobRuleViolation) and error.reason == "duplicate_job"):
            log.error("a logged job could not be stored; trying again", extra={"job_id": job.id, "error": str(error)})
            row.get_loop().call_later(STORE_RETRY_S, self._store_logged, job, number, row)
            return
        assert self._log is not None
        self._forget(self._log.stored(number))
        if not row.done():
            row.set_result(None)

    def _forget(self, segment: Segment | None) -> None:
        if segment is not None:  # deleting a file waits on the disk: the writer thread does it, in turn
            self._writer.submit(segment.remove)

    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job's row, waiting for it when the job is logged and its row still on the way."""
        row = self._unstored.get(job_id)
        if row is not None:
            await asyncio.shield(row)
        return await self.read(self.repo.get_job, job_id)

    async def all_stored(self) -> None:
        """Wait until every job logged so far has its row (before a query over many jobs)."""
        if self._unstored:
            await asyncio.gather(*(asyncio.shield(f) for f in list(self._unstored.values())))

    @property
    def unstored(self) -> int:
        """Jobs logged whose rows are not committed yet."""
        return len(self._unstored)

    def close(self) -> None:
        self._writer.shutdown()
        self._readers.shutdown(wait=True)
        if self._log is not None:
            self._log.close()


def open_intake_log(settings: CoordinatorSettings, repo: CoordinatorRepo) -> IntakeLog | None:
    """The coordinator's intake log, when it keeps one (``CoordinatorSettings.intake_log``, SQLite only)."""
    if not settings.intake_log or repo.engine.dialect.name != "sqlite":
        return None
    return IntakeLog(settings.intake_dir)


def job_log_record(job: JobRecord) -> bytes:
    """A job's intake-log record: its row (``job_to_row``), as JSON."""
    return msgspec.json.encode(job_to_row(job))


def job_from_log_record(record: bytes) -> JobRecord:
    return job_from_row(msgspec.json.decode(record))
