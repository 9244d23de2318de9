"""Typed records for API keys and payments, mapped once from their rows here.

``aitbc.coordinator.db.repo`` / ``deposit_repo`` return these instead of row dicts, so the
authenticator, the escrow payer and the deposit settler read fields, not string keys, and a column
renamed is one edit in this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import msgspec

from aitbc.market.lifecycle import JobState, PaymentState
from aitbc.protocol.receipt import Receipt


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A client API key as stored: only the secret's hash, the client address it acts for, its limits."""

    id: str
    name: str
    secret_hash: str
    client: str
    rate_per_second: float
    burst: int
    revoked: bool = False
    created_at_ms: int = 0

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


def api_key_from_row(row: Mapping[Any, Any]) -> ApiKey:
    return ApiKey(
        id=str(row["id"]),
        name=str(row["name"]),
        secret_hash=str(row["secret_hash"]),
        client=str(row["client"]),
        rate_per_second=float(row["rate_per_second"]),
        burst=int(row["burst"]),
        revoked=bool(row["revoked"]),
        created_at_ms=int(row["created_at_ms"]),
    )


@dataclass(frozen=True, slots=True)
class DuePayment:
    """An escrow-paid job whose escrow needs a tx (settle or refund), or whose sent tx was not seen."""

    id: str
    state: JobState
    payment_state: PaymentState
    payment_tx: str | None
    payment_updated_ms: int | None


def due_payment_from_row(row: Mapping[Any, Any]) -> DuePayment:
    updated = row["payment_updated_ms"]
    return DuePayment(
        id=str(row["id"]),
        state=JobState(row["state"]),
        payment_state=PaymentState(row["payment_state"]),
        payment_tx=row["payment_tx"],
        payment_updated_ms=None if updated is None else int(updated),
    )


@dataclass(frozen=True, slots=True)
class StoredReceipt:
    """A job's countersigned receipt and, for a zk job, the proof the chain verifies with it."""

    job_id: str
    receipt: Receipt
    zk_proof: dict[str, Any] | None


def stored_receipt_from_row(row: Mapping[Any, Any]) -> StoredReceipt:
    return StoredReceipt(
        job_id=str(row["job_id"]), receipt=msgspec.convert(row["receipt"], Receipt), zk_proof=row.get("zk_proof")
    )


@dataclass(frozen=True, slots=True)
class DueSettlement:
    """A completed deposit job not yet in a batch: what its ``settle_batch`` entry is made of."""

    id: str
    deposit_id: str
    receipt: Receipt
    max_price: int | None
    client_signature: str | None
    """Set for a signed-mode deposit: the client's signature over the job request."""


def due_settlement_from_row(row: Mapping[Any, Any]) -> DueSettlement:
    max_price = row["max_price"]
    return DueSettlement(
        id=str(row["id"]),
        deposit_id=str(row["deposit_id"]),
        receipt=msgspec.convert(row["receipt"], Receipt),
        max_price=None if max_price is None else int(max_price),
        client_signature=row["client_signature"] or None,
    )


@dataclass(frozen=True, slots=True)
class OpenDepositJob:
    """A deposit job still reserved or in a batch: what rebuilding a deposit's books on start needs."""

    id: str
    deposit_id: str
    state: JobState
    payment_state: PaymentState
    charge: int
    """The most the job may cost (price cap plus fee), held against the deposit."""


def open_deposit_job_from_row(row: Mapping[Any, Any]) -> OpenDepositJob:
    return OpenDepositJob(
        id=str(row["id"]),
        deposit_id=str(row["deposit_id"]),
        state=JobState(row["state"]),
        payment_state=PaymentState(row["payment_state"]),
        charge=int(row["escrow_amount"] or 0),
    )
