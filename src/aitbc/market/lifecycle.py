"""The job lifecycle as pure transitions.

    queued ──claim──▶ assigned ──progress──▶ running ──result──▶ completed
       ▲                 │ │                   │ │
       └─lease expired / release (attempts left)┘ └─failure / lease expired (no attempts left)─▶ failed
    queued ──ttl──▶ expired          any non-terminal ──cancel──▶ cancelled

A claimed job carries a lease (id, miner, expiry). Only the lease holder may
report progress or a result, and only before the lease expires; progress
extends the lease. A job completes exactly once: every transition out of a
terminal state is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from aitbc.protocol.errors import Conflict


class JobState(StrEnum):
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


TERMINAL_STATES: Final = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED})
LEASED_STATES: Final = frozenset({JobState.ASSIGNED, JobState.RUNNING})


class JobRuleViolation(Conflict):
    """A lifecycle transition the rules refuse (HTTP 409); ``reason`` says which rule."""


@dataclass(frozen=True, slots=True)
class JobLifecycle:
    state: JobState
    attempts: int
    max_attempts: int
    created_at_ms: int
    expires_at_ms: int
    """A job still queued at this time expires (the client's ttl)."""
    miner: str | None = None
    lease_id: str | None = None
    lease_expires_at_ms: int | None = None
    assigned_at_ms: int | None = None
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    error: str | None = None


def is_terminal(job: JobLifecycle) -> bool:
    return job.state in TERMINAL_STATES


def is_lease_expired(job: JobLifecycle, now_ms: int) -> bool:
    return job.state in LEASED_STATES and job.lease_expires_at_ms is not None and now_ms >= job.lease_expires_at_ms


def is_ttl_expired(job: JobLifecycle, now_ms: int) -> bool:
    return job.state == JobState.QUEUED and now_ms >= job.expires_at_ms


def _verify_lease_holder(job: JobLifecycle, miner: str, lease_id: str, now_ms: int) -> None:
    if job.state in TERMINAL_STATES:
        raise JobRuleViolation(f"job is already {job.state.value}", reason="job_finished")
    if job.state not in LEASED_STATES or job.miner != miner:
        raise JobRuleViolation("job is not assigned to this miner", reason="not_assigned_to_you")
    if job.lease_id != lease_id:
        raise JobRuleViolation("lease is no longer valid (the job was reassigned)", reason="lease_lost")
    if is_lease_expired(job, now_ms):
        raise JobRuleViolation("lease expired before this report arrived", reason="lease_expired")


def on_claim(job: JobLifecycle, miner: str, lease_id: str, now_ms: int, lease_ms: int) -> JobLifecycle:
    # Verify the job is waiting and not past its ttl
    if job.state != JobState.QUEUED:
        raise JobRuleViolation(f"job is {job.state.value}, not queued", reason="not_queued")
    if is_ttl_expired(job, now_ms):
        raise JobRuleViolation("job expired before it was claimed", reason="job_expired")
    return replace(
        job,
        state=JobState.ASSIGNED,
        attempts=job.attempts + 1,
        miner=miner,
        lease_id=lease_id,
        lease_expires_at_ms=now_ms + lease_ms,
        assigned_at_ms=now_ms,
        error=None,
    )


def on_progress(job: JobLifecycle, miner: str, lease_id: str, now_ms: int, lease_ms: int) -> JobLifecycle:
    _verify_lease_holder(job, miner, lease_id, now_ms)
    return replace(
        job,
        state=JobState.RUNNING,
        lease_expires_at_ms=now_ms + lease_ms,
        started_at_ms=job.started_at_ms if job.started_at_ms is not None else now_ms,
    )


def on_result(job: JobLifecycle, miner: str, lease_id: str, now_ms: int) -> JobLifecycle:
    _verify_lease_holder(job, miner, lease_id, now_ms)
    return replace(
        job,
        state=JobState.COMPLETED,
        finished_at_ms=now_ms,
        lease_expires_at_ms=None,
        started_at_ms=job.started_at_ms if job.started_at_ms is not None else job.assigned_at_ms,
    )


def _requeue_or_fail(job: JobLifecycle, now_ms: int, error: str) -> JobLifecycle:
    if job.attempts >= job.max_attempts:
        return replace(
            job,
            state=JobState.FAILED,
            finished_at_ms=now_ms,
            lease_id=None,
            lease_expires_at_ms=None,
            error=f"{error}; gave up after {job.attempts} attempts",
        )
    return replace(
        job,
        state=JobState.QUEUED,
        miner=None,
        lease_id=None,
        lease_expires_at_ms=None,
        assigned_at_ms=None,
        started_at_ms=None,
        error=error,
    )


def on_failure(job: JobLifecycle, miner: str, lease_id: str, now_ms: int, error: str, retryable: bool) -> JobLifecycle:
    _verify_lease_holder(job, miner, lease_id, now_ms)
    if not retryable:
        return replace(
            job, state=JobState.FAILED, finished_at_ms=now_ms, lease_id=None, lease_expires_at_ms=None, error=error
        )
    return _requeue_or_fail(job, now_ms, error)


def on_release(job: JobLifecycle, miner: str, lease_id: str, now_ms: int) -> JobLifecycle:
    """A miner shutting down hands a job back; the attempt does not count against the job."""
    _verify_lease_holder(job, miner, lease_id, now_ms)
    return replace(
        job,
        state=JobState.QUEUED,
        attempts=max(0, job.attempts - 1),
        miner=None,
        lease_id=None,
        lease_expires_at_ms=None,
        assigned_at_ms=None,
        started_at_ms=None,
        error=None,
    )


def on_lease_expired(job: JobLifecycle, now_ms: int) -> JobLifecycle:
    if not is_lease_expired(job, now_ms):
        raise JobRuleViolation("lease has not expired", reason="lease_active")
    return _requeue_or_fail(job, now_ms, f"miner {job.miner} missed its lease")


def on_ttl_expired(job: JobLifecycle, now_ms: int) -> JobLifecycle:
    if not is_ttl_expired(job, now_ms):
        raise JobRuleViolation("job has not expired", reason="not_expired")
    return replace(job, state=JobState.EXPIRED, finished_at_ms=now_ms, error="no miner took the job before its ttl")


def on_cancel(job: JobLifecycle, now_ms: int) -> JobLifecycle:
    if job.state in TERMINAL_STATES:
        raise JobRuleViolation(f"job is already {job.state.value}", reason="job_finished")
    return replace(
        job,
        state=JobState.CANCELLED,
        finished_at_ms=now_ms,
        lease_id=None,
        lease_expires_at_ms=None,
        error="cancelled by the client",
    )


def on_escrow_refunded(job: JobLifecycle, now_ms: int) -> JobLifecycle:
    """The chain gave the client's escrow back (its deadline passed): nobody would be paid, so stop."""
    if job.state in TERMINAL_STATES:
        raise JobRuleViolation(f"job is already {job.state.value}", reason="job_finished")
    return replace(
        job,
        state=JobState.EXPIRED,
        finished_at_ms=now_ms,
        lease_id=None,
        lease_expires_at_ms=None,
        error="the escrow was refunded on chain before the job finished",
    )


class PaymentState(StrEnum):
    """Where a paid job's escrow stands, as the coordinator knows it."""

    ESCROWED = "escrowed"
    """Open on chain; nothing sent yet."""
    SETTLING = "settling"
    REFUNDING = "refunding"
    SETTLE_REFUSED = "settle_refused"
    """The chain refused the settlement for good (e.g. a bad receipt): refund instead."""
    SETTLED = "settled"
    REFUNDED = "refunded"
    # deposit jobs (aitbc.coordinator.deposits): no escrow; paid from the API key's deposit in a batch
    RESERVED = "reserved"
    """The job's worst-case charge is reserved on the deposit (in flight, or completed and not batched yet)."""
    BATCHING = "batching"
    """In a ``settle_batch`` sent and not yet seen on chain."""
    RELEASED = "released"
    """Ended without a result: the reservation was released, nothing paid."""
    BATCH_REFUSED = "batch_refused"
    """The chain refused the job's entry (its reason in ``payment_error``): nothing paid."""


SETTLE_ACTION: Final = "settle"
REFUND_ACTION: Final = "refund"


def get_payment_action(state: JobState, payment: PaymentState) -> str | None:
    """What a finished job's escrow needs: a completed job's receipt settles it, anything else refunds it."""
    if payment == PaymentState.SETTLE_REFUSED:
        return REFUND_ACTION
    if payment != PaymentState.ESCROWED or state not in TERMINAL_STATES:
        return None
    return SETTLE_ACTION if state == JobState.COMPLETED else REFUND_ACTION
