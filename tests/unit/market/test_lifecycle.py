"""Every rule of the pure job lifecycle (``aitbc.market.lifecycle``), one test each, plus a state-machine property."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.market.lifecycle import (
    LEASED_STATES,
    TERMINAL_STATES,
    JobLifecycle,
    JobRuleViolation,
    JobState,
    is_lease_expired,
    is_terminal,
    is_ttl_expired,
    on_cancel,
    on_claim,
    on_failure,
    on_lease_expired,
    on_progress,
    on_release,
    on_result,
    on_ttl_expired,
)

T0 = 1_700_000_000_000
TTL_MS = 60_000
LEASE_MS = 2_000
MINER_A = "ait1miner-a"
MINER_B = "ait1miner-b"


def new_job(max_attempts: int = 3, now: int = T0) -> JobLifecycle:
    return JobLifecycle(
        state=JobState.QUEUED, attempts=0, max_attempts=max_attempts, created_at_ms=now, expires_at_ms=now + TTL_MS
    )


def claimed(
    job: JobLifecycle | None = None, miner: str = MINER_A, lease: str = "lease-1", at: int = T0 + 10
) -> JobLifecycle:
    return on_claim(job or new_job(), miner, lease, at, LEASE_MS)


def reason_of(fn: Any, *args: Any) -> str:
    with pytest.raises(JobRuleViolation) as info:
        fn(*args)
    return info.value.reason


def finished_jobs() -> dict[str, JobLifecycle]:
    job = claimed()
    return {
        "completed": on_result(job, MINER_A, "lease-1", T0 + 20),
        "failed": on_failure(job, MINER_A, "lease-1", T0 + 20, "boom", retryable=False),
        "cancelled": on_cancel(job, T0 + 20),
        "expired": on_ttl_expired(new_job(), T0 + TTL_MS),
    }


# -- claim ----------------------------------------------------------------------------


def test_claim_of_a_queued_job_assigns_a_lease() -> None:
    job = claimed(at=T0 + 10)
    assert job.state == JobState.ASSIGNED
    assert job.attempts == 1
    assert job.miner == MINER_A
    assert job.lease_id == "lease-1"
    assert job.assigned_at_ms == T0 + 10
    assert job.lease_expires_at_ms == T0 + 10 + LEASE_MS
    assert job.started_at_ms is None
    assert not is_terminal(job)


def test_claim_refused_unless_queued() -> None:
    job = claimed()
    assert reason_of(on_claim, job, MINER_B, "lease-2", T0 + 11, LEASE_MS) == "not_queued"
    running = on_progress(job, MINER_A, "lease-1", T0 + 12, LEASE_MS)
    assert reason_of(on_claim, running, MINER_B, "lease-2", T0 + 13, LEASE_MS) == "not_queued"
    for name, done in finished_jobs().items():
        assert reason_of(on_claim, done, MINER_B, "lease-2", T0 + 30, LEASE_MS) == "not_queued", name


def test_claim_refused_at_and_after_the_ttl() -> None:
    job = new_job()
    assert on_claim(job, MINER_A, "l", T0 + TTL_MS - 1, LEASE_MS).state == JobState.ASSIGNED
    assert reason_of(on_claim, job, MINER_A, "l", T0 + TTL_MS, LEASE_MS) == "job_expired"
    assert reason_of(on_claim, job, MINER_A, "l", T0 + TTL_MS + 5_000, LEASE_MS) == "job_expired"


def test_ttl_expiry_only_for_queued_jobs_past_their_ttl() -> None:
    job = new_job()
    assert not is_ttl_expired(job, T0 + TTL_MS - 1)
    assert reason_of(on_ttl_expired, job, T0 + TTL_MS - 1) == "not_expired"
    expired = on_ttl_expired(job, T0 + TTL_MS)
    assert expired.state == JobState.EXPIRED
    assert expired.finished_at_ms == T0 + TTL_MS
    assert is_terminal(expired)
    # A job a miner holds does not expire on ttl (the lease rules govern it).
    assert not is_ttl_expired(claimed(), T0 + TTL_MS + 1)
    assert reason_of(on_ttl_expired, claimed(), T0 + TTL_MS + 1) == "not_expired"


# -- progress and result: only the lease holder, before expiry ----------------------


def test_progress_by_the_holder_starts_the_job_and_extends_the_lease() -> None:
    job = claimed(at=T0 + 10)
    running = on_progress(job, MINER_A, "lease-1", T0 + 500, LEASE_MS)
    assert running.state == JobState.RUNNING
    assert running.started_at_ms == T0 + 500
    assert running.lease_expires_at_ms == T0 + 500 + LEASE_MS
    again = on_progress(running, MINER_A, "lease-1", T0 + 1_500, LEASE_MS)
    assert again.started_at_ms == T0 + 500, "the start time is the first progress, not the latest"
    assert again.lease_expires_at_ms == T0 + 1_500 + LEASE_MS
    # Progress keeps a job alive past its first lease.
    assert not is_lease_expired(again, T0 + 10 + LEASE_MS + 100)


def test_result_by_the_holder_completes() -> None:
    running = on_progress(claimed(at=T0 + 10), MINER_A, "lease-1", T0 + 100, LEASE_MS)
    done = on_result(running, MINER_A, "lease-1", T0 + 900)
    assert done.state == JobState.COMPLETED
    assert done.finished_at_ms == T0 + 900
    assert done.started_at_ms == T0 + 100
    assert done.lease_expires_at_ms is None
    assert is_terminal(done)


def test_result_straight_after_claim_starts_at_assignment() -> None:
    done = on_result(claimed(at=T0 + 10), MINER_A, "lease-1", T0 + 50)
    assert done.state == JobState.COMPLETED
    assert done.started_at_ms == T0 + 10


@pytest.mark.parametrize("report", ["progress", "result", "failure", "release"])
def test_reports_from_another_miner_are_not_assigned_to_you(report: str) -> None:
    job = claimed(miner=MINER_A)
    assert reason_of(*_report(report, job, MINER_B, "lease-1", T0 + 20)) == "not_assigned_to_you"


@pytest.mark.parametrize("report", ["progress", "result", "failure", "release"])
def test_reports_on_a_queued_job_are_not_assigned_to_you(report: str) -> None:
    assert reason_of(*_report(report, new_job(), MINER_A, "lease-1", T0 + 20)) == "not_assigned_to_you"


@pytest.mark.parametrize("report", ["progress", "result", "failure", "release"])
def test_reports_under_a_stale_lease_are_lease_lost(report: str) -> None:
    # Miner A lost the job, and later claimed it again under a new lease: its old lease is dead.
    first = claimed(miner=MINER_A, lease="lease-1", at=T0 + 10)
    requeued = on_lease_expired(first, T0 + 10 + LEASE_MS)
    again = on_claim(requeued, MINER_A, "lease-2", T0 + 10 + LEASE_MS + 5, LEASE_MS)
    assert reason_of(*_report(report, again, MINER_A, "lease-1", T0 + 10 + LEASE_MS + 10)) == "lease_lost"


@pytest.mark.parametrize("report", ["progress", "result", "failure", "release"])
def test_reports_after_the_lease_expired_are_lease_expired(report: str) -> None:
    job = claimed(at=T0 + 10)
    deadline = T0 + 10 + LEASE_MS
    # One millisecond before the deadline is still fine ...
    fn, *args = _report(report, job, MINER_A, "lease-1", deadline - 1)
    fn(*args)
    # ... at the deadline it is not (even before the sweeper requeued the job).
    assert reason_of(*_report(report, job, MINER_A, "lease-1", deadline)) == "lease_expired"
    assert reason_of(*_report(report, job, MINER_A, "lease-1", deadline + 60_000)) == "lease_expired"


@pytest.mark.parametrize("report", ["progress", "result", "failure", "release"])
@pytest.mark.parametrize("final", ["completed", "failed", "cancelled", "expired"])
def test_reports_on_a_finished_job_are_job_finished(report: str, final: str) -> None:
    done = finished_jobs()[final]
    assert reason_of(*_report(report, done, MINER_A, "lease-1", T0 + 30)) == "job_finished"


def _report(kind: str, job: JobLifecycle, miner: str, lease: str, now: int) -> tuple[Any, ...]:
    if kind == "progress":
        return (on_progress, job, miner, lease, now, LEASE_MS)
    if kind == "result":
        return (on_result, job, miner, lease, now)
    if kind == "failure":
        return (on_failure, job, miner, lease, now, "oops", True)
    return (on_release, job, miner, lease, now)


# -- lease expiry, failure, release ------------------------------------------------------


def test_lease_expiry_requeues_until_max_attempts_then_fails() -> None:
    job = new_job(max_attempts=3)
    now = T0
    for attempt in (1, 2):
        now += 10
        job = on_claim(job, MINER_A, f"lease-{attempt}", now, LEASE_MS)
        assert job.attempts == attempt
        assert reason_of(on_lease_expired, job, now + LEASE_MS - 1) == "lease_active"
        now += LEASE_MS
        job = on_lease_expired(job, now)
        assert job.state == JobState.QUEUED
        assert job.attempts == attempt
        assert job.miner is None and job.lease_id is None and job.lease_expires_at_ms is None
        assert job.assigned_at_ms is None and job.started_at_ms is None
        assert job.error is not None and MINER_A in job.error
    job = on_claim(job, MINER_B, "lease-3", now + 10, LEASE_MS)
    assert job.attempts == 3
    assert job.error is None, "a fresh claim clears the previous attempt's error"
    failed = on_lease_expired(job, now + 10 + LEASE_MS)
    assert failed.state == JobState.FAILED
    assert failed.finished_at_ms == now + 10 + LEASE_MS
    assert failed.error is not None and "3 attempts" in failed.error
    assert is_terminal(failed)


def test_lease_expiry_of_a_running_job() -> None:
    running = on_progress(claimed(at=T0), MINER_A, "lease-1", T0 + 100, LEASE_MS)
    assert not is_lease_expired(running, T0 + 100 + LEASE_MS - 1)
    assert is_lease_expired(running, T0 + 100 + LEASE_MS)
    assert on_lease_expired(running, T0 + 100 + LEASE_MS).state == JobState.QUEUED


def test_lease_expiry_does_not_apply_to_queued_or_finished_jobs() -> None:
    assert not is_lease_expired(new_job(), T0 + 10**9)
    assert reason_of(on_lease_expired, new_job(), T0 + 10**9) == "lease_active"
    for name, done in finished_jobs().items():
        assert not is_lease_expired(done, T0 + 10**9), name
        with pytest.raises(JobRuleViolation):
            on_lease_expired(done, T0 + 10**9)


def test_retryable_failure_requeues_until_max_attempts() -> None:
    job = claimed(new_job(max_attempts=2), lease="l1")
    job = on_failure(job, MINER_A, "l1", T0 + 20, "backend crashed", retryable=True)
    assert job.state == JobState.QUEUED
    assert job.error == "backend crashed"
    job = on_claim(job, MINER_B, "l2", T0 + 30, LEASE_MS)
    job = on_failure(job, MINER_B, "l2", T0 + 40, "backend crashed again", retryable=True)
    assert job.state == JobState.FAILED
    assert job.finished_at_ms == T0 + 40
    assert job.error is not None and "gave up after 2 attempts" in job.error


def test_non_retryable_failure_fails_at_once() -> None:
    job = on_failure(claimed(new_job(max_attempts=5)), MINER_A, "lease-1", T0 + 20, "bad input", retryable=False)
    assert job.state == JobState.FAILED
    assert job.error == "bad input"
    assert job.attempts == 1


def test_release_hands_back_without_counting_the_attempt() -> None:
    job = new_job(max_attempts=1)
    for i in range(5):  # more releases than max_attempts: none of them count
        job = on_claim(job, MINER_A, f"lease-{i}", T0 + 10 * i, LEASE_MS)
        assert job.attempts == 1
        job = on_progress(job, MINER_A, f"lease-{i}", T0 + 10 * i + 1, LEASE_MS)
        job = on_release(job, MINER_A, f"lease-{i}", T0 + 10 * i + 2)
        assert job.state == JobState.QUEUED
        assert job.attempts == 0
        assert job.miner is None and job.lease_id is None and job.started_at_ms is None
        assert job.error is None
    # After all those releases the one real attempt still exists.
    job = on_claim(job, MINER_B, "final", T0 + 100, LEASE_MS)
    assert on_result(job, MINER_B, "final", T0 + 110).state == JobState.COMPLETED


# -- cancel -------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["queued", "assigned", "running"])
def test_cancel_from_any_non_terminal_state(state: str) -> None:
    job = new_job()
    if state != "queued":
        job = claimed(job)
    if state == "running":
        job = on_progress(job, MINER_A, "lease-1", T0 + 20, LEASE_MS)
    assert job.state == JobState(state)
    cancelled = on_cancel(job, T0 + 30)
    assert cancelled.state == JobState.CANCELLED
    assert cancelled.finished_at_ms == T0 + 30
    assert cancelled.lease_id is None and cancelled.lease_expires_at_ms is None
    # The miner that held it can no longer deliver.
    assert reason_of(on_result, cancelled, MINER_A, "lease-1", T0 + 31) == "job_finished"


@pytest.mark.parametrize("final", ["completed", "failed", "cancelled", "expired"])
def test_cancel_of_a_finished_job_is_refused(final: str) -> None:
    assert reason_of(on_cancel, finished_jobs()[final], T0 + 40) == "job_finished"


def test_state_sets() -> None:
    assert {s.value for s in TERMINAL_STATES} == {"completed", "failed", "cancelled", "expired"}
    assert {s.value for s in LEASED_STATES} == {"assigned", "running"}
    assert all(is_terminal(j) for j in finished_jobs().values())


# -- property: random event sequences ------------------------------------------------------

MINERS = (MINER_A, MINER_B)
LEASES = ("lease-0", "lease-1", "lease-2", "lease-3")

event = st.one_of(
    st.tuples(st.just("claim"), st.sampled_from(MINERS), st.integers(0, 3_000)),
    st.tuples(st.just("progress"), st.sampled_from(MINERS), st.sampled_from(LEASES), st.integers(0, 3_000)),
    st.tuples(st.just("result"), st.sampled_from(MINERS), st.sampled_from(LEASES), st.integers(0, 3_000)),
    st.tuples(
        st.just("failure"), st.sampled_from(MINERS), st.sampled_from(LEASES), st.integers(0, 3_000), st.booleans()
    ),
    st.tuples(st.just("release"), st.sampled_from(MINERS), st.sampled_from(LEASES), st.integers(0, 3_000)),
    st.tuples(st.just("sweep"), st.integers(0, 3_000)),
    st.tuples(st.just("ttl"), st.integers(0, 80_000)),
    st.tuples(st.just("cancel"), st.integers(0, 3_000)),
)


def _apply(job: JobLifecycle, ev: tuple[Any, ...], now: int, lease_counter: list[int]) -> JobLifecycle:
    kind = ev[0]
    if kind == "claim":
        lease_counter[0] += 1
        return on_claim(job, ev[1], LEASES[lease_counter[0] % len(LEASES)], now, LEASE_MS)
    if kind == "progress":
        return on_progress(job, ev[1], ev[2], now, LEASE_MS)
    if kind == "result":
        return on_result(job, ev[1], ev[2], now)
    if kind == "failure":
        return on_failure(job, ev[1], ev[2], now, "err", ev[4])
    if kind == "release":
        return on_release(job, ev[1], ev[2], now)
    if kind == "sweep":
        return on_lease_expired(job, now)
    if kind == "ttl":
        return on_ttl_expired(job, now)
    return on_cancel(job, now)


@settings(max_examples=400, deadline=None)
@given(st.lists(event, max_size=40), st.integers(1, 4))
def test_random_event_sequences_never_leave_a_terminal_state_nor_complete_twice(
    events: list[tuple[Any, ...]], max_attempts: int
) -> None:
    job = new_job(max_attempts=max_attempts)
    now = T0
    lease_counter = [0]
    completions = 0
    claims_counted = 0
    for ev in events:
        now += ev[-1] if not isinstance(ev[-1], bool) else ev[-2]
        before = job
        try:
            after = _apply(job, ev, now, lease_counter)
        except JobRuleViolation as exc:
            assert exc.reason
            continue
        # Nothing ever leaves a terminal state.
        assert not is_terminal(before), f"{ev[0]} moved a {before.state} job to {after.state}"
        # Only the lease holder, under its lease and before expiry, moves a leased job forward.
        if ev[0] in ("progress", "result", "failure", "release"):
            assert before.state in LEASED_STATES
            assert before.miner == ev[1] and before.lease_id == ev[2]
            assert before.lease_expires_at_ms is not None and now < before.lease_expires_at_ms
        if after.state == JobState.COMPLETED:
            completions += 1
            assert ev[0] == "result"
        if ev[0] == "claim":
            claims_counted += 1
        if ev[0] == "release":
            claims_counted -= 1
        # Invariants of every state.
        assert 0 <= after.attempts <= max_attempts
        assert after.attempts == claims_counted
        if after.state in LEASED_STATES:
            assert after.miner is not None and after.lease_id is not None and after.lease_expires_at_ms is not None
        if after.state == JobState.QUEUED:
            assert after.miner is None and after.lease_id is None
        if after.state in TERMINAL_STATES:
            assert after.finished_at_ms == now
        job = after
    assert completions <= 1
    if completions:
        assert job.state == JobState.COMPLETED


def test_replace_keeps_frozen_state() -> None:
    # The lifecycle value is immutable: every transition returns a new value.
    job = new_job()
    after = on_claim(job, MINER_A, "l", T0 + 1, LEASE_MS)
    assert job.state == JobState.QUEUED and after is not job
    with pytest.raises(AttributeError):
        job.state = JobState.COMPLETED  # type: ignore[misc]
    assert replace(job) == job
