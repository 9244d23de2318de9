"""Multisig accounts: creating an m-of-n account and spending from it with member approvals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.chain.block import apply_block, build_block
from aitbc.chain.params import ChainParams
from aitbc.chain.state import ChainState, StateDelta, commit_delta, compute_state_root
from aitbc.chain.tx_rules import process_tx
from aitbc.protocol.block import BlockHeader
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.tx import (
    CreateMultisig,
    MultisigApproval,
    MultisigTransfer,
    Transfer,
    add_multisig_approvals,
    compute_multisig_address,
    sign_multisig_approval,
    sign_tx,
    tx_from_json_obj,
    tx_to_json_obj,
    verify_tx,
)
from support.chain import tx_context

CHAIN_ID = "aitbc-unit"  # tests/unit/conftest.py
Keys = Any

PROPOSER = KeyPair.from_seed(b"\xa0" * 32).address


def _create(keys: Keys, members: list[KeyPair], threshold: int, nonce: int = 0) -> CreateMultisig:
    tx = CreateMultisig(
        chain_id=CHAIN_ID,
        sender=keys.alice.address,
        nonce=nonce,
        fee=10,
        members=[m.address for m in members],
        threshold=threshold,
    )
    return sign_tx(tx, keys.alice)  # type: ignore[return-value]


def _setup(state: ChainState, keys: Keys, params: ChainParams, threshold: int = 2) -> str:
    """A 2-of-3 (alice, bob, carol) account funded with 10_000; its address."""
    delta = StateDelta(base=state)
    create = _create(keys, [keys.alice, keys.bob, keys.carol], threshold)
    process_tx(delta, verify_tx(create).tx, tx_context(PROPOSER, CHAIN_ID, params))
    address = compute_multisig_address(keys.alice.address, 0)
    fund = sign_tx(
        Transfer(chain_id=CHAIN_ID, sender=keys.bob.address, nonce=0, fee=10, recipient=address, amount=10_000),
        keys.bob,
    )
    process_tx(delta, fund, tx_context(PROPOSER, CHAIN_ID, params))
    _, tree = compute_state_root(state, delta)
    commit_delta(state, delta, tree)
    return address


def _spend(address: str, keys: Keys, signers: list[KeyPair], amount: int = 1_000, nonce: int = 0) -> MultisigTransfer:
    tx = MultisigTransfer(
        chain_id=CHAIN_ID, sender=address, nonce=nonce, fee=10, recipient=keys.dave.address, amount=amount
    )
    return add_multisig_approvals(tx, [sign_multisig_approval(tx, k) for k in signers])


def test_create_registers_policy(state: ChainState, keys: Keys, params: ChainParams) -> None:
    address = _setup(state, keys, params)
    policy = state.get_multisig(address)
    assert policy is not None and policy.threshold == 2
    assert policy.members == sorted([keys.alice.address, keys.bob.address, keys.carol.address])
    assert state.get_account(address).balance == 10_000
    assert state.get_account(keys.alice.address).nonce == 1


def test_two_of_three_spend(state: ChainState, keys: Keys, params: ChainParams) -> None:
    address = _setup(state, keys, params)
    tx = verify_tx(_spend(address, keys, [keys.carol, keys.bob])).tx
    delta = StateDelta(base=state)
    process_tx(delta, tx, tx_context(PROPOSER, CHAIN_ID, params))
    assert delta.get_account(keys.dave.address).balance == 1_000
    assert delta.get_account(address).balance == 10_000 - 1_010
    assert delta.get_account(address).nonce == 1


def test_one_of_three_rejected(state: ChainState, keys: Keys, params: ChainParams) -> None:
    address = _setup(state, keys, params)
    tx = verify_tx(_spend(address, keys, [keys.bob])).tx
    with pytest.raises(InvalidTx) as exc:
        process_tx(StateDelta(base=state), tx, tx_context(PROPOSER, CHAIN_ID, params))
    assert exc.value.rejection == TxRejection.MULTISIG_THRESHOLD_NOT_MET


def test_outsider_approval_rejected(state: ChainState, keys: Keys, params: ChainParams) -> None:
    address = _setup(state, keys, params)
    tx = verify_tx(_spend(address, keys, [keys.bob, keys.dave])).tx
    with pytest.raises(InvalidTx) as exc:
        process_tx(StateDelta(base=state), tx, tx_context(PROPOSER, CHAIN_ID, params))
    assert exc.value.rejection == TxRejection.NOT_MULTISIG_MEMBER


def test_spend_from_plain_account_rejected(state: ChainState, keys: Keys, params: ChainParams) -> None:
    tx = verify_tx(_spend(keys.bob.address, keys, [keys.bob])).tx
    with pytest.raises(InvalidTx) as exc:
        process_tx(StateDelta(base=state), tx, tx_context(PROPOSER, CHAIN_ID, params))
    assert exc.value.rejection == TxRejection.NOT_MULTISIG


def test_forged_or_stale_approval_fails_signature_check(state: ChainState, keys: Keys) -> None:
    address = compute_multisig_address(keys.alice.address, 0)
    good = _spend(address, keys, [keys.alice, keys.bob])
    # an approval made for another amount does not carry over
    other = _spend(address, keys, [keys.bob], amount=2)
    mixed = add_multisig_approvals(good, other.approvals)
    with pytest.raises(InvalidTx) as exc:
        verify_tx(mixed)
    assert exc.value.rejection == TxRejection.BAD_SIGNATURE
    forged = msgspec.structs.replace(
        good, approvals=[good.approvals[0], MultisigApproval(signer=good.approvals[1].signer, signature="00" * 64)]
    )
    with pytest.raises(InvalidTx):
        verify_tx(forged)
    with pytest.raises(InvalidTx) as exc:
        verify_tx(msgspec.structs.replace(good, approvals=[]))
    assert exc.value.rejection == TxRejection.BAD_SIGNATURE
    with pytest.raises(InvalidTx) as exc:
        verify_tx(msgspec.structs.replace(good, approvals=[good.approvals[0], good.approvals[0]]))
    assert exc.value.rejection == TxRejection.MALFORMED


@pytest.mark.parametrize(
    ("members", "threshold"), [(["alice", "alice"], 1), (["alice", "bob"], 0), (["alice", "bob"], 3)]
)
def test_bad_policy(state: ChainState, keys: Keys, params: ChainParams, members: list[str], threshold: int) -> None:
    tx = verify_tx(_create(keys, [getattr(keys, m) for m in members], threshold)).tx
    with pytest.raises(InvalidTx) as exc:
        process_tx(StateDelta(base=state), tx, tx_context(PROPOSER, CHAIN_ID, params))
    assert exc.value.rejection == TxRejection.BAD_MULTISIG_POLICY


def test_json_round_trip_and_partial_combine(keys: Keys) -> None:
    address = compute_multisig_address(keys.alice.address, 7)
    base = _spend(address, keys, [])
    a = add_multisig_approvals(base, [sign_multisig_approval(base, keys.alice)])
    b = add_multisig_approvals(base, [sign_multisig_approval(base, keys.carol)])
    combined = add_multisig_approvals(a, b.approvals)
    assert [x.signer for x in combined.approvals] == sorted([keys.alice.address, keys.carol.address])
    assert tx_from_json_obj(tx_to_json_obj(combined)) == combined
    verify_tx(combined)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.sets(st.integers(0, 3)))
def test_threshold_property(
    keys: Keys, params: ChainParams, make_state: Callable[[], ChainState], threshold: int, who: set[int]
) -> None:
    """A spend commits exactly when at least ``threshold`` distinct members approve, and only members."""
    state = make_state()
    address = _setup(state, keys, params, threshold)
    candidates = [keys.alice, keys.bob, keys.carol, keys.dave]  # dave is no member
    signers = [candidates[i] for i in sorted(who)]
    delta = StateDelta(base=state)
    if not signers:
        with pytest.raises(InvalidTx):
            verify_tx(_spend(address, keys, signers))
        return
    tx = verify_tx(_spend(address, keys, signers)).tx
    if len(signers) >= threshold and keys.dave not in signers:
        process_tx(delta, tx, tx_context(PROPOSER, CHAIN_ID, params))
        assert delta.get_account(keys.dave.address).balance == 1_000
    else:
        with pytest.raises(InvalidTx):
            process_tx(delta, tx, tx_context(PROPOSER, CHAIN_ID, params))
        assert not delta.accounts


def test_block_with_multisig_round_trips_through_apply_block(
    state: ChainState, keys: Keys, params: ChainParams, genesis_head: BlockHeader, make_state: Callable[[], ChainState]
) -> None:
    """A block carrying a create, built by one node, is accepted by another (same root), and survives a reload."""
    other = make_state()
    create = verify_tx(_create(keys, [keys.alice, keys.bob], 1))
    outcome = build_block(state, genesis_head, [create], keys.authority, genesis_head.time_ms + 1000, params)
    assert [v.hash for v in outcome.included] == [create.hash]
    applied = apply_block(other, genesis_head, outcome.block, [keys.authority.address], params)
    assert applied.block.header.state_root == outcome.block.header.state_root
    commit_delta(other, applied.delta, applied.tree)
    assert other.get_multisig(compute_multisig_address(keys.alice.address, 0)) is not None
    rebuilt = ChainState.from_accounts(other.accounts, other.escrows, other.multisigs)
    assert rebuilt.state_root == other.state_root


def test_canonical_bytes_round_trip_and_strict_json(keys: Keys) -> None:
    from aitbc.protocol import codec
    from aitbc.protocol.tx import Tx, tx_bytes

    create = _create(keys, [keys.alice, keys.bob], 2)
    spend = _spend(compute_multisig_address(keys.alice.address, 0), keys, [keys.alice])
    for tx in (create, spend):
        assert codec.decode(Tx, tx_bytes(tx)) == tx
        assert tx_from_json_obj(tx_to_json_obj(tx)) == tx
    for bad in ({"members": []}, {"members": ["ait1xyz"]}, {"members": [keys.bob.address] * 17}):
        with pytest.raises(InvalidTx) as exc:
            tx_from_json_obj({**tx_to_json_obj(create), **bad})
        assert exc.value.rejection == TxRejection.MALFORMED
    with pytest.raises(InvalidTx):  # a spend carries approvals, never a signature of its own
        verify_tx(msgspec.structs.replace(spend, signature="00" * 64))


def test_item9_multisig_approvals_have_one_canonical_order(state: ChainState, keys: Keys) -> None:
    """Issue 13 item 9: the same approvals in another order would be another tx hash; only the canonical
    order (sorted by signer, as ``add_multisig_approvals`` makes it) is accepted."""
    address = compute_multisig_address(keys.alice.address, 0)
    good = _spend(address, keys, [keys.alice, keys.bob])
    verify_tx(good)
    swapped = msgspec.structs.replace(good, approvals=list(reversed(good.approvals)))
    with pytest.raises(InvalidTx) as exc:
        verify_tx(swapped)
    assert exc.value.rejection == TxRejection.MALFORMED
    assert add_multisig_approvals(swapped, []) == good  # re-canonicalised: one tx, one hash
