"""Deposits on the wire: the client's job request (signed mode) and one entry of a settle batch.

A deposit is funded once on chain and drawn per job. Two modes, fixed when it is opened:

- ``delegated``: the deposit's coordinator settles jobs against it on its own word (the tx
  signature), within a spending cap per period the client chose (OpenAI-style: an API key);
- ``signed``: every settled job carries the client's signature over its ``JobRequest`` (job id,
  deposit, model, input hash, max price, expiry), so nobody can spend the deposit on work the
  client did not ask for.

A ``SettlementEntry`` is one job of a ``settle_batch`` tx: the receipt the miner signed and the
deposit it draws on. A deposit job's id carries its expiry height (``dj-<height>-<random>``,
``make_deposit_job_id``), so every receipt of it carries the expiry under the miner's signature
(and, in signed mode, under the client's): the last height the job may be settled at. The chain
remembers a paid job id until then, so the paid ids it keeps are those settled in the last
``max_receipt_blocks`` blocks, and a job it has forgotten can no longer be settled. The expiry
lives in the id rather than in a new receipt field so that every receipt and settle tx keeps its
canonical bytes.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from aitbc.protocol import codec
from aitbc.protocol.address import decode_address
from aitbc.protocol.crypto import (
    KeyPair,
    SignatureCheck,
    SigningKind,
    is_valid_signature_check,
    sha256,
    signature_check,
)
from aitbc.protocol.errors import AitbcError
from aitbc.protocol.job import JobId, ModelName
from aitbc.protocol.receipt import Receipt, miner_signing_bytes
from aitbc.protocol.types import Amount, ChainId, Hash32, SignatureHex, Wire

DEPOSIT_MODES: Final = ("delegated", "signed")
DepositMode = Annotated[str, Meta(pattern=r"^(delegated|signed)$"), Wire.STR]
DepositId = Annotated[str, Meta(pattern=r"^dep_[0-9a-f]{40}$"), Wire.STR]
"""``dep_`` + 40 hex digits, derived from the opener's address and the nonce of its ``open_deposit``."""

MAX_BATCH_ENTRIES: Final = 2_000
"""Most jobs one ``settle_batch`` may carry (the chain's own limit, ``max_batch_entries``, may be lower)."""
_DEPOSIT_MAGIC: Final = b"AITBC-DEPOSIT-v1\x00"


_DEPOSIT_JOB_ID: Final = re.compile(r"^dj-([0-9]{1,18})-[0-9a-z]{8,40}$")


def make_deposit_job_id(expires_height: int, entropy: bytes) -> str:
    """A deposit job's id: its expiry height and ``entropy`` (random bytes, 4..20) in hex."""
    if not 4 <= len(entropy) <= 20:
        raise ValueError("entropy must be 4..20 bytes")
    return f"dj-{expires_height}-{entropy.hex()}"


def get_job_expiry(job_id: str) -> int | None:
    """The expiry height a deposit job id carries; None for any other job id (per-job escrow ids)."""
    match = _DEPOSIT_JOB_ID.match(job_id)
    return None if match is None else int(match.group(1))


def compute_deposit_id(owner: str, nonce: int) -> str:
    """The id of the deposit ``owner`` opens with its tx of ``nonce`` (unique: a nonce is used once)."""
    digest = sha256(_DEPOSIT_MAGIC + decode_address(owner) + nonce.to_bytes(8, "big"))
    return "dep_" + digest.hex()[:40]


class JobRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a client in signed mode signs before its job runs; the chain rebuilds it from the entry.
    (The job id carries the expiry, so the client agrees to that too.)"""

    chain_id: ChainId
    job_id: JobId
    deposit_id: DepositId
    model: ModelName
    input_hash: Hash32
    max_price: Amount


def job_request_signing_bytes(request: JobRequest) -> bytes:
    return codec.encode(request)


def sign_job_request(request: JobRequest, key: KeyPair) -> str:
    """The client's signature (hex) over ``request`` under the ``job-request`` domain."""
    return key.sign(request.chain_id, SigningKind.JOB_REQUEST, job_request_signing_bytes(request)).hex()


class SettlementEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One job of a ``settle_batch``: pay ``receipt.miner`` from ``deposit_id``.

    ``max_price`` and ``client_signature`` are the signed mode's job request; a delegated
    deposit needs neither (zero and empty)."""

    deposit_id: DepositId
    receipt: Receipt
    max_price: Amount = 0
    client_signature: SignatureHex = ""


def compute_job_request(entry: SettlementEntry) -> JobRequest:
    """The job request a signed-mode client must have signed for this entry to settle."""
    receipt = entry.receipt
    return JobRequest(
        chain_id=receipt.chain_id,
        job_id=receipt.job_id,
        deposit_id=entry.deposit_id,
        model=receipt.model,
        input_hash=receipt.input_hash,
        max_price=entry.max_price,
    )


def miner_signature_check(receipt: Receipt) -> SignatureCheck | None:
    """The receipt's miner signature as a check for the bulk verifier; None if it cannot be one."""
    if not receipt.miner_signature:
        return None
    try:
        return signature_check(
            receipt.miner,
            receipt.chain_id,
            SigningKind.RECEIPT,
            miner_signing_bytes(receipt),
            bytes.fromhex(receipt.miner_signature),
        )
    except AitbcError:  # InvalidSignature (length) / InvalidAddress
        return None


def job_request_signature_check(request: JobRequest, owner: str, signature: str) -> SignatureCheck | None:
    """``owner``'s signature (hex) over ``request`` as a check; None if it cannot be one (empty, bad length)."""
    if not signature:
        return None
    try:
        return signature_check(
            owner,
            request.chain_id,
            SigningKind.JOB_REQUEST,
            job_request_signing_bytes(request),
            bytes.fromhex(signature),
        )
    except (AitbcError, ValueError):  # InvalidSignature (length) / InvalidAddress / not hex
        return None


def is_valid_job_request_signature(request: JobRequest, owner: str, signature: str) -> bool:
    """Whether ``signature`` is ``owner``'s over ``request`` (what a coordinator checks before it accepts a
    signed-mode job, so that the chain will pay it)."""
    check = job_request_signature_check(request, owner, signature)
    return check is not None and is_valid_signature_check(check)


def client_signature_check(entry: SettlementEntry, owner: str) -> SignatureCheck | None:
    """The signed-mode client signature of an entry as a check; None if it carries none (or a bad one)."""
    return job_request_signature_check(compute_job_request(entry), owner, entry.client_signature)
