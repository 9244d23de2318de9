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

from aitbc.chain.smt import SmtProof, SparseMerkleTree, is_valid_smt_proof
from aitbc.chain.validators import EMPTY_STAKING, StakingState, get_locked, is_empty_staking
from aitbc.protocol import codec
from aitbc.protocol.address import decode_address
from aitbc.protocol.crypto import sha256
from aitbc.protocol.job import JobId
from aitbc.protocol.types import U64, Address, Amount, Height, Wire

ACCOUNT_NAMESPACE: Final = b"account\x00"
ESCROW_NAMESPACE: Final = b"escrow\x00"
MULTISIG_NAMESPACE: Final = b"multisig\x00"
STAKING_KEY: Final = sha256(b"staking\x00")
"""The one state entry holding the ``StakingState`` (absent while it is empty)."""


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
    return None if is_empty_staking(staking) else sha256(codec.encode(staking))


def compute_state_items(
    accounts: Mapping[str, Account],
    escrows: Mapping[str, Escrow],
    multisigs: Mapping[str, MultisigAccount] | None = None,
    staking: StakingState | None = None,
) -> dict[bytes, bytes | None]:
    items: dict[bytes, bytes | None] = {
        compute_account_key(a): compute_account_value_hash(acc) for a, acc in accounts.items()
    }
    items.update({compute_escrow_key(j): compute_escrow_value_hash(e) for j, e in escrows.items()})
    if multisigs:
        items.update({compute_multisig_key(a): compute_multisig_value_hash(m) for a, m in multisigs.items()})
    if staking is not None:
        items[STAKING_KEY] = compute_staking_value_hash(staking)
    return items


class ChainState:
    """The committed state at the head: accounts, escrows, and the Merkle tree over both."""

    __slots__ = ("accounts", "authorities", "due", "escrows", "multisigs", "staking", "tree")

    def __init__(
        self,
        accounts: dict[str, Account] | None = None,
        tree: SparseMerkleTree | None = None,
        escrows: dict[str, Escrow] | None = None,
        multisigs: dict[str, MultisigAccount] | None = None,
        staking: StakingState = EMPTY_STAKING,
        authorities: tuple[str, ...] = (),
    ) -> None:
        self.staking = staking
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
    ) -> ChainState:
        """Build the full tree once (genesis, or restart from the store)."""
        escrows = escrows or {}
        multisigs = multisigs or {}
        tree = SparseMerkleTree().update(compute_state_items(accounts, escrows, multisigs, staking))
        return cls(dict(accounts), tree, dict(escrows), dict(multisigs), staking, authorities)

    def get_staking(self) -> StakingState:
        return self.staking

    def get_authorities(self) -> tuple[str, ...]:
        return self.authorities

    def get_account(self, address: str) -> Account:
        return self.accounts.get(address, EMPTY_ACCOUNT)

    def get_escrow(self, job_id: str) -> Escrow | None:
        return self.escrows.get(job_id)

    def get_multisig(self, address: str) -> MultisigAccount | None:
        return self.multisigs.get(address)

    def get_expired_escrows(self, height: int) -> list[str]:
        """Open escrows whose deadline lies before ``height`` (sorted, so every node refunds in one order)."""
        return sorted(j for h, jobs in self.due.items() if h < height for j in jobs)

    def prove_escrow(self, job_id: str) -> SmtProof:
        return self.tree.prove(compute_escrow_key(job_id))

    @property
    def state_root(self) -> str:
        return self.tree.root_hash.hex()

    def total_supply(self) -> int:
        """Every token: balances plus what open escrows hold."""
        locked = sum(e.amount for e in self.escrows.values() if e.state == EscrowState.OPEN)
        return sum(a.balance for a in self.accounts.values()) + locked + get_locked(self.staking)

    def prove_account(self, address: str) -> SmtProof:
        return self.tree.prove(compute_account_key(address))


class StateReader(Protocol):
    def get_account(self, address: str) -> Account: ...

    def get_escrow(self, job_id: str) -> Escrow | None: ...

    def get_multisig(self, address: str) -> MultisigAccount | None: ...

    def get_staking(self) -> StakingState: ...

    def get_authorities(self) -> tuple[str, ...]: ...


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
    voters: frozenset[str] | None = None
    """BFT blocks: the signers of ``last_commit``; fees are then collected and split among them at the end."""
    fees: int = 0
    """Fees collected so far in a BFT block (``voters`` set), paid out by ``process_end_block``."""
    committee: dict[str, int] | None = None
    """BFT blocks: the powers of the set that decided the parent (what ``voters`` is a part of)."""

    def get_staking(self) -> StakingState:
        return self.staking if self.staking is not None else self.base.get_staking()

    def set_staking(self, staking: StakingState) -> None:
        self.staking = staking

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
    tree = base.tree.update(compute_state_items(delta.accounts, delta.escrows, delta.multisigs, delta.staking))
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
    state.tree = tree


def is_valid_escrow_proof(state_root: str, job_id: str, escrow: Escrow | None, proof: SmtProof) -> bool:
    """A light client's check of an escrow (and its anchored receipt hash) against a state root."""
    value_hash = None if escrow is None else compute_escrow_value_hash(escrow)
    return is_valid_smt_proof(bytes.fromhex(state_root), compute_escrow_key(job_id), value_hash, proof)


def is_valid_account_proof(state_root: str, address: str, account: Account | None, proof: SmtProof) -> bool:
    """A light client's check: does ``address`` hold ``account`` (or nothing) under this state root?"""
    value_hash = None if account is None else compute_account_value_hash(account)
    return is_valid_smt_proof(bytes.fromhex(state_root), compute_account_key(address), value_hash, proof)
