"""Account state: the committed state, a working overlay for one block, and the state root.

Each state entry lives under a 32-byte key ``sha256(namespace || id)`` in one
sparse Merkle tree whose root goes into every block header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Final, Protocol

import msgspec
from msgspec import Meta

from aitbc.chain.bonds import BondIndex, BondOverlay, BondReader
from aitbc.chain.gov_types import EMPTY_GOVERNANCE, GovernanceState
from aitbc.chain.smt import SmtProof, SparseMerkleTree, is_valid_smt_proof
from aitbc.chain.validators import EMPTY_STAKING, StakingPlan, StakingState, get_locked, is_empty_staking
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


def compute_state_items(
    accounts: Mapping[str, Account],
    escrows: Mapping[str, Escrow],
    multisigs: Mapping[str, MultisigAccount] | None = None,
    staking: StakingState | None = None,
    deposits: Mapping[str, Deposit] | None = None,
    paid: Mapping[str, PaidJob | None] | None = None,
    governance: GovernanceState | None = None,
    bonds: Mapping[tuple[str, str], int] | None = None,
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
    if deposits:
        items.update({compute_deposit_key(d): compute_deposit_value_hash(v) for d, v in deposits.items()})
    if paid:
        items.update({compute_paid_key(j): compute_paid_value_hash(p) for j, p in paid.items()})
    return items


class ChainState:
    """The committed state at the head: accounts, escrows, and the Merkle tree over both."""

    __slots__ = (
        "accounts",
        "authorities",
        "bonds",
        "deposits",
        "due",
        "escrows",
        "governance",
        "multisigs",
        "paid",
        "paid_due",
        "staking",
        "tree",
        "withdrawals_due",
    )

    def __init__(
        self,
        accounts: dict[str, Account] | None = None,
        tree: SparseMerkleTree | None = None,
        escrows: dict[str, Escrow] | None = None,
        multisigs: dict[str, MultisigAccount] | None = None,
        staking: StakingState = EMPTY_STAKING,
        authorities: tuple[str, ...] = (),
        deposits: dict[str, Deposit] | None = None,
        paid: dict[str, PaidJob] | None = None,
        governance: GovernanceState = EMPTY_GOVERNANCE,
    ) -> None:
        self.staking = staking
        self.bonds = BondIndex(staking.bonds)
        """Every bond with running totals (an index of ``staking.bonds``, kept in step at each commit)."""
        self.governance = governance
        self.authorities = authorities
        """The genesis authorities (PoA part of the validator set; not in the root, genesis fixes them)."""
        self.accounts: dict[str, Account] = accounts if accounts is not None else {}
        self.escrows: dict[str, Escrow] = escrows if escrows is not None else {}
        self.multisigs: dict[str, MultisigAccount] = multisigs if multisigs is not None else {}
        self.tree = tree if tree is not None else SparseMerkleTree()
        self.due: dict[int, set[str]] = {}
        """Open escrows by deadline height (an index, derived from ``escrows``; not in the root)."""
        for escrow in self.escrows.values():
            self._index(escrow)
        self.deposits: dict[str, Deposit] = deposits if deposits is not None else {}
        self.paid: dict[str, PaidJob] = paid if paid is not None else {}
        self.withdrawals_due: dict[int, set[str]] = {}
        """Deposits with a pending withdrawal, by payout height (an index, not in the root)."""
        self.paid_due: dict[int, set[str]] = {}
        """Remembered paid job ids by expiry height (an index, not in the root)."""
        for deposit in self.deposits.values():
            self._index_withdrawal(None, deposit)
        for record in self.paid.values():
            self.paid_due.setdefault(record.expires_height, set()).add(record.job_id)

    def _index_withdrawal(self, previous: Deposit | None, deposit: Deposit) -> None:
        if previous is not None and previous.withdrawal_amount:
            ids = self.withdrawals_due.get(previous.withdrawal_height)
            if ids is not None:
                ids.discard(previous.id)
                if not ids:
                    del self.withdrawals_due[previous.withdrawal_height]
        if deposit.withdrawal_amount:
            self.withdrawals_due.setdefault(deposit.withdrawal_height, set()).add(deposit.id)

    def _index(self, escrow: Escrow) -> None:
        if escrow.state == EscrowState.OPEN:
            self.due.setdefault(escrow.deadline_height, set()).add(escrow.job_id)
        else:
            jobs = self.due.get(escrow.deadline_height)
            if jobs is not None:
                jobs.discard(escrow.job_id)
                if not jobs:
                    del self.due[escrow.deadline_height]

    @classmethod
    def from_accounts(
        cls,
        accounts: Mapping[str, Account],
        escrows: Mapping[str, Escrow] | None = None,
        multisigs: Mapping[str, MultisigAccount] | None = None,
        staking: StakingState = EMPTY_STAKING,
        authorities: tuple[str, ...] = (),
        deposits: Mapping[str, Deposit] | None = None,
        paid: Mapping[str, PaidJob] | None = None,
        governance: GovernanceState = EMPTY_GOVERNANCE,
    ) -> ChainState:
        """Build the full tree once (genesis, or restart from the store)."""
        escrows = escrows or {}
        multisigs = multisigs or {}
        deposits = deposits or {}
        paid = paid or {}
        bonds = {(b.validator, b.delegator): b.amount for b in staking.bonds}
        items = compute_state_items(accounts, escrows, multisigs, staking, deposits, paid, governance, bonds)
        tree = SparseMerkleTree().update(items)
        return cls(
            dict(accounts),
            tree,
            dict(escrows),
            dict(multisigs),
            staking,
            authorities,
            dict(deposits),
            dict(paid),
            governance,
        )

    def get_staking(self) -> StakingState:
        return self.staking

    def get_bonds(self) -> BondReader:
        return self.bonds

    def get_governance(self) -> GovernanceState:
        return self.governance

    def prove_governance(self) -> SmtProof:
        return self.tree.prove(GOVERNANCE_KEY)

    def get_authorities(self) -> tuple[str, ...]:
        return self.authorities

    def get_account(self, address: str) -> Account:
        return self.accounts.get(address, EMPTY_ACCOUNT)

    def get_escrow(self, job_id: str) -> Escrow | None:
        return self.escrows.get(job_id)

    def get_multisig(self, address: str) -> MultisigAccount | None:
        return self.multisigs.get(address)

    def get_deposit(self, deposit_id: str) -> Deposit | None:
        return self.deposits.get(deposit_id)

    def get_paid(self, job_id: str) -> PaidJob | None:
        return self.paid.get(job_id)

    def get_due_withdrawals(self, height: int) -> list[str]:
        """Deposits whose withdrawal pays out at or before ``height`` (sorted: one order on every node)."""
        return sorted(d for h, ids in self.withdrawals_due.items() if h <= height for d in ids)

    def get_expired_paid(self, height: int) -> list[str]:
        """Paid job ids whose record expired before ``height`` (they can no longer be settled)."""
        return sorted(j for h, jobs in self.paid_due.items() if h < height for j in jobs)

    def prove_deposit(self, deposit_id: str) -> SmtProof:
        return self.tree.prove(compute_deposit_key(deposit_id))

    def prove_paid(self, job_id: str) -> SmtProof:
        return self.tree.prove(compute_paid_key(job_id))

    def get_expired_escrows(self, height: int) -> list[str]:
        """Open escrows whose deadline lies before ``height`` (sorted, so every node refunds in one order)."""
        return sorted(j for h, jobs in self.due.items() if h < height for j in jobs)

    def prove_escrow(self, job_id: str) -> SmtProof:
        return self.tree.prove(compute_escrow_key(job_id))

    @property
    def state_root(self) -> str:
        return self.tree.root_hash.hex()

    def total_supply(self) -> int:
        """Every token: balances plus what open escrows, deposits, bonds and proposal deposits hold."""
        locked = sum(e.amount for e in self.escrows.values() if e.state == EscrowState.OPEN)
        deposited = sum(d.balance for d in self.deposits.values())
        balances = sum(a.balance for a in self.accounts.values())
        return balances + locked + deposited + get_locked(self.staking, self.bonds) + self.governance.locked

    def prove_account(self, address: str) -> SmtProof:
        return self.tree.prove(compute_account_key(address))


class StateReader(Protocol):
    def get_account(self, address: str) -> Account: ...

    def get_escrow(self, job_id: str) -> Escrow | None: ...

    def get_multisig(self, address: str) -> MultisigAccount | None: ...

    def get_staking(self) -> StakingState: ...

    def get_bonds(self) -> BondReader: ...

    def get_governance(self) -> GovernanceState: ...

    def get_authorities(self) -> tuple[str, ...]: ...

    def get_deposit(self, deposit_id: str) -> Deposit | None: ...

    def get_paid(self, job_id: str) -> PaidJob | None: ...


AccountReader = StateReader


@dataclass(slots=True)
class StateDelta:
    """Writes of one block on top of a committed state (reads fall through to ``base``)."""

    base: StateReader
    accounts: dict[str, Account] = field(default_factory=dict)
    escrows: dict[str, Escrow] = field(default_factory=dict)
    events: list[ChainEvent] = field(default_factory=list)
    multisigs: dict[str, MultisigAccount] = field(default_factory=dict)
    staking: StakingState | None = None
    """The new staking state, if this block changed it."""
    governance: GovernanceState | None = None
    """The new governance state, if this block changed it."""
    voters: frozenset[str] | None = None
    """BFT blocks: the signers of ``last_commit``; fees are then collected and split among them at the end."""
    fees: int = 0
    """Fees collected so far in a BFT block (``voters`` set), paid out by ``process_end_block``."""
    committee: dict[str, int] | None = None
    """BFT blocks: the powers of the set that decided the parent (what ``voters`` is a part of)."""
    _bonds: BondOverlay | None = None

    @property
    def bonds(self) -> BondOverlay:
        """This block's bond writes over the committed bonds (O(1) per read and write)."""
        if self._bonds is None:
            self._bonds = BondOverlay(self.base.get_bonds())
        return self._bonds

    def get_bonds(self) -> BondReader:
        return self.bonds

    def set_staking_plan(self, plan: StakingPlan) -> None:
        """Store a verified staking change: its staking state and its bond writes."""
        self.staking = plan.staking
        for (validator, delegator), amount in plan.bonds.writes.items():
            self.bonds.set(validator, delegator, amount)

    @property
    def bond_writes(self) -> dict[tuple[str, str], int]:
        return {} if self._bonds is None else self._bonds.writes

    deposits: dict[str, Deposit] = field(default_factory=dict)
    paid: dict[str, PaidJob | None] = field(default_factory=dict)
    """Paid job records written (None: forgotten at its expiry) by this block."""

    def get_deposit(self, deposit_id: str) -> Deposit | None:
        deposit = self.deposits.get(deposit_id)
        return deposit if deposit is not None else self.base.get_deposit(deposit_id)

    def set_deposit(self, deposit: Deposit) -> None:
        self.deposits[deposit.id] = deposit

    def get_paid(self, job_id: str) -> PaidJob | None:
        if job_id in self.paid:
            return self.paid[job_id]
        return self.base.get_paid(job_id)

    def set_paid(self, job_id: str, record: PaidJob | None) -> None:
        self.paid[job_id] = record

    def get_staking(self) -> StakingState:
        return self.staking if self.staking is not None else self.base.get_staking()

    def set_staking(self, staking: StakingState) -> None:
        self.staking = staking

    def get_governance(self) -> GovernanceState:
        return self.governance if self.governance is not None else self.base.get_governance()

    def set_governance(self, governance: GovernanceState) -> None:
        self.governance = governance

    def get_authorities(self) -> tuple[str, ...]:
        return self.base.get_authorities()

    def get_account(self, address: str) -> Account:
        account = self.accounts.get(address)
        return account if account is not None else self.base.get_account(address)

    def set_account(self, address: str, account: Account) -> None:
        self.accounts[address] = account

    def get_escrow(self, job_id: str) -> Escrow | None:
        escrow = self.escrows.get(job_id)
        return escrow if escrow is not None else self.base.get_escrow(job_id)

    def set_escrow(self, escrow: Escrow) -> None:
        self.escrows[escrow.job_id] = escrow

    def get_multisig(self, address: str) -> MultisigAccount | None:
        multisig = self.multisigs.get(address)
        return multisig if multisig is not None else self.base.get_multisig(address)

    def set_multisig(self, multisig: MultisigAccount) -> None:
        self.multisigs[multisig.address] = multisig

    def emit(self, event: ChainEvent) -> None:
        self.events.append(event)


