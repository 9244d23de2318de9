"""Result acceptance (``aitbc.market.acceptance``): which delivered results may complete a job, and why not."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from aitbc.market.acceptance import ResultRejected, ResultTerms, get_output_problem, process_result
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.job import JobInput, JobOutput, compute_input_hash, compute_output_hash, pack_vectors
from aitbc.protocol.receipt import (
    InvalidReceipt,
    Receipt,
    ReceiptUnits,
    compute_total_price,
    sign_receipt_as_miner,
)

MINER = KeyPair.from_seed(b"\x31" * 32)
COORDINATOR = KeyPair.from_seed(b"\x32" * 32)
ASSIGNED = 1_700_000_000_000
JOB_INPUT = JobInput(type="inference", model="m", prompt="hi")
OUTPUT = JobOutput(text="hello")
UNITS = ReceiptUnits(prompt_tokens=2, completion_tokens=3, compute_ms=100)
TERMS = ResultTerms(
    chain_id="aitbc-unit",
    job_id="job_1",
    job_type="inference",
    miner=MINER.address,
    client="key1",
    coordinator=COORDINATOR.address,
    model="m",
    model_digest="sha256:" + "ab" * 32,
    input_hash=compute_input_hash(JOB_INPUT),
    input_texts=(),
    sealed=False,
    max_price=100,
    escrow_amount=None,
    zk_proof_required=False,
    assigned_at_ms=ASSIGNED,
)


def receipt_for(output: JobOutput = OUTPUT, **changes: Any) -> Receipt:
    fields: dict[str, Any] = {
        "chain_id": TERMS.chain_id,
        "job_id": TERMS.job_id,
        "miner": MINER.address,
        "client": TERMS.client,
        "coordinator": COORDINATOR.address,
        "model": TERMS.model,
        "model_digest": TERMS.model_digest,
        "input_hash": TERMS.input_hash,
        "output_hash": compute_output_hash(output),
        "units": UNITS,
        "unit_price": 2,
        "total_price": compute_total_price(UNITS, 2),
        "started_at_ms": ASSIGNED + 10,
        "finished_at_ms": ASSIGNED + 200,
        **changes,
    }
    return sign_receipt_as_miner(Receipt(**fields), MINER)


def test_a_right_result_is_accepted() -> None:
    process_result(TERMS, OUTPUT, receipt_for(), None, ASSIGNED + 300)


def test_an_output_of_the_wrong_kind_is_rejected_before_the_receipt_is_looked_at() -> None:
    vectors = JobOutput(dimensions=1, vectors_f32="0000803f")
    with pytest.raises(ResultRejected, match="inference result must carry text") as caught:
        process_result(TERMS, vectors, receipt_for(), None, ASSIGNED + 300)
    assert caught.value.reason == "bad_result"


def test_a_receipt_that_does_not_cover_this_output_is_invalid() -> None:
    with pytest.raises(InvalidReceipt):
        process_result(TERMS, JobOutput(text="other"), receipt_for(), None, ASSIGNED + 300)
    with pytest.raises(InvalidReceipt):  # priced above the job's max_price
        process_result(replace(TERMS, max_price=1), OUTPUT, receipt_for(), None, ASSIGNED + 300)


def test_a_sealed_result_is_checked_against_the_hash_the_miner_states() -> None:
    sealed_output = JobOutput(text="ciphertext")
    receipt = receipt_for(output=OUTPUT)  # the hash of the plaintext, which only the client can check
    process_result(replace(TERMS, sealed=True), sealed_output, receipt, None, ASSIGNED + 300)


def test_a_job_that_asked_for_a_proof_needs_one() -> None:
    with pytest.raises(ResultRejected, match="requires a zk receipt proof"):
        process_result(replace(TERMS, zk_proof_required=True), OUTPUT, receipt_for(), None, ASSIGNED + 300)


def test_embedding_outputs_must_answer_every_text() -> None:
    dims, packed = pack_vectors([[0.5, 0.25], [1.0, 2.0]])
    good = JobOutput(dimensions=dims, vectors_f32=packed)
    assert get_output_problem("embedding", ("a", "b"), good) is None
    assert get_output_problem("embedding", ("a", "b", "c"), good) == "expected 3 vectors of 2 float32 values"
    assert get_output_problem("embedding", ("a",), JobOutput(text="x")) is not None
    assert get_output_problem("zk-inference", ("1,2,3,4",), JobOutput(text="not json")) is not None
