"""A transfer through ``process_tx`` and the shared tx steps: each rule has a valid case and its refusal."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.chain.block import get_expected_proposer
from aitbc.chain.entries import Account
from aitbc.chain.ledger import process_fee
from aitbc.chain.params import ChainParams
from aitbc.chain.state import ChainState, StateDelta
from aitbc.chain.tx_rules import check_tx_stateless, compute_tx_cost, process_tx
from aitbc.protocol.crypto import KeyPair, SigningKind
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.tx import (
    Transfer,
    TxBase,
    tx_from_json,
    tx_from_json_obj,
    tx_signing_bytes,
    tx_to_json_obj,
    verify_tx,
)
from aitbc.protocol.types import MAX_U64
from support.chain import tx_context

INITIAL = 1_000_000_000  # conftest.INITIAL_BALANCE


def _snapshot(delta: StateDelta) -> dict[str, Account]:
    return dict(delta.accounts)  # accounts are frozen: a shallow copy is a snapshot


def _refuse(delta: StateDelta, tx: Transfer, proposer: str, chain_id: str, params: ChainParams) -> str:
    """Run ``tx`` through the whole pipeline (signature, then state rules); return the refusal reason.

    Also checks that the refusal left the delta exactly as it was."""
    before = _snapshot(delta)
    with pytest.raises(InvalidTx) as info:
        verify_tx(tx)
        process_tx(delta, tx, tx_context(proposer, chain_id, params))
    assert delta.accounts == before, "a refused tx must leave the StateDelta untouched"
    assert isinstance(info.value.rejection, TxRejection)
    assert info.value.reason == info.value.rejection.value
    return info.value.reason


@pytest.fixture
def delta(state: ChainState) -> StateDelta:
    return StateDelta(base=state)


@pytest.fixture
def proposer(keys: Any) -> str:
    return str(keys.authority.address)


# -- the valid case -------------------------------------------------------------------


def test_valid_transfer_moves_amount_and_pays_the_proposer(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    tx = make_transfer(keys.alice, keys.bob, amount=1_234, fee=56, nonce=0)
    verify_tx(tx)
    process_tx(delta, tx, tx_context(proposer, chain_id, params))
    assert delta.get_account(keys.alice.address) == Account(balance=INITIAL - 1_234 - 56, nonce=1)
    assert delta.get_account(keys.bob.address) == Account(balance=INITIAL + 1_234, nonce=0)
    assert delta.get_account(proposer) == Account(balance=56, nonce=0)
    # the committed state below is untouched
    assert delta.base.get_account(keys.alice.address) == Account(balance=INITIAL)


def test_consecutive_nonces_apply(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    for nonce in range(5):
        process_tx(
            delta,
            make_transfer(keys.alice, keys.bob, amount=1, fee=10, nonce=nonce),
            tx_context(proposer, chain_id, params),
        )
    assert delta.get_account(keys.alice.address) == Account(balance=INITIAL - 5 * 11, nonce=5)
    assert delta.get_account(proposer).balance == 50


def test_transfer_to_a_new_account(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    assert delta.get_account(keys.dave.address) == Account()
    process_tx(delta, make_transfer(keys.alice, keys.dave, amount=7), tx_context(proposer, chain_id, params))
    assert delta.get_account(keys.dave.address) == Account(balance=7, nonce=0)


def test_transfer_to_self_costs_only_the_fee(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    process_tx(delta, make_transfer(keys.alice, keys.alice, amount=500, fee=10), tx_context(proposer, chain_id, params))
    assert delta.get_account(keys.alice.address) == Account(balance=INITIAL - 10, nonce=1)


def test_proposer_paying_itself_keeps_its_fee(
    delta: StateDelta, keys: Any, make_transfer: Any, chain_id: str, params: ChainParams
) -> None:
    proposer = keys.alice.address
    process_tx(delta, make_transfer(keys.alice, keys.bob, amount=100, fee=10), tx_context(proposer, chain_id, params))
    assert delta.get_account(keys.alice.address) == Account(balance=INITIAL - 100, nonce=1)


def test_spending_the_whole_balance_is_allowed(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    tx = make_transfer(keys.alice, keys.bob, amount=INITIAL - 10, fee=10)
    process_tx(delta, tx, tx_context(proposer, chain_id, params))
    assert delta.get_account(keys.alice.address) == Account(balance=0, nonce=1)


def test_fee_at_the_minimum_is_allowed(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    process_tx(delta, make_transfer(keys.alice, keys.bob, fee=params.min_fee), tx_context(proposer, chain_id, params))
    assert delta.get_account(proposer).balance == params.min_fee


def test_process_fee_credits_only_a_positive_fee(delta: StateDelta, keys: Any) -> None:
    process_fee(delta, 0, keys.dave.address)
    assert keys.dave.address not in delta.accounts
    process_fee(delta, 5, keys.alice.address)
    assert delta.get_account(keys.alice.address) == Account(balance=INITIAL + 5)


def test_compute_tx_cost(keys: Any, make_transfer: Any) -> None:
    assert compute_tx_cost(make_transfer(keys.alice, keys.bob, amount=3, fee=4, sign=False)) == 7


def test_expected_proposer_is_round_robin() -> None:
    assert [get_expected_proposer(["a", "b", "c"], h) for h in range(6)] == ["a", "b", "c", "a", "b", "c"]


# -- each refusal ------------------------------------------------------------------------


def test_bad_signature(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    tx = make_transfer(keys.alice, keys.bob, amount=5)
    tampered = msgspec.structs.replace(tx, amount=6)
    assert _refuse(delta, tampered, proposer, chain_id, params) == TxRejection.BAD_SIGNATURE == "bad_signature"
    unsigned = make_transfer(keys.alice, keys.bob, sign=False)
    assert _refuse(delta, unsigned, proposer, chain_id, params) == "bad_signature"


@pytest.mark.parametrize("kind", [SigningKind.BLOCK, SigningKind.VOTE, SigningKind.RECEIPT])
def test_wrong_kind_signature(
    delta: StateDelta,
    keys: Any,
    make_transfer: Any,
    proposer: str,
    chain_id: str,
    params: ChainParams,
    kind: SigningKind,
) -> None:
    unsigned = make_transfer(keys.alice, keys.bob, sign=False)
    signature = keys.alice.sign(chain_id, kind, tx_signing_bytes(unsigned)).hex()
    tx = msgspec.structs.replace(unsigned, signature=signature)
    assert _refuse(delta, tx, proposer, chain_id, params) == "bad_signature"


def test_signature_from_another_chain(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    unsigned = make_transfer(keys.alice, keys.bob, sign=False)
    signature = keys.alice.sign("other-chain", SigningKind.TX, tx_signing_bytes(unsigned)).hex()
    tx = msgspec.structs.replace(unsigned, signature=signature)
    assert _refuse(delta, tx, proposer, chain_id, params) == "bad_signature"


def test_wrong_chain_id(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    # correctly signed, but for another chain
    tx = make_transfer(keys.alice, keys.bob, chain_id="other-chain")
    verify_tx(tx)
    assert _refuse(delta, tx, proposer, chain_id, params) == TxRejection.WRONG_CHAIN_ID == "wrong_chain_id"


def test_replayed_nonce(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    tx = make_transfer(keys.alice, keys.bob, nonce=0)
    process_tx(delta, tx, tx_context(proposer, chain_id, params))
    assert _refuse(delta, tx, proposer, chain_id, params) == TxRejection.NONCE_TOO_LOW == "nonce_too_low"
    # another tx reusing the consumed nonce is refused the same way
    other = make_transfer(keys.alice, keys.carol, nonce=0, amount=1)
    assert _refuse(delta, other, proposer, chain_id, params) == "nonce_too_low"


def test_replay_against_committed_nonce(
    keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    state = ChainState.from_accounts({keys.alice.address: Account(balance=INITIAL, nonce=3)})
    delta = StateDelta(base=state)
    assert _refuse(delta, make_transfer(keys.alice, keys.bob, nonce=2), proposer, chain_id, params) == "nonce_too_low"
    process_tx(delta, make_transfer(keys.alice, keys.bob, nonce=3), tx_context(proposer, chain_id, params))


@pytest.mark.parametrize("nonce", [1, 2, 1_000, MAX_U64])
def test_skipped_nonce(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams, nonce: int
) -> None:
    tx = make_transfer(keys.alice, keys.bob, nonce=nonce)
    assert _refuse(delta, tx, proposer, chain_id, params) == TxRejection.NONCE_TOO_HIGH == "nonce_too_high"


@pytest.mark.parametrize(("amount", "fee"), [(INITIAL, 10), (INITIAL - 9, 10), (1, INITIAL), (INITIAL * 2, 10)])
def test_overspend(
    delta: StateDelta,
    keys: Any,
    make_transfer: Any,
    proposer: str,
    chain_id: str,
    params: ChainParams,
    amount: int,
    fee: int,
) -> None:
    tx = make_transfer(keys.alice, keys.bob, amount=amount, fee=fee)
    assert _refuse(delta, tx, proposer, chain_id, params) == TxRejection.INSUFFICIENT_BALANCE == "insufficient_balance"


def test_overspend_from_an_empty_account(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    assert (
        _refuse(delta, make_transfer(keys.dave, keys.bob, amount=1), proposer, chain_id, params)
        == "insufficient_balance"
    )


def test_overspend_counts_earlier_txs_in_the_block(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    process_tx(
        delta,
        make_transfer(keys.alice, keys.bob, amount=INITIAL - 100, fee=10, nonce=0),
        tx_context(proposer, chain_id, params),
    )
    tx = make_transfer(keys.alice, keys.bob, amount=81, fee=10, nonce=1)
    assert _refuse(delta, tx, proposer, chain_id, params) == "insufficient_balance"
    process_tx(
        delta, make_transfer(keys.alice, keys.bob, amount=80, fee=10, nonce=1), tx_context(proposer, chain_id, params)
    )
    assert delta.get_account(keys.alice.address) == Account(balance=0, nonce=2)


@pytest.mark.parametrize(("amount", "fee"), [(MAX_U64, 10), (MAX_U64 - 9, 10), (10, MAX_U64), (MAX_U64, MAX_U64)])
def test_amount_plus_fee_overflow(
    delta: StateDelta,
    keys: Any,
    make_transfer: Any,
    proposer: str,
    chain_id: str,
    params: ChainParams,
    amount: int,
    fee: int,
) -> None:
    tx = make_transfer(keys.alice, keys.bob, amount=amount, fee=fee)
    assert _refuse(delta, tx, proposer, chain_id, params) == TxRejection.AMOUNT_OVERFLOW == "amount_overflow"


def test_amount_plus_fee_at_the_maximum_is_not_an_overflow(
    keys: Any, make_transfer: Any, chain_id: str, params: ChainParams
) -> None:
    tx = make_transfer(keys.alice, keys.bob, amount=MAX_U64 - 10, fee=10)
    check_tx_stateless(tx, chain_id, params)  # no overflow; only the balance can refuse it


def test_recipient_balance_overflow(
    keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    state = ChainState.from_accounts(
        {keys.alice.address: Account(balance=1_000), keys.bob.address: Account(balance=MAX_U64 - 5)}
    )
    delta = StateDelta(base=state)
    tx = make_transfer(keys.alice, keys.bob, amount=6, fee=10)
    assert _refuse(delta, tx, proposer, chain_id, params) == "amount_overflow"
    # exactly reaching the maximum is fine
    process_tx(delta, make_transfer(keys.alice, keys.bob, amount=5, fee=10), tx_context(proposer, chain_id, params))
    assert delta.get_account(keys.bob.address).balance == MAX_U64


def test_self_transfer_near_the_maximum_is_not_an_overflow(
    keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    state = ChainState.from_accounts({keys.alice.address: Account(balance=MAX_U64)})
    delta = StateDelta(base=state)
    process_tx(
        delta,
        make_transfer(keys.alice, keys.alice, amount=MAX_U64 - 10, fee=10),
        tx_context(proposer, chain_id, params),
    )
    assert delta.get_account(keys.alice.address) == Account(balance=MAX_U64 - 10, nonce=1)


def test_zero_amount(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    tx = make_transfer(keys.alice, keys.bob, amount=0)
    assert _refuse(delta, tx, proposer, chain_id, params) == TxRejection.ZERO_AMOUNT == "zero_amount"


@pytest.mark.parametrize("fee", [0, 9])
def test_fee_below_the_floor(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams, fee: int
) -> None:
    tx = make_transfer(keys.alice, keys.bob, fee=fee)
    assert _refuse(delta, tx, proposer, chain_id, params) == TxRejection.FEE_TOO_LOW == "fee_too_low"


def test_unknown_fields_are_malformed(keys: Any, make_transfer: Any) -> None:
    obj = {**tx_to_json_obj(make_transfer(keys.alice, keys.bob)), "admin": True}
    for parse, arg in ((tx_from_json_obj, obj), (tx_from_json, msgspec.json.encode(obj))):
        with pytest.raises(InvalidTx) as info:
            parse(arg)
        assert info.value.reason == TxRejection.MALFORMED == "malformed"


def test_unknown_tx_type_in_json(keys: Any, make_transfer: Any) -> None:
    obj = {**tx_to_json_obj(make_transfer(keys.alice, keys.bob)), "type": "mint"}
    for parse, arg in ((tx_from_json_obj, obj), (tx_from_json, msgspec.json.encode(obj))):
        with pytest.raises(InvalidTx) as info:
            parse(arg)
        assert info.value.reason == TxRejection.UNKNOWN_TX_TYPE == "unknown_tx_type"


class _Mint(TxBase, frozen=True, kw_only=True, tag="mint"):
    """A tx kind the state transition does not know."""

    amount: int
    __address_fields__: ClassVar[tuple[str, ...]] = ("sender",)


def test_unknown_tx_kind_in_the_transition(
    delta: StateDelta, keys: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    tx = _Mint(chain_id=chain_id, sender=keys.alice.address, nonce=0, fee=10, amount=5)
    with pytest.raises(InvalidTx) as info:
        process_tx(delta, tx, tx_context(proposer, chain_id, params))  # type: ignore[arg-type]
    assert info.value.reason == TxRejection.UNKNOWN_TX_TYPE
    assert delta.accounts == {}


def test_rule_order_chain_id_before_state(
    delta: StateDelta, keys: Any, make_transfer: Any, proposer: str, chain_id: str, params: ChainParams
) -> None:
    # several rules broken at once: the stateless ones are reported first
    tx = make_transfer(keys.dave, keys.bob, amount=0, nonce=9, chain_id="other-chain")
    assert _refuse(delta, tx, proposer, chain_id, params) == "wrong_chain_id"


# -- property: refusals leave no trace, accepted txs conserve supply ---------------------

_ACTORS = [KeyPair.from_seed(bytes([i]) * 32) for i in (1, 2, 3, 4)]  # conftest's alice, bob, carol, dave
_PROPOSER = KeyPair.from_seed(bytes([0xA0]) * 32).address

_transfers = st.lists(
    st.tuples(
        st.integers(0, len(_ACTORS) - 1),
        st.integers(0, len(_ACTORS) - 1),
        st.one_of(st.integers(0, 2 * INITIAL), st.sampled_from([0, 1, INITIAL, MAX_U64])),
        st.one_of(st.integers(0, 100), st.sampled_from([MAX_U64])),
        st.integers(-1, 1),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(steps=_transfers)
def test_any_sequence_conserves_supply_and_refusals_leave_no_trace(
    make_state: Any, params: ChainParams, chain_id: str, steps: list[tuple[int, int, int, int, int]]
) -> None:
    state = make_state()
    delta = StateDelta(base=state)
    everyone = [k.address for k in _ACTORS] + [_PROPOSER]
    supply = sum(delta.get_account(a).balance for a in everyone)
    for sender_i, recipient_i, amount, fee, nonce_offset in steps:
        sender = _ACTORS[sender_i]
        nonce = max(0, delta.get_account(sender.address).nonce + nonce_offset)
        tx = Transfer(
            chain_id=chain_id,
            sender=sender.address,
            nonce=nonce,
            fee=fee,
            recipient=_ACTORS[recipient_i].address,
            amount=amount,
        )
        before = _snapshot(delta)
        try:
            process_tx(delta, tx, tx_context(_PROPOSER, chain_id, params))
        except InvalidTx:
            assert delta.accounts == before
            continue
        assert delta.get_account(sender.address).nonce == nonce + 1
        assert sum(delta.get_account(a).balance for a in everyone) == supply
        assert all(0 <= delta.get_account(a).balance <= MAX_U64 for a in everyone)
    assert sum(delta.get_account(a).balance for a in everyone) == supply
