"""Result acceptance: whether a miner's delivered output, receipt and proof may complete a job.

Pure rules, no I/O: the coordinator (``aitbc.coordinator.services``) calls ``process_result``
with what it knows of the job (``ResultTerms``) before it stores anything. Each check raises a
typed error — ``ResultRejected`` for an output or proof that does not fit the job,
``InvalidReceipt`` (from ``aitbc.protocol.receipt``) for a receipt that does not fit it — so a
refused result changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from aitbc.market.metering import MeteringBounds, verify_receipt_metering
from aitbc.protocol.errors import AitbcError
from aitbc.protocol.job import JobOutput
from aitbc.protocol.receipt import Receipt, ReceiptExpectation, verify_receipt
from aitbc.protocol.training import TrainingSpec, get_commitment_problem
from aitbc.protocol.zk import ZkReceiptProof, compute_proof_escrow, get_receipt_proof_problem
from aitbc.protocol.zkml import (
    ZK_INFERENCE,
    ZKML_OUTPUTS,
    ZKML_SCALE,
    compute_job_output_hash,
    get_zk_inference_problem,
    parse_zk_inference_proofs,
)


class ResultRejected(AitbcError):
    """A delivered output or proof that does not fit the job (HTTP 422)."""

    reason = "bad_result"
    http_status = 422


@dataclass(frozen=True, slots=True)
class ResultTerms:
    """What the coordinator knows of a job independently of the result a miner delivers for it."""

    chain_id: str
    job_id: str
    job_type: str
    miner: str
    client: str
    coordinator: str
    model: str
    model_digest: str
    input_hash: str
    input_texts: tuple[str, ...]
    """The embedding / zk-inference inputs the output must answer one by one."""
    sealed: bool
    """A private job: the output is ciphertext, so its hash is the client's to check after decrypting."""
    max_price: int | None
    escrow_amount: int | None
    zk_proof_required: bool
    assigned_at_ms: int
    metering: MeteringBounds | None = None
    training: TrainingSpec | None = None
    """A training job's spec: the output's commitment must be to it."""
    """The unit price and token bounds the receipt must respect (``aitbc.market.metering``)."""


def get_output_problem(
    job_type: str, input_texts: tuple[str, ...], output: JobOutput, training: TrainingSpec | None = None
) -> str | None:
    """Why ``output`` cannot be the answer to a job of ``job_type`` over ``input_texts`` (None: it can)."""
    if job_type == "training":
        if output.training is None or output.text is not None or output.vectors_f32:
            return "a training result must carry its training output and nothing else"
        if training is None:
            return "the job has no training spec"
        problem = get_commitment_problem(training, output.training.commitment)
        return None if problem is None else f"training result refused: {problem}"
    if output.training is not None:
        return "only a training result carries a training output"
    if job_type == "inference":
        if output.text is None or output.vectors_f32:
            return "an inference result must carry text and no vectors"
        return None
    if job_type == ZK_INFERENCE:  # EXPERIMENTAL: the proofs must be about this job's vectors
        try:
            problem = get_zk_inference_problem(parse_zk_inference_proofs(output.text), list(input_texts), ZKML_SCALE)
        except ValueError as exc:
            problem = str(exc)
        if problem is None and len(output.vectors_f32) != 8 * ZKML_OUTPUTS * len(input_texts):
            problem = f"expected {len(input_texts)} output vectors of {ZKML_OUTPUTS} float32 values"
        return None if problem is None else f"zk-inference result refused: {problem}"
    if output.text is not None or output.dimensions == 0:
        return "an embedding result must carry vectors and no text"
    if len(output.vectors_f32) != 8 * output.dimensions * len(input_texts):
        return f"expected {len(input_texts)} vectors of {output.dimensions} float32 values"
    return None


def get_zk_proof_problem(terms: ResultTerms, receipt: Receipt, zk_proof: ZkReceiptProof | None) -> str | None:
    """A job that asked for a proof gets a valid one (the chain checks it again at settlement)."""
    if zk_proof is None:
        if terms.zk_proof_required:
            return "this job requires a zk receipt proof (constraints.zk_proof_required)"
        return None
    escrow = compute_proof_escrow(terms.escrow_amount, terms.max_price, receipt.total_price)
    problem = get_receipt_proof_problem(zk_proof, receipt, escrow)
    return None if problem is None else f"zk proof refused: {problem}"


def compute_receipt_expectation(
    terms: ResultTerms, output: JobOutput, receipt: Receipt, now_ms: int
) -> ReceiptExpectation:
    """What the miner's receipt must say about this job, delivered now."""
    return ReceiptExpectation(
        chain_id=terms.chain_id,
        job_id=terms.job_id,
        miner=terms.miner,
        client=terms.client,
        coordinator=terms.coordinator,
        model=terms.model,
        model_digest=terms.model_digest,
        input_hash=terms.input_hash,
        output_hash=receipt.output_hash if terms.sealed else compute_job_output_hash(terms.job_type, output),
        max_total_price=terms.max_price,
        earliest_start_ms=terms.assigned_at_ms,
        latest_finish_ms=now_ms,
        require_coordinator_signature=False,
    )


def process_result(
    terms: ResultTerms, output: JobOutput, receipt: Receipt, zk_proof: ZkReceiptProof | None, now_ms: int
) -> None:
    """Accept a delivered result or raise why not (``ResultRejected`` / ``InvalidReceipt``)."""
    # Verify the output answers the job
    problem = get_output_problem(terms.job_type, terms.input_texts, output, terms.training)
    if problem is not None:
        raise ResultRejected(problem)
    # Verify the receipt: signed by the miner, about this job and this output, priced as assigned
    verify_receipt(receipt, compute_receipt_expectation(terms, output, receipt, now_ms))
    # Verify it charges the assigned price for tokens the job can have used
    if terms.metering is not None:
        verify_receipt_metering(receipt, terms.metering)
    # Verify the zk proof, when the job asked for one or the miner sent one
    problem = get_zk_proof_problem(terms, receipt, zk_proof)
    if problem is not None:
        raise ResultRejected(problem)
