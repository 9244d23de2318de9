"""What clients see of a job: its JSON view (never the miner's lease id)."""

from __future__ import annotations

from typing import Any

from aitbc.coordinator.db.records import JobPayment, JobRecord


def payment_view(job: JobRecord | JobPayment) -> dict[str, Any] | None:
    if job.payment_state is None:
        return None
    return {
        "state": job.payment_state,
        "escrow_amount": job.escrow_amount,
        "deadline_height": job.escrow_deadline,
        "tx_hash": job.payment_tx,
        "height": job.payment_height,
        "paid_to_miner": job.paid_to_miner,
        "protocol_fee": job.protocol_fee,
        "refunded": job.refunded,
        "error": job.payment_error,
    }


def constraints_view(job: JobRecord) -> dict[str, Any]:
    c = job.constraints
    view: dict[str, Any] = {"zk_proof_required": c.zk_proof_required, "audited": c.audited}
    for name in ("min_vram_gb", "gpu", "region", "miner"):
        value = getattr(c, name)
        if value is not None:
            view[name] = value
    return view


def job_view(job: JobRecord) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "type": job.type,
        "model": job.model,
        "state": job.state,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "client": job.client,
        "miner": job.miner,
        "model_digest": job.served_digest or job.model_digest,
        "input_hash": job.input_hash,
        "max_price": job.max_price,
        "constraints": constraints_view(job),
        "created_at_ms": job.created_at_ms,
        "assigned_at_ms": job.assigned_at_ms,
        "started_at_ms": job.started_at_ms,
        "finished_at_ms": job.finished_at_ms,
        "expires_at_ms": job.expires_at_ms,
        "error": job.error,
        "payment": payment_view(job),
    }
