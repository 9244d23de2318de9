"""Database calls off the event loop: one writer thread, a small reader pool, and group commit for jobs.

Writes run on one thread (SQLite has one writer anyway, and it keeps commits ordered), reads on a
small pool. New jobs are inserted by group commit (``insert_job``): a submission returns once the
transaction holding it committed, and submissions that arrive while a batch is being written go
together in the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from aitbc.coordinator.db.records import JobRecord
from aitbc.coordinator.db.repo import CoordinatorRepo

P = ParamSpec("P")
T = TypeVar("T")

JOB_INSERT_BATCH = 256


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the request was cancelled meanwhile
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class DbWriter:
    def __init__(self, repo: CoordinatorRepo, readers: int = 2) -> None:
        self.repo = repo
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-write")
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="db-read")
        self._pending_jobs: list[tuple[JobRecord, asyncio.Future[None]]] = []
        self._job_flusher: asyncio.Task[None] | None = None

    async def write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, lambda: fn(*args, **kwargs))

    async def read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, lambda: fn(*args, **kwargs))

    async def insert_job(self, job: JobRecord) -> None:
        """Insert a job durably: returns once its transaction committed (group commit).

        Submissions that arrive while a batch is being written wait for the next batch, so under
        load one transaction carries many jobs, and with no load a job goes alone at once.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_jobs.append((job, future))
        if self._job_flusher is None:
            self._job_flusher = asyncio.create_task(self._flush_jobs())
        await future

    async def _flush_jobs(self) -> None:
        try:
            while self._pending_jobs:
                batch = self._pending_jobs[:JOB_INSERT_BATCH]
                del self._pending_jobs[:JOB_INSERT_BATCH]
                try:
                    await self.write(self.repo.insert_jobs, [job for job, _ in batch])
                except Exception as exc:
                    if len(batch) == 1:
                        _settle(batch[0][1], exc)
                        continue
                    # One bad row must not fail its neighbours: retry them one by one.
                    for job, future in batch:
                        try:
                            await self.write(self.repo.insert_jobs, [job])
                        except Exception as row_exc:
                            _settle(future, row_exc)
                        else:
                            _settle(future, None)
                    continue
                for _, future in batch:
                    _settle(future, None)
        finally:
            self._job_flusher = None

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
