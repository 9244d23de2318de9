"""The coordinator's typed records, and their one mapping to and from table rows.

Only ``aitbc.coordinator.db.repo`` calls ``job_from_row`` / ``job_to_row``: everywhere else a job is a
``JobRecord`` (its input a ``JobInput`` or, for a private job, a ``SealedJobInput``; its constraints and
result typed), so a column renamed or a JSON shape changed is one edit here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from aitbc.market.lifecycle import JobLifecycle, JobState
from aitbc.market.matching import JobRequirements
from aitbc.protocol.job import JobInput, JobOutput, JobType, compute_input_units
from aitbc.protocol.job_messages import MinerRegistration, SealedJobInput
from aitbc.protocol.training import TrainingSpec


class StoredConstraints(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A job's constraints as kept: the client's, plus ``miner`` for a private job (sealed to that miner)."""

    min_vram_gb: float | None = None
    gpu: str | None = None
    region: str | None = None
    zk_proof_required: bool = False
    miner: str | None = None
    audited: bool = False
    """Only for miners bonded on chain (``aitbc.coordinator.audits``)."""


@dataclass(slots=True)
class JobRecord:
    """One job as stored: what was asked, its lifecycle, its result and its payment."""

    id: str
    api_key_id: str
    client: str
    type: JobType
    model: str
    model_digest: str | None
    input: JobInput | SealedJobInput
    input_hash: str
    max_price: int | None
    constraints: StoredConstraints
    state: str
    attempts: int
    max_attempts: int
    expires_at_ms: int
    created_at_ms: int
    miner: str | None = None
    lease_id: str | None = None
    lease_expires_at_ms: int | None = None
    assigned_at_ms: int | None = None
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    error: str | None = None
    served_digest: str | None = None
    assigned_unit_price: int | None = None
    """The served model's unit price at claim time: what the receipt must charge (aitbc.market.metering)."""
    result: JobOutput | None = None
    # payment on chain: all None for a job run unpaid (see aitbc.coordinator.payments)
    escrow_amount: int | None = None
    escrow_deadline: int | None = None
    payment_state: str | None = None
    payment_tx: str | None = None
    payment_height: int | None = None
    payment_updated_ms: int | None = None
    payment_error: str | None = None
    paid_to_miner: int | None = None
    protocol_fee: int | None = None
    refunded: int | None = None
    client_signature: str | None = None
    """A signed-mode deposit job: the client's signature over its job request, carried into the settle batch."""
    created_seq: int = 0
    """Orders jobs this coordinator process accepted in the same millisecond (``created_at_ms``): a client's
    job list is newest first even when two submissions share a millisecond. It counts up from 0 in each
    process (a restart takes longer than a millisecond); jobs that replicas accepted in the same millisecond
    are concurrent, and their order falls back to the counter and then the job id."""

    @property
    def sealed(self) -> SealedJobInput | None:
        return self.input if isinstance(self.input, SealedJobInput) else None

    @property
    def input_texts(self) -> list[str]:
        return list(self.input.texts or []) if isinstance(self.input, JobInput) else []

    @property
    def training(self) -> TrainingSpec | None:
        return self.input.training if isinstance(self.input, JobInput) else None

    def lifecycle(self) -> JobLifecycle:
        return JobLifecycle(
            state=JobState(self.state),
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            created_at_ms=self.created_at_ms,
            expires_at_ms=self.expires_at_ms,
            miner=self.miner,
            lease_id=self.lease_id,
            lease_expires_at_ms=self.lease_expires_at_ms,
            assigned_at_ms=self.assigned_at_ms,
            started_at_ms=self.started_at_ms,
            finished_at_ms=self.finished_at_ms,
            error=self.error,
        )

    def with_lifecycle(self, job: JobLifecycle) -> JobRecord:
        """This record after a lifecycle transition (the stored columns ``lifecycle_columns`` writes)."""
        return replace(self, **lifecycle_columns(job))

    def requirements(self) -> JobRequirements:
        """What a miner must offer to run this job (``aitbc.market.matching``)."""
        job_input = self.input
        chars = compute_input_units(job_input) if isinstance(job_input, JobInput) else 0
        return JobRequirements(
            job_type=self.type,
            model=self.model,
            input_chars=chars,
            max_tokens=job_input.params.max_tokens,
            model_digest=self.model_digest,
            max_price=self.max_price,
            min_vram_gb=self.constraints.min_vram_gb,
            gpu=self.constraints.gpu,
            region=self.constraints.region,
        )


