"""What a paid job's escrow needs (``get_payment_action``) and what a chain refund does to the job."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitbc.market.lifecycle import (
    REFUND_ACTION,
    SETTLE_ACTION,
    TERMINAL_STATES,
    JobLifecycle,
    JobRuleViolation,
    JobState,
    PaymentState,
    get_payment_action,
    on_claim,
    on_escrow_refunded,
)

T0 = 1_700_000_000_000


def test_a_completed_job_settles_and_every_other_ending_refunds() -> None:
    assert get_payment_action(JobState.COMPLETED, PaymentState.ESCROWED) == SETTLE_ACTION
    for state in (JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED):
        assert get_payment_action(state, PaymentState.ESCROWED) == REFUND_ACTION


def test_a_refused_settlement_is_refunded_instead() -> None:
    assert get_payment_action(JobState.COMPLETED, PaymentState.SETTLE_REFUSED) == REFUND_ACTION


@given(st.sampled_from(list(JobState)), st.sampled_from(list(PaymentState)))
def test_nothing_is_paid_before_the_job_ends_or_twice(state: JobState, payment: PaymentState) -> None:
    action = get_payment_action(state, payment)
    if payment in (PaymentState.SETTLING, PaymentState.REFUNDING, PaymentState.SETTLED, PaymentState.REFUNDED):
        assert action is None  # in flight or closed: never a second tx from this rule
    if state not in TERMINAL_STATES and payment == PaymentState.ESCROWED:
        assert action is None
    if action == SETTLE_ACTION:
        assert state == JobState.COMPLETED and payment == PaymentState.ESCROWED


def test_escrow_refund_stops_a_running_job_and_refuses_a_finished_one() -> None:
    job = JobLifecycle(state=JobState.QUEUED, attempts=0, max_attempts=3, created_at_ms=T0, expires_at_ms=T0 + 60_000)
    running = on_claim(job, "ait1m", "lease", T0 + 1, 2_000)
    stopped = on_escrow_refunded(running, T0 + 5)
    assert stopped.state == JobState.EXPIRED and stopped.lease_id is None and stopped.finished_at_ms == T0 + 5
    with pytest.raises(JobRuleViolation) as info:
        on_escrow_refunded(stopped, T0 + 6)
    assert info.value.reason == "job_finished"
