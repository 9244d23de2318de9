"""Transactions: wire types, hashing, signing and signature checks.

Every tx carries ``chain_id``, ``sender``, ``nonce`` and ``fee`` so that replay
and double spends are refused by the state transition itself. The JSON form
has a ``type`` tag; the canonical bytes (``aitbc.protocol.codec``) are what is
hashed (tx hash) and, without the signature, what the sender signs under the
``tx`` signature domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

import msgspec

from aitbc.protocol import codec
from aitbc.protocol.address import is_valid_address
from aitbc.protocol.crypto import (
    KeyPair,
    SignatureCheck,
    SigningKind,
    is_valid_signature_check,
    sha256_hex,
    signature_check,
    signature_mismatch,
)
from aitbc.protocol.errors import EncodingError, InvalidSignature, InvalidTx, TxRejection
from aitbc.protocol.job import JobId
from aitbc.protocol.receipt import Receipt
from aitbc.protocol.types import U64, Address, Amount, ChainId, Height, Memo, SignatureHex
from aitbc.protocol.vote import DuplicateVoteEvidence

_UNSIGNED: Final = frozenset({"signature"})


class TxBase(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    chain_id: ChainId
    sender: Address
    nonce: U64
    fee: Amount

    def __post_init__(self) -> None:
        # msgspec checks the alphabet; the bech32m checksum is checked here, on every decode.
        for name in self.__address_fields__:
            if not is_valid_address(getattr(self, name)):
                raise ValueError(f"`{name}` is not a valid address (bad checksum or length)")
        # A str holding a lone surrogate (possible from a decoded JSON object) has no UTF-8 bytes to sign.
        for name in self.__text_fields__:
            try:
                getattr(self, name).encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"`{name}` is not valid unicode (lone surrogate)") from None

    __address_fields__: ClassVar[tuple[str, ...]] = ("sender",)
    __text_fields__: ClassVar[tuple[str, ...]] = ()


class Transfer(TxBase, frozen=True, kw_only=True, tag="transfer"):
    """Move ``amount`` base units from ``sender`` to ``recipient``; ``fee`` goes to the proposer."""

    recipient: Address
    amount: Amount
    memo: Memo = ""
    signature: SignatureHex = ""

    __address_fields__: ClassVar[tuple[str, ...]] = ("sender", "recipient")
    __text_fields__: ClassVar[tuple[str, ...]] = ("memo",)


class OpenEscrow(TxBase, frozen=True, kw_only=True, tag="open_escrow"):
    """Lock ``amount`` (the job's max price) for ``job_id``, to be settled by ``coordinator``.

    The escrow may be settled up to and including ``deadline_height``; after it the
    chain refunds the client by itself."""

    job_id: JobId
    coordinator: Address
    amount: Amount
    deadline_height: Height
    signature: SignatureHex = ""

    __address_fields__: ClassVar[tuple[str, ...]] = ("sender", "coordinator")


class SettleJob(TxBase, frozen=True, kw_only=True, tag="settle_job"):
    """Pay the miner by a receipt the miner signed and the coordinator countersigned."""

    receipt: Receipt
    signature: SignatureHex = ""


class RefundEscrow(TxBase, frozen=True, kw_only=True, tag="refund_escrow"):
    """Return an escrow to its client: anyone after the deadline, its coordinator at any time
    (a failed, cancelled or expired job)."""

    job_id: JobId
    signature: SignatureHex = ""


class Stake(TxBase, frozen=True, kw_only=True, tag="stake"):
    """Bond ``amount`` of the sender's own tokens to itself: the sender stands as a validator."""

    amount: Amount
    signature: SignatureHex = ""


class Delegate(TxBase, frozen=True, kw_only=True, tag="delegate"):
    """Bond ``amount`` to ``validator`` (an authority or a staked candidate); rewards follow the bond."""

    validator: Address
    amount: Amount
    signature: SignatureHex = ""

    __address_fields__: ClassVar[tuple[str, ...]] = ("sender", "validator")


class Unstake(TxBase, frozen=True, kw_only=True, tag="unstake"):
    """Unbond ``amount`` of the sender's bond with ``validator``; released after the unbonding period."""

    validator: Address
    amount: Amount
    signature: SignatureHex = ""

    __address_fields__: ClassVar[tuple[str, ...]] = ("sender", "validator")


class ReportEvidence(TxBase, frozen=True, kw_only=True, tag="report_evidence"):
    """Submit proof that a validator signed two conflicting votes; anyone may, the chain slashes and jails."""

    evidence: DuplicateVoteEvidence
    signature: SignatureHex = ""


Tx = Transfer | OpenEscrow | SettleJob | RefundEscrow | Stake | Delegate | Unstake | ReportEvidence
"""Union of every tx kind."""

STAKING_TX_TYPES: Final[tuple[type[TxBase], ...]] = (Stake, Delegate, Unstake, ReportEvidence)
TX_TYPES: Final[tuple[type[TxBase], ...]] = (Transfer, OpenEscrow, SettleJob, RefundEscrow, *STAKING_TX_TYPES)

for _tx_type in TX_TYPES:
    assert _tx_type.__struct_fields__[-1] == "signature", f"{_tx_type.__name__}: signature must be the last field"


def tx_signing_bytes(tx: TxBase) -> bytes:
    return codec.encode(tx, omit=_UNSIGNED)


def tx_bytes(tx: TxBase) -> bytes:
    return codec.encode(tx)


def tx_hash(tx: TxBase) -> str:
    return sha256_hex(tx_bytes(tx))


def sign_tx(tx: Tx, key: KeyPair) -> Tx:
    if key.address != tx.sender:
        raise ValueError("key does not belong to the tx sender")
    signature = key.sign(tx.chain_id, SigningKind.TX, tx_signing_bytes(tx))
    return msgspec.structs.replace(tx, signature=signature.hex())


def tx_to_json_obj(tx: TxBase) -> dict[str, Any]:
    return msgspec.to_builtins(tx)  # type: ignore[no-any-return]


def tx_from_json_obj(obj: Any) -> Tx:
    """Strictly parse a JSON object (already decoded) into a tx; unknown fields are refused."""
    if not isinstance(obj, dict):
        raise InvalidTx(TxRejection.MALFORMED, "a tx must be a JSON object")
    tag = obj.get("type")
    if not isinstance(tag, str):
        raise InvalidTx(TxRejection.MALFORMED, "tx has no 'type' string field")
    if tag not in {codec.struct_tag(t) for t in TX_TYPES}:
        raise InvalidTx(TxRejection.UNKNOWN_TX_TYPE, f"unknown tx type {tag!r}")
    try:
        tx: Tx = msgspec.convert(obj, Tx)
    except msgspec.ValidationError as exc:
        raise InvalidTx(TxRejection.MALFORMED, f"invalid tx: {exc}") from None
    return tx


def tx_from_json(raw: bytes | str) -> Tx:
    """Parse JSON text with exactly the rules (and rejection reasons) of ``tx_from_json_obj``."""
    try:
        obj = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidTx(TxRejection.MALFORMED, f"tx is not valid JSON: {exc}") from None
    return tx_from_json_obj(obj)


def tx_from_bytes(raw: bytes) -> Tx:
    try:
        tx: Tx = codec.decode(Tx, raw)
    except EncodingError as exc:
        raise InvalidTx(TxRejection.MALFORMED, f"invalid tx bytes: {exc.message}") from None
    return tx


@dataclass(frozen=True, slots=True)
class VerifiedTx:
    """A tx whose signature has been checked; only these enter a mempool or a block we build."""

    tx: Tx
    hash: str
    size: int


@dataclass(frozen=True, slots=True)
class TxSignatureCheck:
    """A tx ready for its Ed25519 check: ``verified`` is what it becomes if ``check`` holds.

    Splitting ``verify_tx`` in two lets a node run the checks of many txs in bulk (in worker
    processes) while the cheap, per-tx part runs where the txs arrive."""

    verified: VerifiedTx
    check: SignatureCheck


def prepare_tx_check(tx: Tx) -> TxSignatureCheck:
    """Encode and hash the tx and build its signature check; raise ``InvalidTx`` if it cannot verify."""
    if not tx.signature:
        raise InvalidTx(TxRejection.BAD_SIGNATURE, "tx is not signed")
    signing_bytes = tx_signing_bytes(tx)
    signature = bytes.fromhex(tx.signature)
    try:
        check = signature_check(tx.sender, tx.chain_id, SigningKind.TX, signing_bytes, signature)
    except InvalidSignature as exc:
        raise InvalidTx(TxRejection.BAD_SIGNATURE, exc.message) from None
    # The signature is every tx kind's last field, so the full encoding is the signed part plus it.
    encoded = signing_bytes + len(signature).to_bytes(4, "big") + signature
    return TxSignatureCheck(VerifiedTx(tx=tx, hash=sha256_hex(encoded), size=len(encoded)), check)


def complete_tx_check(prepared: TxSignatureCheck, signature_valid: bool) -> VerifiedTx:
    """The verified tx, given the outcome of its signature check; ``InvalidTx`` if it failed."""
    if not signature_valid:
        tx = prepared.verified.tx
        raise InvalidTx(TxRejection.BAD_SIGNATURE, signature_mismatch(tx.sender, tx.chain_id, SigningKind.TX).message)
    return prepared.verified


def verify_tx(tx: Tx) -> VerifiedTx:
    """Check the sender's signature over the tx; the result carries hash and encoded size."""
    prepared = prepare_tx_check(tx)
    return complete_tx_check(prepared, is_valid_signature_check(prepared.check))
