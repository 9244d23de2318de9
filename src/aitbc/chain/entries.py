"""The state's entries: what each one holds, where it lives in the tree, and how it is proven.

Each entry lives under a 32-byte key ``sha256(namespace || id)`` in one sparse
Merkle tree whose root goes into every block header; its leaf is the sha256 of
the entry's canonical encoding. ``compute_state_items`` turns a block's writes
into tree updates; the ``is_valid_*_proof`` checks are what a light client runs
against a root. The containers that hold entries (``ChainState``,
``StateDelta``) are in ``aitbc.chain.state``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from aitbc.chain.audit_types import EMPTY_AUDITS, AuditState
from aitbc.chain.gov_types import EMPTY_GOVERNANCE, GovernanceState
from aitbc.chain.smt import SmtProof, is_valid_smt_proof
from aitbc.chain.validators import StakingState, is_empty_staking
from aitbc.protocol import codec
from aitbc.protocol.address import decode_address
from aitbc.protocol.crypto import sha256
from aitbc.protocol.job import JobId
from aitbc.protocol.types import U64, Address, Amount, Height, Wire

ACCOUNT_NAMESPACE: Final = b"account\x00"
ESCROW_NAMESPACE: Final = b"escrow\x00"
MULTISIG_NAMESPACE: Final = b"multisig\x00"
DEPOSIT_NAMESPACE: Final = b"deposit\x00"
PAID_NAMESPACE: Final = b"paid\x00"
BOND_NAMESPACE: Final = b"bond\x00"
_NOT_BONDS: Final = frozenset({"bonds"})
STAKING_KEY: Final = sha256(b"staking\x00")
"""The one state entry holding the ``StakingState`` (absent while it is empty)."""
GOVERNANCE_KEY: Final = sha256(b"governance\x00")
AUDITS_KEY: Final = sha256(b"audits\x00")
"""The one state entry holding the ``AuditState`` (miner bonds, audits, disputes; absent while empty)."""
"""The one state entry holding the ``GovernanceState`` (absent while it is empty)."""


class Account(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    balance: Amount = 0
    nonce: U64 = 0
    """Number of txs this account has sent; its next tx must carry exactly this nonce."""


EMPTY_ACCOUNT: Final = Account()


class EscrowState(StrEnum):
    OPEN = "open"
    SETTLED = "settled"
    REFUNDED = "refunded"


class Escrow(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Funds a client locked for one job; the receipt hash is anchored here when it settles."""

    job_id: JobId
    client: Address
    coordinator: Address
    amount: Amount
    deadline_height: Height
    opened_height: Height
    state: Annotated[str, Meta(pattern=r"^(open|settled|refunded)$"), Wire.STR] = EscrowState.OPEN.value
    miner: Annotated[str, Wire.STR] = ""
    paid_to_miner: Amount = 0
    protocol_fee: Amount = 0
    refunded: Amount = 0
    receipt_hash: Annotated[str, Wire.STR] = ""
    closed_height: Height = 0


