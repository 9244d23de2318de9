"""Account state: the committed state, a working overlay for one block, and the state root.

Each state entry lives under a 32-byte key ``sha256(namespace || id)`` in one
sparse Merkle tree whose root goes into every block header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

import msgspec

from aitbc.chain.smt import SmtProof, SparseMerkleTree, is_valid_smt_proof
from aitbc.protocol import codec
from aitbc.protocol.address import decode_address
from aitbc.protocol.crypto import sha256
from aitbc.protocol.types import U64, Amount

ACCOUNT_NAMESPACE: Final = b"account\x00"


class Account(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    balance: Amount = 0
    nonce: U64 = 0
    """Number of txs this account has sent; its next tx must carry exactly this nonce."""


EMPTY_ACCOUNT: Final = Account()


def compute_account_key(address: str) -> bytes:
    return sha256(ACCOUNT_NAMESPACE + decode_address(address))


def compute_account_value_hash(account: Account) -> bytes:
    return sha256(codec.encode(account))


class ChainState:
    """The committed state at the head: every account plus the Merkle tree over them."""

    __slots__ = ("accounts", "tree")

    def __init__(self, accounts: dict[str, Account] | None = None, tree: SparseMerkleTree | None = None) -> None:
        self.accounts: dict[str, Account] = accounts if accounts is not None else {}
        self.tree = tree if tree is not None else SparseMerkleTree()

    @classmethod
    def from_accounts(cls, accounts: Mapping[str, Account]) -> ChainState:
        """Build the full tree once (genesis, or restart from the store)."""
        items = {compute_account_key(a): compute_account_value_hash(acc) for a, acc in accounts.items()}
        return cls(dict(accounts), SparseMerkleTree().update(items))

    def get_account(self, address: str) -> Account:
        return self.accounts.get(address, EMPTY_ACCOUNT)

    @property
    def state_root(self) -> str:
        return self.tree.root_hash.hex()

    def total_supply(self) -> int:
        return sum(a.balance for a in self.accounts.values())

    def prove_account(self, address: str) -> SmtProof:
        return self.tree.prove(compute_account_key(address))


class AccountReader(Protocol):
    def get_account(self, address: str) -> Account: ...


@dataclass(slots=True)
class StateDelta:
    """Writes of one block on top of a committed state (reads fall through to ``base``)."""

    base: AccountReader
    accounts: dict[str, Account] = field(default_factory=dict)

    def get_account(self, address: str) -> Account:
        account = self.accounts.get(address)
        return account if account is not None else self.base.get_account(address)

    def set_account(self, address: str, account: Account) -> None:
        self.accounts[address] = account


def compute_state_root(base: ChainState, delta: StateDelta) -> tuple[str, SparseMerkleTree]:
    """The root after ``delta``, updated incrementally: only the changed keys are rehashed."""
    tree = base.tree.update(
        {compute_account_key(a): compute_account_value_hash(acc) for a, acc in delta.accounts.items()}
    )
    return tree.root_hash.hex(), tree


def commit_delta(state: ChainState, delta: StateDelta, tree: SparseMerkleTree) -> None:
    state.accounts.update(delta.accounts)
    state.tree = tree


def is_valid_account_proof(state_root: str, address: str, account: Account | None, proof: SmtProof) -> bool:
    """A light client's check: does ``address`` hold ``account`` (or nothing) under this state root?"""
    value_hash = None if account is None else compute_account_value_hash(account)
    return is_valid_smt_proof(bytes.fromhex(state_root), compute_account_key(address), value_hash, proof)
