"""Transactions: wire types, hashing, signing and signature checks.

Every tx carries ``chain_id``, ``sender``, ``nonce`` and ``fee`` so that replay
and double spends are refused by the state transition itself. The JSON form
has a ``type`` tag; the canonical bytes (``aitbc.protocol.codec``) are what is
hashed (tx hash) and, without the signature, what the sender signs under the
``tx`` signature domain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final

import msgspec
from msgspec import Meta

from aitbc.protocol import codec
from aitbc.protocol.address import decode_address, encode_address, is_valid_address
from aitbc.protocol.crypto import (
    KeyPair,
    SignatureCheck,
    SigningKind,
    is_valid_signature_check,
    sha256,
    sha256_hex,
    signature_check,
    signature_mismatch,
)
from aitbc.protocol.deposit import MAX_BATCH_ENTRIES, DepositId, DepositMode, SettlementEntry
from aitbc.protocol.errors import EncodingError, InvalidSignature, InvalidTx, TxRejection
from aitbc.protocol.job import JobId
from aitbc.protocol.receipt import Receipt

# tx kinds defined beside TxBase, re-exported: every tx kind is importable from here
from aitbc.protocol.tx_base import TxBase as TxBase
from aitbc.protocol.tx_modules import AUDIT_TX_TYPES as AUDIT_TX_TYPES
from aitbc.protocol.tx_modules import GOVERNANCE_TX_TYPES as GOVERNANCE_TX_TYPES
from aitbc.protocol.tx_modules import MAX_PARAM_CHANGES as MAX_PARAM_CHANGES
from aitbc.protocol.tx_modules import PROPOSAL_KINDS as PROPOSAL_KINDS
from aitbc.protocol.tx_modules import VOTE_OPTIONS as VOTE_OPTIONS
from aitbc.protocol.tx_modules import BondMiner as BondMiner
from aitbc.protocol.tx_modules import DepositProposal as DepositProposal
from aitbc.protocol.tx_modules import GovernanceVote as GovernanceVote
from aitbc.protocol.tx_modules import ParamChange as ParamChange
from aitbc.protocol.tx_modules import SubmitAudit as SubmitAudit
from aitbc.protocol.tx_modules import SubmitProposal as SubmitProposal
from aitbc.protocol.tx_modules import UnbondMiner as UnbondMiner
from aitbc.protocol.tx_training import TRAINING_AUDIT_TX_TYPES as TRAINING_AUDIT_TX_TYPES
from aitbc.protocol.tx_training import AnswerTrainingAudit as AnswerTrainingAudit
from aitbc.protocol.tx_training import RevealTrainingStep as RevealTrainingStep
from aitbc.protocol.tx_training import SubmitTrainingAudit as SubmitTrainingAudit
from aitbc.protocol.types import U64, Address, Amount, Height, Memo, SignatureHex, Wire
from aitbc.protocol.vote import DuplicateVoteEvidence
from aitbc.protocol.zk import ZkReceiptProof

_UNSIGNED: Final = frozenset({"signature", "approvals"})
MAX_MULTISIG_MEMBERS: Final = 16
_MULTISIG_MAGIC: Final = b"AITBC-MULTISIG-v1\x00"


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


class SettleJobZk(TxBase, frozen=True, kw_only=True, tag="settle_job_zk"):
    """``settle_job`` with a Groth16 receipt proof the chain verifies (docs/zk.md).

    Its own tx kind rather than an optional field on ``SettleJob``, so every existing settle_job
    keeps its canonical bytes (and hash, and signature)."""

    receipt: Receipt
    proof: ZkReceiptProof
    signature: SignatureHex = ""


class RefundEscrow(TxBase, frozen=True, kw_only=True, tag="refund_escrow"):
    """Return an escrow to its client: anyone after the deadline, its coordinator at any time
    (a failed, cancelled or expired job)."""

    job_id: JobId
    signature: SignatureHex = ""


class CreateMultisig(TxBase, frozen=True, kw_only=True, tag="create_multisig"):
    """Register an m-of-n account: ``threshold`` of ``members`` must approve each spend from it.

    Its address is ``compute_multisig_address(sender, nonce)``: a hash, not a public key, so no
    single key can ever sign for it; only ``MultisigTransfer`` moves its funds."""

    members: Annotated[list[Address], Meta(min_length=1, max_length=MAX_MULTISIG_MEMBERS)]
    threshold: U64
    signature: SignatureHex = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        for member in self.members:
            if not is_valid_address(member):
                raise ValueError("`members` holds an invalid address (bad checksum or length)")


class MultisigApproval(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One member's signature over a multisig spend (its signing bytes, under the ``tx`` domain)."""

    signer: Address
    signature: Annotated[str, Meta(pattern=r"^[0-9a-f]{128}$"), Wire.HEX]

    def __post_init__(self) -> None:
        if not is_valid_address(self.signer):
            raise ValueError("`signer` is not a valid address (bad checksum or length)")