class MultisigAccount(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The policy of an m-of-n account: ``threshold`` of ``members`` must approve each spend."""

    address: Address
    members: list[Address]
    threshold: U64
    creator: Address
    created_height: Height


class Deposit(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Funds a client keeps with one coordinator and draws per job (``aitbc.chain.deposits``)."""

    id: Annotated[str, Wire.STR]
    owner: Address
    coordinator: Address
    mode: Annotated[str, Meta(pattern=r"^(delegated|signed)$"), Wire.STR]
    balance: Amount
    cap_per_period: Amount
    """Most the deposit pays (totals + protocol fees) per period; 0: no cap (signed mode only)."""
    period_blocks: U64
    opened_height: Height
    period: U64 = 0
    """Index (``height // period_blocks``) of the period ``spent_in_period`` counts."""
    spent_in_period: Amount = 0
    spent_total: Amount = 0
    jobs_paid: U64 = 0
    withdrawal_amount: Amount = 0
    """Asked back by the owner, paid out at ``withdrawal_height`` (0: no withdrawal pending)."""
    withdrawal_height: Height = 0


class PaidJob(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A deposit job the chain paid: remembered (and provable) until ``expires_height``, so it is paid once."""

    job_id: JobId
    deposit_id: Annotated[str, Wire.STR]
    miner: Address
    paid_to_miner: Amount
    protocol_fee: Amount
    receipt_hash: Annotated[str, Wire.STR]
    height: Height
    expires_height: Height


class ChainEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something a block did that people follow (``job_updates`` on the WebSocket)."""

    kind: str
    job_id: str
    client: str
    coordinator: str
    amount: int
    tx_hash: str
    miner: str = ""
    paid_to_miner: int = 0
    protocol_fee: int = 0
    refunded: int = 0
    receipt_hash: str = ""
    reason: str = ""
    """Why a settle-batch entry was refused (kind ``settle_rejected``)."""
    deposit_id: str = ""


def compute_escrow_key(job_id: str) -> bytes:
    return sha256(ESCROW_NAMESPACE + job_id.encode("utf-8"))


def compute_account_key(address: str) -> bytes:
    return sha256(ACCOUNT_NAMESPACE + decode_address(address))


def compute_account_value_hash(account: Account) -> bytes:
    return sha256(codec.encode(account))


def compute_escrow_value_hash(escrow: Escrow) -> bytes:
    return sha256(codec.encode(escrow))


def compute_multisig_key(address: str) -> bytes:
    return sha256(MULTISIG_NAMESPACE + decode_address(address))


def compute_multisig_value_hash(multisig: MultisigAccount) -> bytes:
    return sha256(codec.encode(multisig))


def compute_staking_value_hash(staking: StakingState) -> bytes | None:
    """Everything of the staking state but the bonds, which are leaves of their own (``compute_bond_key``)."""
    if is_empty_staking(msgspec.structs.replace(staking, bonds=[])):
        return None
    return sha256(codec.encode(staking, omit=_NOT_BONDS))


def compute_bond_key(validator: str, delegator: str) -> bytes:
    return sha256(BOND_NAMESPACE + decode_address(validator) + decode_address(delegator))


def compute_bond_value_hash(amount: int) -> bytes | None:
    return None if amount == 0 else sha256(amount.to_bytes(8, "big"))


def compute_governance_value_hash(governance: GovernanceState) -> bytes | None:
    return None if governance == EMPTY_GOVERNANCE else sha256(codec.encode(governance))


def compute_deposit_key(deposit_id: str) -> bytes:
    return sha256(DEPOSIT_NAMESPACE + deposit_id.encode("utf-8"))


def compute_paid_key(job_id: str) -> bytes:
    return sha256(PAID_NAMESPACE + job_id.encode("utf-8"))


def compute_deposit_value_hash(deposit: Deposit) -> bytes:
    return sha256(codec.encode(deposit))


def compute_paid_value_hash(paid: PaidJob | None) -> bytes | None:
    """None (the key leaves the tree) once a paid record is forgotten at its expiry."""
    return None if paid is None else sha256(codec.encode(paid))


def compute_audits_value_hash(audits: AuditState) -> bytes | None:
    return None if audits == EMPTY_AUDITS else sha256(codec.encode(audits))


def compute_state_items(
    accounts: Mapping[str, Account],
    escrows: Mapping[str, Escrow],
    multisigs: Mapping[str, MultisigAccount] | None = None,
    staking: StakingState | None = None,
    deposits: Mapping[str, Deposit] | None = None,
    paid: Mapping[str, PaidJob | None] | None = None,
    governance: GovernanceState | None = None,
    bonds: Mapping[tuple[str, str], int] | None = None,
    audits: AuditState | None = None,
) -> dict[bytes, bytes | None]:
    items: dict[bytes, bytes | None] = {
        compute_account_key(a): compute_account_value_hash(acc) for a, acc in accounts.items()
    }
    items.update({compute_escrow_key(j): compute_escrow_value_hash(e) for j, e in escrows.items()})
    if multisigs:
        items.update({compute_multisig_key(a): compute_multisig_value_hash(m) for a, m in multisigs.items()})
    if staking is not None:
        items[STAKING_KEY] = compute_staking_value_hash(staking)
    if bonds:
        items.update({compute_bond_key(v, d): compute_bond_value_hash(a) for (v, d), a in bonds.items()})
    if governance is not None:
        items[GOVERNANCE_KEY] = compute_governance_value_hash(governance)
    if audits is not None:
        items[AUDITS_KEY] = compute_audits_value_hash(audits)
    if deposits:
        items.update({compute_deposit_key(d): compute_deposit_value_hash(v) for d, v in deposits.items()})
    if paid:
        items.update({compute_paid_key(j): compute_paid_value_hash(p) for j, p in paid.items()})
    return items


def is_valid_escrow_proof(state_root: str, job_id: str, escrow: Escrow | None, proof: SmtProof) -> bool:
    """A light client's check of an escrow (and its anchored receipt hash) against a state root."""
    value_hash = None if escrow is None else compute_escrow_value_hash(escrow)
    return is_valid_smt_proof(bytes.fromhex(state_root), compute_escrow_key(job_id), value_hash, proof)


def is_valid_governance_proof(state_root: str, governance: GovernanceState, proof: SmtProof) -> bool:
    """A light client's check of the governance state (proposals, votes, tallies, live params) against a root."""
    value_hash = compute_governance_value_hash(governance)
    return is_valid_smt_proof(bytes.fromhex(state_root), GOVERNANCE_KEY, value_hash, proof)


def is_valid_audits_proof(state_root: str, audits: AuditState, proof: SmtProof) -> bool:
    """A light client's check of the audit state (miner bonds, audits, disputes) against a root."""
    return is_valid_smt_proof(bytes.fromhex(state_root), AUDITS_KEY, compute_audits_value_hash(audits), proof)


def is_valid_account_proof(state_root: str, address: str, account: Account | None, proof: SmtProof) -> bool:
    """A light client's check: does ``address`` hold ``account`` (or nothing) under this state root?"""
    value_hash = None if account is None else compute_account_value_hash(account)
    return is_valid_smt_proof(bytes.fromhex(state_root), compute_account_key(address), value_hash, proof)


def is_valid_deposit_proof(state_root: str, deposit_id: str, deposit: Deposit | None, proof: SmtProof) -> bool:
    """A light client's check of a deposit's balance and terms against a state root."""
    value_hash = None if deposit is None else compute_deposit_value_hash(deposit)
    return is_valid_smt_proof(bytes.fromhex(state_root), compute_deposit_key(deposit_id), value_hash, proof)


def is_valid_paid_proof(state_root: str, job_id: str, record: PaidJob | None, proof: SmtProof) -> bool:
    """A light client's check that a deposit job was paid (and its receipt hash anchored) under a root."""
    return is_valid_smt_proof(
        bytes.fromhex(state_root), compute_paid_key(job_id), compute_paid_value_hash(record), proof
    )
