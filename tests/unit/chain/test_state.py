"""Account state: committed state, the per-block overlay, the state root and account proofs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.chain.entries import (
    ACCOUNT_NAMESPACE,
    EMPTY_ACCOUNT,
    Account,
    compute_account_key,
    compute_account_value_hash,
    is_valid_account_proof,
)
from aitbc.chain.smt import EMPTY_HASH, SparseMerkleTree
from aitbc.chain.state import ChainState, StateDelta, commit_delta, compute_state_root
from aitbc.protocol import codec
from aitbc.protocol.address import encode_address
from aitbc.protocol.crypto import sha256
from aitbc.protocol.types import MAX_U64

addresses = st.binary(min_size=32, max_size=32).map(encode_address)
accounts = st.builds(Account, balance=st.integers(0, MAX_U64), nonce=st.integers(0, 2**32))
account_maps = st.dictionaries(addresses, accounts, max_size=20)


def test_account_key_and_value_hash(keys: Any) -> None:
    assert compute_account_key(keys.alice.address) == sha256(ACCOUNT_NAMESPACE + keys.alice.public_key)
    assert ACCOUNT_NAMESPACE == b"account\x00"
    account = Account(balance=5, nonce=2)
    assert compute_account_value_hash(account) == sha256(codec.encode(account))
    assert compute_account_value_hash(account) != compute_account_value_hash(Account(balance=2, nonce=5))


def test_empty_state() -> None:
    state = ChainState()
    assert state.state_root == EMPTY_HASH.hex()
    assert state.total_supply() == 0
    assert ChainState.from_accounts({}).state_root == EMPTY_HASH.hex()


def test_unknown_account_reads_as_empty(state: ChainState, keys: Any) -> None:
    assert state.get_account(keys.dave.address) == EMPTY_ACCOUNT == Account(balance=0, nonce=0)
    assert keys.dave.address not in state.accounts


def test_genesis_state_fixture(state: ChainState, keys: Any) -> None:
    assert state.total_supply() == 3 * 1_000_000_000
    assert state.get_account(keys.alice.address) == Account(balance=1_000_000_000)


def test_from_accounts_root_is_the_tree_over_keys_and_value_hashes(keys: Any) -> None:
    accts = {keys.alice.address: Account(balance=1), keys.bob.address: Account(balance=2, nonce=1)}
    expected = SparseMerkleTree().update(
        {compute_account_key(a): compute_account_value_hash(x) for a, x in accts.items()}
    )
    assert ChainState.from_accounts(accts).state_root == expected.root_hash.hex()


def test_delta_reads_fall_through_and_writes_stay_in_the_overlay(state: ChainState, keys: Any) -> None:
    delta = StateDelta(base=state)
    assert delta.get_account(keys.alice.address) == state.get_account(keys.alice.address)
    delta.set_account(keys.alice.address, Account(balance=1, nonce=9))
    assert delta.get_account(keys.alice.address) == Account(balance=1, nonce=9)
    assert state.get_account(keys.alice.address) == Account(balance=1_000_000_000)
    # an overlay over an overlay
    inner = StateDelta(base=delta)
    assert inner.get_account(keys.alice.address) == Account(balance=1, nonce=9)
    assert inner.get_account(keys.bob.address) == Account(balance=1_000_000_000)


def test_compute_state_root_does_not_touch_the_base_and_commit_applies(state: ChainState, keys: Any) -> None:
    root_before = state.state_root
    delta = StateDelta(base=state)
    delta.set_account(keys.alice.address, Account(balance=10, nonce=1))
    delta.set_account(keys.dave.address, Account(balance=20))
    root, tree = compute_state_root(state, delta)
    assert state.state_root == root_before
    assert state.get_account(keys.dave.address) == EMPTY_ACCOUNT
    assert root == tree.root_hash.hex() != root_before
    commit_delta(state, delta, tree)
    assert state.state_root == root
    assert state.get_account(keys.dave.address) == Account(balance=20)
    # the incrementally updated root equals a rebuild from scratch
    assert ChainState.from_accounts(state.accounts).state_root == root


def test_an_empty_delta_keeps_the_root(state: ChainState) -> None:
    root, _ = compute_state_root(state, StateDelta(base=state))
    assert root == state.state_root


@settings(max_examples=40, deadline=None)
@given(base=account_maps, changes=account_maps)
def test_incremental_root_equals_full_rebuild(base: dict[str, Account], changes: dict[str, Account]) -> None:
    state = ChainState.from_accounts(base)
    delta = StateDelta(base=state)
    for address, account in changes.items():
        delta.set_account(address, account)
    root, tree = compute_state_root(state, delta)
    assert root == ChainState.from_accounts({**base, **changes}).state_root
    commit_delta(state, delta, tree)
    assert state.accounts == {**base, **changes}
    assert state.total_supply() == sum(a.balance for a in {**base, **changes}.values())


# -- account proofs ---------------------------------------------------------------------------


def test_every_genesis_account_proves(state: ChainState, keys: Any) -> None:
    for address, account in state.accounts.items():
        proof = state.prove_account(address)
        assert is_valid_account_proof(state.state_root, address, account, proof)
        assert not is_valid_account_proof(state.state_root, address, None, proof)
    absent = keys.dave.address
    assert is_valid_account_proof(state.state_root, absent, None, state.prove_account(absent))
    assert not is_valid_account_proof(state.state_root, absent, EMPTY_ACCOUNT, state.prove_account(absent))


@settings(max_examples=40, deadline=None)
@given(accts=account_maps.filter(bool), absent=addresses)
def test_account_proofs_verify_and_tampering_fails(accts: dict[str, Account], absent: str) -> None:
    state = ChainState.from_accounts(accts)
    root = state.state_root
    other_root = ChainState.from_accounts({**accts, absent: Account(balance=1)}).state_root
    for address, account in accts.items():
        proof = state.prove_account(address)
        assert is_valid_account_proof(root, address, account, proof)
        # a tampered account
        for tampered in (
            replace_account(account, balance=account.balance ^ 1),
            replace_account(account, nonce=account.nonce + 1),
        ):
            assert not is_valid_account_proof(root, address, tampered, proof)
        assert not is_valid_account_proof(root, address, None, proof)
        # the right account under another address, or another root
        if absent != address:
            assert not is_valid_account_proof(root, absent, account, proof)
        if absent not in accts:
            assert not is_valid_account_proof(other_root, address, account, proof)
        # a tampered proof
        if proof.siblings:
            bad = replace(
                proof, siblings=(bytes(32) if proof.siblings[0] != bytes(32) else b"\x01" * 32, *proof.siblings[1:])
            )
            assert not is_valid_account_proof(root, address, account, bad)
    if absent not in accts:
        assert is_valid_account_proof(root, absent, None, state.prove_account(absent))
        assert not is_valid_account_proof(root, absent, Account(), state.prove_account(absent))


def replace_account(account: Account, **changes: int) -> Account:
    return msgspec.structs.replace(account, **changes)


def test_proof_against_an_old_root_fails_after_a_change(state: ChainState, keys: Any) -> None:
    old_root = state.state_root
    old_proof = state.prove_account(keys.alice.address)
    delta = StateDelta(base=state)
    delta.set_account(keys.alice.address, Account(balance=1, nonce=1))
    _, tree = compute_state_root(state, delta)
    commit_delta(state, delta, tree)
    new_proof = state.prove_account(keys.alice.address)
    assert is_valid_account_proof(state.state_root, keys.alice.address, Account(balance=1, nonce=1), new_proof)
    assert not is_valid_account_proof(state.state_root, keys.alice.address, Account(balance=1_000_000_000), old_proof)
    assert is_valid_account_proof(old_root, keys.alice.address, Account(balance=1_000_000_000), old_proof)
    assert not is_valid_account_proof(old_root, keys.alice.address, Account(balance=1, nonce=1), new_proof)
