"""What an auditor reports after its re-run, and which jobs may be audited (aitbc.market.auditing)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.market.auditing import (
    EMBEDDING_TOLERANCE,
    check_audit_compatible,
    decide_audit_report,
    get_max_difference,
)
from aitbc.protocol.errors import InvalidInput
from aitbc.protocol.job import JobInput, JobOutput, Params, compute_output_hash, pack_vectors


def embedding(vectors: list[list[float]]) -> JobOutput:
    dims, packed = pack_vectors(vectors)
    return JobOutput(dimensions=dims, vectors_f32=packed)


def test_an_exact_rerun_agrees_and_reports_the_receipt_hash() -> None:
    output = JobOutput(text="Paris is the capital of France.")
    verdict = decide_audit_report("inference", compute_output_hash(output), output)
    assert verdict.agrees and verdict.output_hash == compute_output_hash(output)


def test_a_different_text_disagrees_and_reports_the_reruns_own_hash() -> None:
    honest = JobOutput(text="Paris is the capital of France.")
    claimed = JobOutput(text="Paris.")
    verdict = decide_audit_report("inference", compute_output_hash(claimed), honest, claimed)
    assert not verdict.agrees
    assert verdict.output_hash == compute_output_hash(honest) != compute_output_hash(claimed)


def test_text_gets_no_tolerance_even_with_the_delivered_output() -> None:
    delivered = JobOutput(text="a b c")
    verdict = decide_audit_report("inference", compute_output_hash(delivered), JobOutput(text="a b c "), delivered)
    assert not verdict.agrees


def test_embeddings_agree_within_the_tolerance_and_not_beyond() -> None:
    delivered = embedding([[0.5, -0.25, 0.125], [0.0, 1.0, 0.0]])
    close = embedding([[0.5 + EMBEDDING_TOLERANCE / 2, -0.25, 0.125], [0.0, 1.0, 0.0]])
    far = embedding([[0.5 + EMBEDDING_TOLERANCE * 20, -0.25, 0.125], [0.0, 1.0, 0.0]])
    receipt_hash = compute_output_hash(delivered)
    agreed = decide_audit_report("embedding", receipt_hash, close, delivered)
    assert agreed.agrees and agreed.output_hash == receipt_hash
    refused = decide_audit_report("embedding", receipt_hash, far, delivered)
    assert not refused.agrees and refused.output_hash == compute_output_hash(far)


def test_an_embedding_whose_delivered_output_is_not_the_receipts_disagrees() -> None:
    delivered = embedding([[0.5, 0.5]])
    other = embedding([[0.5, 0.25]])
    verdict = decide_audit_report("embedding", compute_output_hash(other), delivered, delivered)
    assert not verdict.agrees and "does not match" in verdict.reason


def test_embeddings_of_another_shape_disagree() -> None:
    delivered = embedding([[0.5, 0.5]])
    rerun = embedding([[0.5, 0.5, 0.0]])
    assert get_max_difference(rerun, delivered) is None
    assert not decide_audit_report("embedding", compute_output_hash(delivered), rerun, delivered).agrees


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_text_verdict_agrees_exactly_when_the_outputs_are_equal(rerun: str, claimed: str) -> None:
    verdict = decide_audit_report("inference", compute_output_hash(JobOutput(text=claimed)), JobOutput(text=rerun))
    assert verdict.agrees == (rerun == claimed)
    assert verdict.output_hash == compute_output_hash(JobOutput(text=rerun))


def test_only_deterministic_jobs_may_ask_for_an_audit() -> None:
    greedy = JobInput(type="inference", model="m", prompt="hi")
    seeded = JobInput(type="inference", model="m", prompt="hi", params=Params(temperature_milli=700, seed=7))
    sampled = JobInput(type="inference", model="m", prompt="hi", params=Params(temperature_milli=700))
    check_audit_compatible(greedy)
    check_audit_compatible(seeded)
    check_audit_compatible(JobInput(type="embedding", model="m", texts=["a"]))
    with pytest.raises(InvalidInput, match="deterministic"):
        check_audit_compatible(sampled)
    with pytest.raises(InvalidInput, match="zk-inference"):
        check_audit_compatible(JobInput(type="zk-inference", model="m", texts=["1,2"]))


def test_only_the_drawn_auditor_then_the_referees_who_have_not_reported_may_report() -> None:
    from aitbc.chain.audit_types import Audit, AuditCandidate, RefereeReport
    from aitbc.market.auditing import get_audit_role
    from aitbc.protocol.crypto import KeyPair

    miner, auditor, ref1, ref2 = (KeyPair.from_seed(bytes([i]) * 32).address for i in range(1, 5))
    job = AuditCandidate(job_id="j", miner=miner, client="c", model_digest="sha256:x", output_hash="00" * 32,
                         receipt_hash="11" * 32, charged=10, protocol_fee=1)  # fmt: skip
    pending = Audit(job=job, auditor=auditor, selected_height=5, deadline_height=65)
    assert get_audit_role(pending, auditor) == "auditor"
    assert get_audit_role(pending, miner) is None and get_audit_role(pending, ref1) is None
    disputed = Audit(job=job, auditor=auditor, selected_height=5, deadline_height=70, status="disputed",
                     referees=[ref1, ref2], reports=[RefereeReport(ref1, "22" * 32)])  # fmt: skip
    assert get_audit_role(disputed, ref2) == "referee"
    assert get_audit_role(disputed, ref1) is None and get_audit_role(disputed, auditor) is None
    assert get_audit_role(Audit(job=job, auditor=auditor, selected_height=5, deadline_height=65, status="passed"),
                          auditor) is None  # fmt: skip