def compute_state_root(base: ChainState, delta: StateDelta) -> tuple[str, SparseMerkleTree]:
    """The root after ``delta``, updated incrementally: only the changed keys are rehashed."""
    tree = base.tree.update(
        compute_state_items(
            delta.accounts,
            delta.escrows,
            delta.multisigs,
            delta.staking,
            delta.deposits,
            delta.paid,
            delta.governance,
            delta.bond_writes,
        )
    )
    return tree.root_hash.hex(), tree


def commit_delta(state: ChainState, delta: StateDelta, tree: SparseMerkleTree) -> None:
    state.accounts.update(delta.accounts)
    state.multisigs.update(delta.multisigs)
    for escrow in delta.escrows.values():
        previous = state.escrows.get(escrow.job_id)
        state.escrows[escrow.job_id] = escrow
        if previous is not None and previous.deadline_height != escrow.deadline_height:  # pragma: no cover
            raise ValueError("an escrow's deadline never changes")
        state._index(escrow)
    if delta.staking is not None:
        state.staking = delta.staking
    if delta.bond_writes:
        state.bonds.apply(delta.bond_writes)
        # the persisted, displayed list (once per block that changed bonds)
        state.staking = msgspec.structs.replace(state.staking, bonds=state.bonds.to_list())
    if delta.governance is not None:
        state.governance = delta.governance
    for deposit in delta.deposits.values():
        state._index_withdrawal(state.deposits.get(deposit.id), deposit)
        state.deposits[deposit.id] = deposit
    for job_id, record in delta.paid.items():
        forgotten = state.paid.pop(job_id, None)
        if forgotten is not None:
            jobs = state.paid_due.get(forgotten.expires_height)
            if jobs is not None:
                jobs.discard(job_id)
                if not jobs:
                    del state.paid_due[forgotten.expires_height]
        if record is not None:
            state.paid[job_id] = record
            state.paid_due.setdefault(record.expires_height, set()).add(job_id)
    state.tree = tree


def is_valid_escrow_proof(state_root: str, job_id: str, escrow: Escrow | None, proof: SmtProof) -> bool:
    """A light client's check of an escrow (and its anchored receipt hash) against a state root."""
    value_hash = None if escrow is None else compute_escrow_value_hash(escrow)
    return is_valid_smt_proof(bytes.fromhex(state_root), compute_escrow_key(job_id), value_hash, proof)


def is_valid_governance_proof(state_root: str, governance: GovernanceState, proof: SmtProof) -> bool:
    """A light client's check of the governance state (proposals, votes, tallies, live params) against a root."""
    value_hash = compute_governance_value_hash(governance)
    return is_valid_smt_proof(bytes.fromhex(state_root), GOVERNANCE_KEY, value_hash, proof)


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
