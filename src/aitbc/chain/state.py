"""The chain's state: the committed state at the head, a working overlay for one block, the root.

``ChainState`` holds every entry (``aitbc.chain.entries``) of the committed
head and the sparse Merkle tree over them; ``StateDelta`` collects one
block's writes on top of it, which ``compute_state_root`` hashes into the next
root and ``commit_delta`` applies once the block is committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from aitbc.chain.audit_types import EMPTY_AUDITS, AuditCandidate, AuditState, get_bonded_total
from aitbc.chain.bonds import BondIndex, BondOverlay, BondReader
from aitbc.chain.entries import (
    AUDITS_KEY,
    EMPTY_ACCOUNT,
    GOVERNANCE_KEY,
    Account,
    ChainEvent,
    Deposit,
    Escrow,
    EscrowState,
    MultisigAccount,
    PaidJob,
    compute_account_key,
    compute_deposit_key,
    compute_escrow_key,
    compute_paid_key,
    compute_state_items,
)
from aitbc.chain.gov_types import EMPTY_GOVERNANCE, GovernanceState
from aitbc.chain.smt import SmtProof, SparseMerkleTree
from aitbc.chain.validators import EMPTY_STAKING, StakingPlan, StakingState, get_locked


class ChainState:
    """The committed state at the head: accounts, escrows, and the Merkle tree over both."""

    __slots__ = (
        "accounts",
        "audits",
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
        audits: AuditState = EMPTY_AUDITS,
    ) -> None:
        self.audits = audits
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
        audits: AuditState = EMPTY_AUDITS,
    ) -> ChainState:
        """Build the full tree once (genesis, or restart from the store)."""
        escrows = escrows or {}
        multisigs = multisigs or {}
        deposits = deposits or {}
        paid = paid or {}
        bonds = {(b.validator, b.delegator): b.amount for b in staking.bonds}
        items = compute_state_items(accounts, escrows, multisigs, staking, deposits, paid, governance, bonds, audits)
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
            audits,
        )

    def get_staking(self) -> StakingState:
        return self.staking

    def get_bonds(self) -> BondReader:
        return self.bonds

    def get_governance(self) -> GovernanceState:
        return self.governance

    def get_audits(self) -> AuditState:
        return self.audits

    def prove_audits(self) -> SmtProof:
        return self.tree.prove(AUDITS_KEY)

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
        """Every token: balances plus what open escrows, deposits, stake, proposal deposits and miner bonds hold."""
        locked = sum(e.amount for e in self.escrows.values() if e.state == EscrowState.OPEN)
        deposited = sum(d.balance for d in self.deposits.values())
        balances = sum(a.balance for a in self.accounts.values())
        held = get_locked(self.staking, self.bonds) + self.governance.locked + get_bonded_total(self.audits)
        return balances + locked + deposited + held

    def prove_account(self, address: str) -> SmtProof:
        return self.tree.prove(compute_account_key(address))


class StateReader(Protocol):
    def get_account(self, address: str) -> Account: ...

    def get_escrow(self, job_id: str) -> Escrow | None: ...

    def get_multisig(self, address: str) -> MultisigAccount | None: ...

    def get_staking(self) -> StakingState: ...

    def get_bonds(self) -> BondReader: ...

    def get_governance(self) -> GovernanceState: ...

    def get_audits(self) -> AuditState: ...

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
    audits: AuditState | None = None
    """The new audit state, if this block changed it."""
    audit_candidates: list[AuditCandidate] = field(default_factory=list)
    """Jobs this block settled (``aitbc.chain.audits.note_settled``); stored at its end for the next draw."""
    voters: frozenset[str] | None = None
    """BFT blocks: the signers of ``last_commit``; fees are then collected and split among them at the end."""
    fees: int = 0
    """Fees collected so far in a BFT block (``voters`` set), paid out by ``process_end_block``."""
    committee: dict[str, int] | None = None
    """BFT blocks: the powers of the set that decided the parent (what ``voters`` is a part of)."""
    deposits: dict[str, Deposit] = field(default_factory=dict)
    paid: dict[str, PaidJob | None] = field(default_factory=dict)
    """Paid job records written (None: forgotten at its expiry) by this block."""
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

    def get_audits(self) -> AuditState:
        return self.audits if self.audits is not None else self.base.get_audits()

    def set_audits(self, audits: AuditState) -> None:
        self.audits = audits

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
            delta.audits,
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
    if delta.audits is not None:
        state.audits = delta.audits
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
