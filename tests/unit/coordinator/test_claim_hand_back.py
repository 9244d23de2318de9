"""A claim whose miner went away while it took jobs hands them back (``CoordinatorService.claim_many``):
the jobs are queued again at once, their attempt not counted, instead of waiting out a lease no one holds.
In process, on a real SQLite store; the end-to-end case (a miner killed mid-poll) is in
``tests/integration/coordinator/test_claim_disconnect.py``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from aitbc.coordinator.app import open_repo
from aitbc.coordinator.auth import new_api_key
from aitbc.coordinator.config import CoordinatorSettings
from aitbc.coordinator.db.records import JobRecord
from aitbc.coordinator.metrics import CoordinatorMetrics
from aitbc.coordinator.services import CoordinatorService
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.job_messages import JobRequest, MinerRegistration, decode_message

MODEL = {"name": "fake-gone", "digest": "sha256:" + "7" * 64, "kind": "text", "unit_price": 1}


async def take_two_jobs_for_a_miner_gone_midway(data_dir: Path) -> tuple[list[JobRecord], list[str]]:
    settings = CoordinatorSettings(data_dir=data_dir, lease_seconds=60)
    repo = open_repo(settings)
    service = CoordinatorService(settings, repo, KeyPair.generate(), CoordinatorMetrics())
    service.load()
    try:
        miner = KeyPair.generate().address
        registration = {"models": [MODEL], "backend": "fake", "hardware": {"kind": "cpu"}, "max_concurrency": 4}
        await service.register_miner(miner, decode_message(MinerRegistration, orjson.dumps(registration)))
        _, key = new_api_key("t", None, 100.0, 100)
        repo.insert_api_key(key)
        body: dict[str, Any] = {"type": "inference", "model": "fake-gone", "input": {"prompt": "hi"}}
        ids = [(await service.submit_job(key, decode_message(JobRequest, orjson.dumps(body))))["job_id"] for _ in "ab"]
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        take = service.dispatcher._claim_queued

        async def take_then_lose_the_connection(*args: Any) -> list[JobRecord]:
            taken = await take(*args)
            gone.set_result(None)  # the miner's connection closes while its claim takes the jobs
            return taken

        service.dispatcher._claim_queued = take_then_lose_the_connection  # type: ignore[method-assign]
        assert await service.claim_many(miner, 0, 4, gone) == [], "no answer goes to a closed connection"
        service.dispatcher._claim_queued = take  # type: ignore[method-assign]
        after = [await service.get_job(None, job_id) for job_id in ids]
        again = await service.claim_many(miner, 0, 4)
        return after, [a.job.job_id for a in again]
    finally:
        service.close()


def test_jobs_a_gone_miner_took_are_queued_again_at_once(tmp_path: Path) -> None:
    after, claimed_again = asyncio.run(take_two_jobs_for_a_miner_gone_midway(tmp_path))
    for job in after:
        assert (job.state, job.attempts, job.miner, job.lease_id) == ("queued", 0, None, None)
    assert sorted(claimed_again) == sorted(job.id for job in after), "the next claim gets them, not a lease later"
