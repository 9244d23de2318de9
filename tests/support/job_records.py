"""A queued job record for tests of the coordinator's repository and writer (no API, no miner)."""

from __future__ import annotations

from dataclasses import replace

from aitbc.coordinator.db.records import JobRecord, StoredConstraints
from aitbc.market.lifecycle import JobState
from aitbc.protocol.job import JobInput
from aitbc.protocol.job_messages import SealedJobInput


def queued_job(job_id: str, job_input: JobInput | SealedJobInput, **changes: object) -> JobRecord:
    """A queued job of model ``m`` for key ``k1``, with ``changes`` to any field."""
    job = JobRecord(
        id=job_id,
        api_key_id="k1",
        client="k1",
        type="inference",
        model="m",
        model_digest=None,
        input=job_input,
        input_hash="ab" * 32,
        max_price=10,
        constraints=StoredConstraints(region="eu"),
        state=JobState.QUEUED.value,
        attempts=0,
        max_attempts=3,
        expires_at_ms=2_000,
        created_at_ms=1_000,
    )
    return replace(job, **changes)  # type: ignore[arg-type]