@dataclass(slots=True, frozen=True)
class JobPayment:
    """A job's payment columns alone (what a ``payment`` event shows), read without the rest of the job."""

    id: str
    api_key_id: str
    payment_state: str | None
    escrow_amount: int | None
    escrow_deadline: int | None
    payment_tx: str | None
    payment_height: int | None
    paid_to_miner: int | None
    protocol_fee: int | None
    refunded: int | None
    payment_error: str | None


@dataclass(slots=True, frozen=True)
class ReceiptRecord:
    job_id: str
    receipt_hash: str
    miner: str
    receipt: dict[str, Any]
    """The countersigned receipt as JSON (exactly what clients and the chain get)."""
    created_at_ms: int
    zk_proof: dict[str, Any] | None = None


def lifecycle_columns(job: JobLifecycle) -> dict[str, Any]:
    """The columns a lifecycle transition writes."""
    return {
        "state": job.state.value,
        "attempts": job.attempts,
        "miner": job.miner,
        "lease_id": job.lease_id,
        "lease_expires_at_ms": job.lease_expires_at_ms,
        "assigned_at_ms": job.assigned_at_ms,
        "started_at_ms": job.started_at_ms,
        "finished_at_ms": job.finished_at_ms,
        "error": job.error,
    }


def _json(value: Any) -> Any:
    """A JSON column's value as read: text (SQLite, through the driver), or already decoded (SQLAlchemy's
    JSON type; psycopg)."""
    return msgspec.json.decode(value) if isinstance(value, str | bytes) else value


def _input_from_json(value: Any) -> JobInput | SealedJobInput:
    if isinstance(value, str | bytes):
        value = msgspec.json.decode(value)
    if "sealed" in value:
        return msgspec.convert(value, SealedJobInput)
    return msgspec.convert(value, JobInput)


def job_from_row(row: Mapping[Any, Any]) -> JobRecord:
    """A job from its row, read through SQLAlchemy or the driver (``aitbc.coordinator.db.driver``)."""
    values = dict(row)
    values["input"] = _input_from_json(row["input"])
    constraints = _json(row["constraints"])
    values["constraints"] = msgspec.convert(constraints or {}, StoredConstraints)
    result = _json(row["result"])
    values["result"] = None if result is None else msgspec.convert(result, JobOutput)
    return JobRecord(**values)


def job_to_row(job: JobRecord) -> dict[str, Any]:
    """A job's row as the driver takes it: its JSON columns as JSON text (``aitbc.coordinator.db.driver``)."""
    row = {name: getattr(job, name) for name in JobRecord.__slots__}
    row["input"] = json_text(job.input)
    row["constraints"] = json_text(job.constraints)
    row["result"] = None if job.result is None else json_text(job.result)
    return row


def json_text(value: Any) -> str:
    """A JSON column's value as the driver takes it (integers of any size kept exact)."""
    return msgspec.json.encode(value).decode()


def receipt_from_row(row: Mapping[Any, Any]) -> ReceiptRecord:
    return ReceiptRecord(**dict(row))


def receipt_to_row(receipt: ReceiptRecord) -> dict[str, Any]:
    """A receipt's row as the driver takes it (JSON columns as text, as ``job_to_row``)."""
    row = {name: getattr(receipt, name) for name in ReceiptRecord.__slots__}
    row["receipt"] = json_text(receipt.receipt)
    row["zk_proof"] = None if receipt.zk_proof is None else json_text(receipt.zk_proof)
    return row


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def registration_to_json(registration: MinerRegistration) -> dict[str, Any]:
    """A miner's registration as stored (unset optional fields left out)."""
    result: dict[str, Any] = _drop_none(msgspec.to_builtins(registration))
    return result


def registration_from_json(value: Any) -> MinerRegistration:
    return msgspec.convert(value, MinerRegistration)
