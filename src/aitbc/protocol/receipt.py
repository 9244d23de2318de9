"""Job receipts: signed by the miner, checked and countersigned by the coordinator.

One pure function, ``verify_receipt``, is the check used by the coordinator
(before countersigning), the wallet (before trusting a result) and the chain
(before paying): signatures, that the receipt is about this job, model digest
and input, that the output hash matches what was delivered, that the units
add up to the total and fit the time the job actually took.

Pricing unit: one token (prompt tokens + generated tokens; input tokens for
embedding jobs). ``total_price = (prompt_tokens + completion_tokens) * unit_price``
in base units.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import msgspec

from aitbc.protocol import codec
from aitbc.protocol.crypto import KeyPair, SigningKind, is_valid_signature, sha256_hex
from aitbc.protocol.errors import AitbcError
from aitbc.protocol.job import ClientId, JobId, ModelDigest, ModelName
from aitbc.protocol.types import U64, Address, Amount, ChainId, Hash32, SignatureHex, TimestampMs

MAX_TOKENS_PER_SECOND: Final = 20_000
"""Generous ceiling on plausible throughput: more units than this per second of compute is a lie."""
CLOCK_SKEW_MS: Final = 5_000
"""How far a miner's clock may disagree with the coordinator's."""


class ReceiptUnits(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    prompt_tokens: U64
    completion_tokens: U64
    compute_ms: U64


class Receipt(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    chain_id: ChainId
    job_id: JobId
    miner: Address
    client: ClientId
    coordinator: Address
    model: ModelName
    model_digest: ModelDigest
    input_hash: Hash32
    output_hash: Hash32
    units: ReceiptUnits
    unit_price: Amount
    total_price: Amount
    started_at_ms: TimestampMs
    finished_at_ms: TimestampMs
    miner_signature: SignatureHex = ""
    coordinator_signature: SignatureHex = ""


_MINER_UNSIGNED: Final = frozenset({"miner_signature", "coordinator_signature"})
_COORDINATOR_UNSIGNED: Final = frozenset({"coordinator_signature"})


class ReceiptRejection(StrEnum):
    BAD_MINER_SIGNATURE = "bad_miner_signature"
    BAD_COORDINATOR_SIGNATURE = "bad_coordinator_signature"
    WRONG_JOB = "wrong_job"
    WRONG_MINER = "wrong_miner"
    WRONG_CLIENT = "wrong_client"
    WRONG_COORDINATOR = "wrong_coordinator"
    WRONG_CHAIN = "wrong_chain"
    WRONG_MODEL = "wrong_model"
    WRONG_MODEL_DIGEST = "wrong_model_digest"
    INPUT_HASH_MISMATCH = "input_hash_mismatch"
    OUTPUT_HASH_MISMATCH = "output_hash_mismatch"
    PRICE_MISMATCH = "price_mismatch"
    PRICE_ABOVE_MAX = "price_above_max"
    UNITS_INCONSISTENT = "units_inconsistent"
    TIMING_INCONSISTENT = "timing_inconsistent"
    # metering the coordinator checks (aitbc.market.metering)
    UNIT_PRICE_NOT_ASSIGNED = "unit_price_not_assigned"
    COMPLETION_TOKENS_ABOVE_MAX = "completion_tokens_above_max"
    PROMPT_TOKENS_ABOVE_COUNT = "prompt_tokens_above_count"


class InvalidReceipt(AitbcError):
    """A receipt that does not fit its job (HTTP 422); ``rejection`` says which rule."""

    http_status = 422

    def __init__(self, rejection: ReceiptRejection, message: str) -> None:
        super().__init__(message, reason=rejection.value)
        self.rejection = rejection


def miner_signing_bytes(receipt: Receipt) -> bytes:
    return codec.encode(receipt, omit=_MINER_UNSIGNED)


def coordinator_signing_bytes(receipt: Receipt) -> bytes:
    return codec.encode(receipt, omit=_COORDINATOR_UNSIGNED)


def compute_receipt_hash(receipt: Receipt) -> str:
    """The id anchored on chain: hash of the fully signed receipt."""
    return sha256_hex(codec.encode(receipt))


def compute_total_price(units: ReceiptUnits, unit_price: int) -> int:
    return (units.prompt_tokens + units.completion_tokens) * unit_price


def sign_receipt_as_miner(receipt: Receipt, key: KeyPair) -> Receipt:
    signature = key.sign(receipt.chain_id, SigningKind.RECEIPT, miner_signing_bytes(receipt))
    return msgspec.structs.replace(receipt, miner_signature=signature.hex(), coordinator_signature="")


def countersign_receipt(receipt: Receipt, key: KeyPair) -> Receipt:
    signature = key.sign(receipt.chain_id, SigningKind.RECEIPT_COSIGN, coordinator_signing_bytes(receipt))
    return msgspec.structs.replace(receipt, coordinator_signature=signature.hex())


@dataclass(frozen=True, slots=True)
class ReceiptExpectation:
    """What the verifier knows independently of the receipt."""

    chain_id: str
    job_id: str
    miner: str
    client: str
    coordinator: str
    model: str
    model_digest: str
    input_hash: str
    output_hash: str
    max_total_price: int | None = None
    earliest_start_ms: int | None = None
    """When the job was handed to the miner (the coordinator's clock)."""
    latest_finish_ms: int | None = None
    """When the result reached the coordinator."""
    require_coordinator_signature: bool = True


def _check(condition: bool, rejection: ReceiptRejection, message: str) -> None:
    if not condition:
        raise InvalidReceipt(rejection, message)


def verify_receipt(receipt: Receipt, expected: ReceiptExpectation) -> None:
    """Raise ``InvalidReceipt`` (with the first failing rule as reason) unless the receipt is sound."""
    # Verify the receipt is about this job, on this chain, from the assigned miner
    _check(receipt.chain_id == expected.chain_id, ReceiptRejection.WRONG_CHAIN, "receipt is for another chain")
    _check(receipt.job_id == expected.job_id, ReceiptRejection.WRONG_JOB, "receipt is for another job")
    _check(receipt.miner == expected.miner, ReceiptRejection.WRONG_MINER, "receipt is from another miner")
    _check(receipt.client == expected.client, ReceiptRejection.WRONG_CLIENT, "receipt names another client")
    _check(
        receipt.coordinator == expected.coordinator,
        ReceiptRejection.WRONG_COORDINATOR,
        "receipt names another coordinator",
    )
    # Verify the miner's signature
    verify_miner_signature(receipt)
    # Verify it ran the model asked for, on the input asked for, and produced what was delivered
    _check(receipt.model == expected.model, ReceiptRejection.WRONG_MODEL, "receipt names another model")
    _check(
        receipt.model_digest == expected.model_digest,
        ReceiptRejection.WRONG_MODEL_DIGEST,
        f"model digest {receipt.model_digest} is not the one registered ({expected.model_digest})",
    )
    _check(
        receipt.input_hash == expected.input_hash,
        ReceiptRejection.INPUT_HASH_MISMATCH,
        "input hash does not match the job's input",
    )
    _check(
        receipt.output_hash == expected.output_hash,
        ReceiptRejection.OUTPUT_HASH_MISMATCH,
        "output hash does not match the delivered output",
    )
    # Verify the price adds up and the units fit the timing
    _check(
        receipt.total_price == compute_total_price(receipt.units, receipt.unit_price),
        ReceiptRejection.PRICE_MISMATCH,
        "total price is not units x unit price",
    )
    if expected.max_total_price is not None:
        _check(
            receipt.total_price <= expected.max_total_price,
            ReceiptRejection.PRICE_ABOVE_MAX,
            f"total price {receipt.total_price} exceeds the job's max price {expected.max_total_price}",
        )
    verify_receipt_accounting(receipt)
    if expected.earliest_start_ms is not None:
        _check(
            receipt.started_at_ms + CLOCK_SKEW_MS >= expected.earliest_start_ms,
            ReceiptRejection.TIMING_INCONSISTENT,
            "receipt starts before the job was handed out",
        )
    if expected.latest_finish_ms is not None:
        _check(
            receipt.finished_at_ms <= expected.latest_finish_ms + CLOCK_SKEW_MS,
            ReceiptRejection.TIMING_INCONSISTENT,
            "receipt finishes after the result arrived",
        )
    # Verify the coordinator's countersignature
    if expected.require_coordinator_signature:
        verify_coordinator_signature(receipt)


def verify_miner_signature(receipt: Receipt) -> None:
    _check(
        bool(receipt.miner_signature)
        and is_valid_signature(
            receipt.miner,
            receipt.chain_id,
            SigningKind.RECEIPT,
            miner_signing_bytes(receipt),
            bytes.fromhex(receipt.miner_signature),
        ),
        ReceiptRejection.BAD_MINER_SIGNATURE,
        "miner signature does not verify",
    )


def verify_coordinator_signature(receipt: Receipt) -> None:
    """The countersignature is the coordinator's statement that it assigned this job to this miner."""
    _check(
        bool(receipt.coordinator_signature)
        and is_valid_signature(
            receipt.coordinator,
            receipt.chain_id,
            SigningKind.RECEIPT_COSIGN,
            coordinator_signing_bytes(receipt),
            bytes.fromhex(receipt.coordinator_signature),
        ),
        ReceiptRejection.BAD_COORDINATOR_SIGNATURE,
        "coordinator countersignature does not verify",
    )


def verify_receipt_accounting(receipt: Receipt) -> None:
    """Rules anyone can check from the receipt alone: price arithmetic, units against time."""
    _check(
        receipt.total_price == compute_total_price(receipt.units, receipt.unit_price),
        ReceiptRejection.PRICE_MISMATCH,
        "total price is not units x unit price",
    )
    duration = receipt.finished_at_ms - receipt.started_at_ms
    _check(
        receipt.finished_at_ms >= receipt.started_at_ms,
        ReceiptRejection.TIMING_INCONSISTENT,
        "receipt finishes before it starts",
    )
    _check(
        receipt.units.compute_ms <= duration + 1,
        ReceiptRejection.UNITS_INCONSISTENT,
        "compute time exceeds the job's wall time",
    )
    _check(
        receipt.units.completion_tokens * 1000 <= MAX_TOKENS_PER_SECOND * max(receipt.units.compute_ms, 1),
        ReceiptRejection.UNITS_INCONSISTENT,
        "more generated tokens than the compute time allows",
    )