class MultisigTransfer(TxBase, frozen=True, kw_only=True, tag="multisig_transfer"):
    """Move funds out of the multisig account ``sender``; ``approvals`` carry the members' signatures.

    Members sign the tx without its approvals (so they can sign in any order, apart, and the
    approvals be combined); ``signature`` stays empty: the account has no key of its own."""

    recipient: Address
    amount: Amount
    memo: Memo = ""
    approvals: Annotated[list[MultisigApproval], Meta(max_length=MAX_MULTISIG_MEMBERS)] = []
    signature: SignatureHex = ""

    __address_fields__: ClassVar[tuple[str, ...]] = ("sender", "recipient")
    __text_fields__: ClassVar[tuple[str, ...]] = ("memo",)


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


class OpenDeposit(TxBase, frozen=True, kw_only=True, tag="open_deposit"):
    """Fund a deposit that ``coordinator`` may settle jobs against (``aitbc.protocol.deposit``).

    ``cap_per_period``: the most the deposit may pay (receipt totals + protocol fees) in any
    period of ``period_blocks`` blocks; a delegated deposit must have one, 0 means no cap (signed mode
    only). Its id is ``compute_deposit_id(sender, nonce)``."""

    coordinator: Address
    mode: DepositMode
    amount: Amount
    cap_per_period: Amount = 0
    period_blocks: U64 = 0
    signature: SignatureHex = ""

    __address_fields__: ClassVar[tuple[str, ...]] = ("sender", "coordinator")


class TopUpDeposit(TxBase, frozen=True, kw_only=True, tag="top_up_deposit"):
    """Add ``amount`` to a deposit; anyone may (the funds belong to the deposit's owner from then on)."""

    deposit_id: DepositId
    amount: Amount
    signature: SignatureHex = ""


class WithdrawDeposit(TxBase, frozen=True, kw_only=True, tag="withdraw_deposit"):
    """The owner asks for ``amount`` back; the chain pays it out ``deposit_withdrawal_delay`` blocks later
    (what is left of it then), so jobs already done can still be settled meanwhile."""

    deposit_id: DepositId
    amount: Amount
    signature: SignatureHex = ""


class SettleBatch(TxBase, frozen=True, kw_only=True, tag="settle_batch"):
    """A coordinator settles many deposit jobs at once; the chain applies each valid entry and reports
    every rejected one (with its reason) in the tx's events."""

    entries: Annotated[list[SettlementEntry], Meta(min_length=1, max_length=MAX_BATCH_ENTRIES)]
    signature: SignatureHex = ""


Tx = (
    Transfer
    | OpenEscrow
    | SettleJob
    | RefundEscrow
    | CreateMultisig
    | MultisigTransfer
    | SettleJobZk
    | Stake
    | Delegate
    | Unstake
    | ReportEvidence
    | OpenDeposit
    | TopUpDeposit
    | WithdrawDeposit
    | SettleBatch
    | SubmitProposal
    | DepositProposal
    | GovernanceVote
    | BondMiner
    | UnbondMiner
    | SubmitAudit
    | SubmitTrainingAudit
    | AnswerTrainingAudit
    | RevealTrainingStep
)
"""Union of every tx kind."""

STAKING_TX_TYPES: Final[tuple[type[TxBase], ...]] = (Stake, Delegate, Unstake, ReportEvidence)
DEPOSIT_TX_TYPES: Final[tuple[type[TxBase], ...]] = (OpenDeposit, TopUpDeposit, WithdrawDeposit, SettleBatch)
TX_TYPES: Final[tuple[type[TxBase], ...]] = (
    Transfer,
    OpenEscrow,
    SettleJob,
    RefundEscrow,
    CreateMultisig,
    MultisigTransfer,
    SettleJobZk,
    *STAKING_TX_TYPES,
    *DEPOSIT_TX_TYPES,
    *GOVERNANCE_TX_TYPES,
    *AUDIT_TX_TYPES,
    *TRAINING_AUDIT_TX_TYPES,
)

