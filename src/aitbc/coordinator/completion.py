"""A miner's results, judged and made ready to store: the terms a result must meet, and the countersigned
receipt of an accepted one (``CoordinatorService.submit_results`` stores a batch of them in one transaction)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from aitbc.coordinator.db.records import JobRecord, ReceiptRecord, lifecycle_columns
from aitbc.market.acceptance import ResultTerms, process_result
from aitbc.market.lifecycle import on_result
from aitbc.market.metering import MeteringBounds
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import AitbcError, NotFound
from aitbc.protocol.job import JobOutput
from aitbc.protocol.receipt import Receipt, compute_receipt_hash, countersign_receipt
from aitbc.protocol.zk import ZkReceiptProof


@dataclass(frozen=True, slots=True)
class DeliveredResult:
    """One result as a miner delivers it (``/result`` or one item of ``/results``)."""

    job_id: str
    lease_id: str
    output: JobOutput
    receipt: Receipt
    zk_proof: ZkReceiptProof | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """An accepted result: the job completed, and its countersigned receipt to store with it."""

    job: JobRecord
    lease_id: str
    receipt: Receipt
    stored: ReceiptRecord

    def answer(self) -> dict[str, Any]:
        return {"job_id": self.job.id, "receipt_hash": self.stored.receipt_hash, "receipt": self.stored.receipt}


def compute_result_terms(
    chain_id: str, coordinator: str, job: JobRecord, miner: str, metering: MeteringBounds
) -> ResultTerms:
    return ResultTerms(
        chain_id=chain_id,
        job_id=job.id,
        job_type=job.type,
        miner=miner,
        client=job.client,
        coordinator=coordinator,
        model=job.model,
        model_digest=job.served_digest or "",
        input_hash=job.input_hash,
        input_texts=tuple(job.input_texts),
        sealed=job.sealed is not None,
        max_price=job.max_price,
        escrow_amount=job.escrow_amount,
        zk_proof_required=job.constraints.zk_proof_required,
        assigned_at_ms=job.assigned_at_ms or 0,
        metering=metering,
        training=job.training,
    )


def complete_result(
    chain_id: str,
    key: KeyPair,
    job: JobRecord,
    miner: str,
    delivered: DeliveredResult,
    metering: MeteringBounds,
    now: int,
) -> Completion:
    """The job completed by ``delivered``, or raise why the result is refused (lifecycle, output, receipt)."""
    completed = on_result(job.lifecycle(), miner, delivered.lease_id, now)
    terms = compute_result_terms(chain_id, key.address, job, miner, metering)
    process_result(terms, delivered.output, delivered.receipt, delivered.zk_proof, now)
    cosigned = countersign_receipt(delivered.receipt, key)
    stored = ReceiptRecord(
        job_id=job.id,
        receipt_hash=compute_receipt_hash(cosigned),
        miner=miner,
        receipt=msgspec.to_builtins(cosigned),
        created_at_ms=now,
        zk_proof=None if delivered.zk_proof is None else msgspec.to_builtins(delivered.zk_proof),
    )
    job = replace(job, **lifecycle_columns(completed), result=delivered.output)
    return Completion(job, delivered.lease_id, delivered.receipt, stored)


def judge_results(
    chain_id: str,
    key: KeyPair,
    found: Mapping[str, JobRecord],
    bounds: Mapping[str, MeteringBounds],
    miner: str,
    delivered: Sequence[DeliveredResult],
    now: int,
) -> list[Completion | AitbcError]:
    """``complete_result`` for each of a miner's batch of results, on its own: per result, the completion or the
    error refusing it (no job ``found`` for its id: ``NotFound``)."""
    judged: list[Completion | AitbcError] = []
    for item in delivered:
        job = found.get(item.job_id)
        try:
            if job is None:
                raise NotFound(f"no job {item.job_id}")
            judged.append(complete_result(chain_id, key, job, miner, item, bounds[item.job_id], now))
        except AitbcError as exc:
            judged.append(exc)
    return judged