for _tx_type in TX_TYPES:
    assert _tx_type.__struct_fields__[-1] == "signature", f"{_tx_type.__name__}: signature must be the last field"


def tx_signing_bytes(tx: TxBase) -> bytes:
    return codec.encode(tx, omit=_UNSIGNED)


def tx_bytes(tx: TxBase) -> bytes:
    return codec.encode(tx)


def tx_hash(tx: TxBase) -> str:
    return sha256_hex(tx_bytes(tx))


def compute_multisig_address(creator: str, nonce: int) -> str:
    """The address of the multisig account ``creator`` registers with its tx of ``nonce``."""
    return encode_address(sha256(_MULTISIG_MAGIC + decode_address(creator) + nonce.to_bytes(8, "big")))


def sign_multisig_approval(tx: MultisigTransfer, key: KeyPair) -> MultisigApproval:
    """``key``'s approval of a multisig spend."""
    signature = key.sign(tx.chain_id, SigningKind.TX, tx_signing_bytes(tx))
    return MultisigApproval(signer=key.address, signature=signature.hex())


def add_multisig_approvals(tx: MultisigTransfer, approvals: Iterable[MultisigApproval]) -> MultisigTransfer:
    """The tx with ``approvals`` merged in: one per signer (the newest wins), sorted by signer."""
    by_signer = {a.signer: a for a in tx.approvals}
    by_signer.update({a.signer: a for a in approvals})
    return msgspec.structs.replace(tx, approvals=[by_signer[s] for s in sorted(by_signer)])


def sign_tx(tx: Tx, key: KeyPair) -> Tx:
    if isinstance(tx, MultisigTransfer):
        raise ValueError("a multisig spend is approved by its members (sign_multisig_approval), not signed")
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
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec reports bad UTF-8 as UnicodeDecodeError
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
    extra: tuple[SignatureCheck, ...] = ()
    """Further checks that must all hold too (the other approvals of a multisig spend)."""


def get_tx_checks(prepared: TxSignatureCheck) -> tuple[SignatureCheck, ...]:
    return (prepared.check, *prepared.extra)


def _prepare_multisig_check(tx: MultisigTransfer) -> TxSignatureCheck:
    """One check per approval; which signers are members, and how many suffice, is a state rule."""
    if tx.signature:
        raise InvalidTx(TxRejection.MALFORMED, "a multisig spend carries approvals, not a signature")
    if not tx.approvals:
        raise InvalidTx(TxRejection.BAD_SIGNATURE, "multisig spend has no approvals")
    signers = [a.signer for a in tx.approvals]
    if len(set(signers)) != len(signers):
        raise InvalidTx(TxRejection.MALFORMED, "a member approves the multisig spend twice")
    if signers != sorted(signers):
        # one canonical order (``add_multisig_approvals``), so the same approvals always make the same tx hash
        raise InvalidTx(TxRejection.MALFORMED, "multisig approvals must be sorted by signer")
    signing_bytes = tx_signing_bytes(tx)
    checks = tuple(
        signature_check(a.signer, tx.chain_id, SigningKind.TX, signing_bytes, bytes.fromhex(a.signature))
        for a in tx.approvals
    )
    encoded = tx_bytes(tx)
    return TxSignatureCheck(VerifiedTx(tx=tx, hash=sha256_hex(encoded), size=len(encoded)), checks[0], checks[1:])


def prepare_tx_check(tx: Tx) -> TxSignatureCheck:
    """Encode and hash the tx and build its signature check; raise ``InvalidTx`` if it cannot verify."""
    if isinstance(tx, MultisigTransfer):
        return _prepare_multisig_check(tx)
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
        if isinstance(tx, MultisigTransfer):
            raise InvalidTx(TxRejection.BAD_SIGNATURE, "an approval of the multisig spend does not verify")
        raise InvalidTx(TxRejection.BAD_SIGNATURE, signature_mismatch(tx.sender, tx.chain_id, SigningKind.TX).message)
    return prepared.verified


def verify_tx(tx: Tx) -> VerifiedTx:
    """Check the sender's signature over the tx; the result carries hash and encoded size."""
    prepared = prepare_tx_check(tx)
    return complete_tx_check(prepared, all(is_valid_signature_check(c) for c in get_tx_checks(prepared)))
