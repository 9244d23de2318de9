"""The mempool: admission reasons, replace-by-fee, eviction, reap order and update after a block."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.chain.block import apply_block, build_block
from aitbc.chain.entries import Account
from aitbc.chain.genesis import Genesis, genesis_block, genesis_state
from aitbc.chain.params import ChainParams
from aitbc.chain.state import ChainState, StateDelta, commit_delta
from aitbc.chain.tx_rules import process_tx
from aitbc.mempool import Mempool
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import InvalidTx, MempoolRejected, TxRejection
from aitbc.protocol.tx import Transfer, VerifiedTx, sign_tx, verify_tx
from support.chain import tx_context

RICH = Account(balance=1_000_000, nonce=0)


def _params(**overrides: Any) -> ChainParams:
    base = {
        "min_fee": 10,
        "mempool_max_txs": 100,
        "mempool_nonce_window": 8,
        "mempool_max_per_sender": 8,
    }
    return ChainParams(**{**base, **overrides})


@pytest.fixture
def pool(chain_id: str) -> Mempool:
    return Mempool(chain_id, _params())


@pytest.fixture
def tx(keys: Any, make_verified: Any) -> Callable[..., VerifiedTx]:
    """``tx(sender, nonce, fee=10, amount=100)`` → a signed, verified transfer to bob (or alice, for bob)."""

    def _tx(sender: KeyPair, nonce: int = 0, fee: int = 10, amount: int = 100, **kw: Any) -> VerifiedTx:
        recipient = kw.pop("recipient", keys.bob if sender is not keys.bob else keys.alice)
        return make_verified(sender, recipient, amount=amount, nonce=nonce, fee=fee, **kw)  # type: ignore[no-any-return]

    return _tx


def _reason(pool: Mempool, vtx: VerifiedTx, account: Account) -> str:
    size, content = len(pool), [v.hash for v in pool.reap(10**6, 10**9)]
    with pytest.raises(MempoolRejected) as info:
        pool.admit(vtx, account)
    assert isinstance(info.value, InvalidTx)
    assert info.value.reason == info.value.rejection.value
    # a refused tx changes nothing
    assert len(pool) == size
    assert [v.hash for v in pool.reap(10**6, 10**9)] == content
    assert vtx.hash not in pool or vtx.hash in content
    return info.value.reason


def _hashes(vtxs: list[VerifiedTx]) -> list[str]:
    return [v.hash for v in vtxs]


# -- admission ------------------------------------------------------------------------------


def test_admit(pool: Mempool, tx: Any, keys: Any) -> None:
    vtx = tx(keys.alice)
    assert pool.admit(vtx, RICH) == []
    assert len(pool) == 1
    assert vtx.hash in pool
    assert pool.get(vtx.hash) is vtx
    assert pool.get("00" * 32) is None
    assert pool.reap(10, 10**6) == [vtx]


def test_duplicate(pool: Mempool, tx: Any, keys: Any) -> None:
    vtx = tx(keys.alice)
    pool.admit(vtx, RICH)
    assert _reason(pool, vtx, RICH) == TxRejection.DUPLICATE == "duplicate"


def test_tx_too_large(chain_id: str, tx: Any, keys: Any) -> None:
    vtx = tx(keys.alice, memo="x" * 100)
    small = Mempool(chain_id, _params(max_tx_bytes=vtx.size - 1))
    assert _reason(small, vtx, RICH) == TxRejection.TX_TOO_LARGE == "tx_too_large"
    exact = Mempool(chain_id, _params(max_tx_bytes=vtx.size))
    exact.admit(vtx, RICH)


def test_wrong_chain_id(pool: Mempool, tx: Any, keys: Any) -> None:
    assert _reason(pool, tx(keys.alice, chain_id="other-chain"), RICH) == TxRejection.WRONG_CHAIN_ID == "wrong_chain_id"


@pytest.mark.parametrize("fee", [0, 9])
def test_fee_too_low(pool: Mempool, tx: Any, keys: Any, fee: int) -> None:
    assert _reason(pool, tx(keys.alice, fee=fee), RICH) == TxRejection.FEE_TOO_LOW == "fee_too_low"


def test_stateless_amount_rules(pool: Mempool, tx: Any, keys: Any) -> None:
    assert _reason(pool, tx(keys.alice, amount=0), RICH) == "zero_amount"
    assert _reason(pool, tx(keys.alice, amount=2**63 - 1), RICH) == "amount_overflow"


def test_nonce_too_low(pool: Mempool, tx: Any, keys: Any) -> None:
    account = Account(balance=1_000_000, nonce=5)
    assert _reason(pool, tx(keys.alice, nonce=4), account) == TxRejection.NONCE_TOO_LOW == "nonce_too_low"
    assert _reason(pool, tx(keys.alice, nonce=0), account) == "nonce_too_low"
    pool.admit(tx(keys.alice, nonce=5), account)


def test_nonce_too_high_outside_the_window(chain_id: str, tx: Any, keys: Any) -> None:
    pool = Mempool(chain_id, _params(mempool_nonce_window=4))
    account = Account(balance=1_000_000, nonce=2)
    assert _reason(pool, tx(keys.alice, nonce=6), account) == TxRejection.NONCE_TOO_HIGH == "nonce_too_high"
    assert _reason(pool, tx(keys.alice, nonce=1_000), account) == "nonce_too_high"
    pool.admit(tx(keys.alice, nonce=5), account)  # the last nonce inside the window


def test_insufficient_balance_counts_pending_txs(pool: Mempool, tx: Any, keys: Any) -> None:
    account = Account(balance=1_000, nonce=0)
    assert _reason(pool, tx(keys.alice, amount=991, fee=10), account) == "insufficient_balance"
    pool.admit(tx(keys.alice, nonce=0, amount=590, fee=10), account)  # cost 600
    # 500 alone would fit, but not on top of the pending 600
    over = tx(keys.alice, nonce=1, amount=390, fee=11)  # cost 401
    assert _reason(pool, over, account) == TxRejection.INSUFFICIENT_BALANCE == "insufficient_balance"
    pool.admit(tx(keys.alice, nonce=1, amount=390, fee=10), account)  # cost 400: exactly the rest
    assert len(pool) == 2


def test_insufficient_balance_of_an_empty_account(pool: Mempool, tx: Any, keys: Any) -> None:
    assert _reason(pool, tx(keys.dave), Account()) == "insufficient_balance"


def test_replacement_frees_the_old_cost(pool: Mempool, tx: Any, keys: Any) -> None:
    account = Account(balance=1_000, nonce=0)
    pool.admit(tx(keys.alice, nonce=0, amount=900, fee=10), account)
    # replacing the pending 910 by a tx costing 990 fits: the old cost no longer counts
    pool.admit(tx(keys.alice, nonce=0, amount=970, fee=20), account)
    assert _reason(pool, tx(keys.alice, nonce=0, amount=975, fee=30), account) == "insufficient_balance"


def test_replacement_underpriced(pool: Mempool, tx: Any, keys: Any) -> None:
    pool.admit(tx(keys.alice, nonce=0, fee=20), RICH)
    same_fee = tx(keys.alice, nonce=0, fee=20, amount=101)
    lower_fee = tx(keys.alice, nonce=0, fee=15)
    assert _reason(pool, same_fee, RICH) == TxRejection.REPLACEMENT_UNDERPRICED == "replacement_underpriced"
    assert _reason(pool, lower_fee, RICH) == "replacement_underpriced"


def test_replace_by_fee_of_a_senders_only_tx(pool: Mempool, tx: Any, keys: Any) -> None:
    old = tx(keys.alice, nonce=0, fee=10)
    new = tx(keys.alice, nonce=0, fee=11)
    pool.admit(old, RICH)
    assert pool.admit(new, RICH) == [old]
    assert old.hash not in pool
    assert new.hash in pool
    assert len(pool) == 1
    assert pool.reap(10, 10**6) == [new]
    assert pool.pending_nonce(keys.alice.address, 0) == 1


def test_replace_by_fee_in_the_middle_of_a_queue(pool: Mempool, tx: Any, keys: Any) -> None:
    txs = [tx(keys.alice, nonce=n, fee=10) for n in range(3)]
    for vtx in txs:
        pool.admit(vtx, RICH)
    better = tx(keys.alice, nonce=1, fee=50)
    assert pool.admit(better, RICH) == [txs[1]]
    assert _hashes(pool.reap(10, 10**6)) == _hashes([txs[0], better, txs[2]])
    assert len(pool) == 3
    # the replaced tx is gone for good: it can be admitted again only as a new replacement, which is underpriced
    assert _reason(pool, txs[1], RICH) == "replacement_underpriced"


def test_sender_limit(chain_id: str, tx: Any, keys: Any) -> None:
    pool = Mempool(chain_id, _params(mempool_max_per_sender=3))
    for n in range(3):
        pool.admit(tx(keys.alice, nonce=n), RICH)
    assert _reason(pool, tx(keys.alice, nonce=3), RICH) == TxRejection.SENDER_LIMIT == "sender_limit"
    # a replacement does not add a tx, so it is allowed at the limit; other senders are unaffected
    pool.admit(tx(keys.alice, nonce=2, fee=11), RICH)
    pool.admit(tx(keys.bob, nonce=0), RICH)
    assert len(pool) == 4


def test_mempool_full(chain_id: str, tx: Any, keys: Any) -> None:
    pool = Mempool(chain_id, _params(mempool_max_txs=2))
    pool.admit(tx(keys.alice, nonce=0, fee=20), RICH)
    pool.admit(tx(keys.bob, nonce=0, fee=30), RICH)
    # paying no more than the cheapest evictable tx does not get in
    assert _reason(pool, tx(keys.carol, fee=10), RICH) == TxRejection.MEMPOOL_FULL == "mempool_full"
    assert _reason(pool, tx(keys.carol, fee=20), RICH) == "mempool_full"


def test_mempool_full_with_only_the_senders_own_txs(chain_id: str, tx: Any, keys: Any) -> None:
    pool = Mempool(chain_id, _params(mempool_max_txs=2))
    pool.admit(tx(keys.alice, nonce=0, fee=10), RICH)
    pool.admit(tx(keys.alice, nonce=1, fee=10), RICH)
    assert _reason(pool, tx(keys.alice, nonce=2, fee=1_000), RICH) == "mempool_full"


def test_eviction_removes_the_cheapest_last_nonce_when_the_new_tx_pays_more(chain_id: str, tx: Any, keys: Any) -> None:
    pool = Mempool(chain_id, _params(mempool_max_txs=3))
    a0 = tx(keys.alice, nonce=0, fee=50)
    a1 = tx(keys.alice, nonce=1, fee=20)
    b0 = tx(keys.bob, nonce=0, fee=15)
    for vtx in (a0, a1, b0):
        pool.admit(vtx, RICH)
    c0 = tx(keys.carol, nonce=0, fee=16)
    assert pool.admit(c0, RICH) == [b0]
    assert b0.hash not in pool and c0.hash in pool
    assert len(pool) == 3
    # next cheapest evictable is alice's last nonce (20), never her nonce 0
    # now the evictable txs are alice's nonce 1 (20) and carol's nonce 0 (16): carol's goes
    d0 = tx(keys.dave, nonce=0, fee=21, amount=1)
    assert pool.admit(d0, Account(balance=100)) == [c0]
    assert len(pool) == 3
    assert {a0.hash, a1.hash, d0.hash} == set(_hashes(pool.reap(10, 10**6)))
    # and then alice's last nonce (20), never her nonce 0 (50)
    e0 = tx(keys.carol, nonce=0, fee=22)
    assert pool.admit(e0, RICH) == [a1]
    assert a0.hash in pool


def test_eviction_never_opens_a_nonce_gap(chain_id: str, tx: Any, keys: Any) -> None:
    pool = Mempool(chain_id, _params(mempool_max_txs=3))
    a0 = tx(keys.alice, nonce=0, fee=10)  # the cheapest tx, but not evictable: alice's nonce 1 depends on it
    a1 = tx(keys.alice, nonce=1, fee=100)
    b0 = tx(keys.bob, nonce=0, fee=50)
    for vtx in (a0, a1, b0):
        pool.admit(vtx, RICH)
    assert _reason(pool, tx(keys.carol, fee=20), RICH) == "mempool_full"
    c0 = tx(keys.carol, fee=51)
    assert pool.admit(c0, RICH) == [b0]
    assert _hashes(pool.reap(10, 10**6)) == _hashes([c0, a0, a1])


def test_admit_returns_displaced_for_replacement_and_eviction(chain_id: str, tx: Any, keys: Any) -> None:
    pool = Mempool(chain_id, _params(mempool_max_txs=2))
    a0, b0 = tx(keys.alice, fee=10), tx(keys.bob, fee=10)
    pool.admit(a0, RICH)
    pool.admit(b0, RICH)
    a0b = tx(keys.alice, fee=12)
    assert pool.admit(a0b, RICH) == [a0]  # a replacement needs no room
    c0 = tx(keys.carol, fee=11)
    assert pool.admit(c0, RICH) == [b0]
    assert {v.hash for v in pool.reap(10, 10**6)} == {a0b.hash, c0.hash}


# -- reap ---------------------------------------------------------------------------------------


def test_reap_orders_by_fee_across_senders_and_by_nonce_within(pool: Mempool, tx: Any, keys: Any) -> None:
    a0 = tx(keys.alice, nonce=0, fee=10)
    a1 = tx(keys.alice, nonce=1, fee=100)
    b0 = tx(keys.bob, nonce=0, fee=50)
    c0 = tx(keys.carol, nonce=0, fee=30)
    c1 = tx(keys.carol, nonce=1, fee=20)
    for vtx in (a1, c1, a0, b0, c0):  # arrival order does not matter
        pool.admit(vtx, RICH)
    # alice's 100 waits behind her own nonce 0 (fee 10)
    assert _hashes(pool.reap(10, 10**6)) == _hashes([b0, c0, c1, a0, a1])


def test_reap_ties_go_by_arrival(pool: Mempool, tx: Any, keys: Any) -> None:
    b0, a0, c0 = tx(keys.bob, fee=10), tx(keys.alice, fee=10), tx(keys.carol, fee=10)
    for vtx in (b0, a0, c0):
        pool.admit(vtx, RICH)
    assert _hashes(pool.reap(10, 10**6)) == _hashes([b0, a0, c0])


def test_reap_starts_at_the_committed_nonce(pool: Mempool, tx: Any, keys: Any) -> None:
    account = Account(balance=1_000_000, nonce=3)
    t3, t4 = tx(keys.alice, nonce=3), tx(keys.alice, nonce=4)
    pool.admit(t4, account)
    assert pool.reap(10, 10**6) == []
    pool.admit(t3, account)
    assert _hashes(pool.reap(10, 10**6)) == _hashes([t3, t4])


def test_a_gap_tx_is_not_reaped_until_the_gap_is_filled(pool: Mempool, tx: Any, keys: Any) -> None:
    t0, t1, t2, t3 = (tx(keys.alice, nonce=n) for n in range(4))
    b0 = tx(keys.bob)
    for vtx in (t0, t2, t3, b0):
        pool.admit(vtx, RICH)
    assert set(_hashes(pool.reap(10, 10**6))) == {t0.hash, b0.hash}
    assert pool.pending_nonce(keys.alice.address, 0) == 1
    pool.admit(t1, RICH)
    reaped = _hashes(pool.reap(10, 10**6))
    alice = [h for h in reaped if h != b0.hash]
    assert alice == _hashes([t0, t1, t2, t3])
    assert pool.pending_nonce(keys.alice.address, 0) == 4


def test_reap_respects_count_and_byte_limits(pool: Mempool, tx: Any, keys: Any) -> None:
    txs = [tx(keys.alice, nonce=n, fee=10) for n in range(5)]
    for vtx in txs:
        pool.admit(vtx, RICH)
    assert _hashes(pool.reap(2, 10**6)) == _hashes(txs[:2])
    assert pool.reap(0, 10**6) == []
    size = txs[0].size
    assert _hashes(pool.reap(10, size * 3 + size // 2)) == _hashes(txs[:3])
    assert pool.reap(10, size - 1) == []
    assert len(pool) == 5  # reap does not remove


def test_pending_nonce(pool: Mempool, tx: Any, keys: Any) -> None:
    assert pool.pending_nonce(keys.alice.address, 7) == 7
    account = Account(balance=1_000_000, nonce=7)
    pool.admit(tx(keys.alice, nonce=7), account)
    pool.admit(tx(keys.alice, nonce=8), account)
    pool.admit(tx(keys.alice, nonce=10), account)
    assert pool.pending_nonce(keys.alice.address, 7) == 9


# -- update after a block -----------------------------------------------------------------------


def test_update_removes_committed_txs(pool: Mempool, tx: Any, keys: Any) -> None:
    a0, a1, b0 = tx(keys.alice, nonce=0), tx(keys.alice, nonce=1), tx(keys.bob, nonce=0)
    for vtx in (a0, a1, b0):
        pool.admit(vtx, RICH)
    accounts = {keys.alice.address: Account(balance=RICH.balance - 110, nonce=1), keys.bob.address: RICH}
    stale = pool.update([a0], [], lambda a: accounts.get(a, Account()))
    assert stale == []
    assert a0.hash not in pool
    assert len(pool) == 2
    assert set(_hashes(pool.reap(10, 10**6))) == {a1.hash, b0.hash}


def test_update_removes_dropped_txs(pool: Mempool, tx: Any, keys: Any) -> None:
    a0, a1 = tx(keys.alice, nonce=0), tx(keys.alice, nonce=1)
    pool.admit(a0, RICH)
    pool.admit(a1, RICH)
    assert pool.update([], [a0], lambda a: RICH) == []
    assert a0.hash not in pool
    assert pool.reap(10, 10**6) == []  # a1 now waits on a gap


def test_update_removes_stale_txs_whose_nonce_was_used_elsewhere(pool: Mempool, tx: Any, keys: Any) -> None:
    a0, a1, a2 = (tx(keys.alice, nonce=n) for n in range(3))
    for vtx in (a0, a1, a2):
        pool.admit(vtx, RICH)
    # another proposer's block used alice's nonces 0 and 1 with other txs
    other0 = tx(keys.alice, nonce=0, amount=7)
    other1 = tx(keys.alice, nonce=1, amount=8)
    after = Account(balance=500_000, nonce=2)
    stale = pool.update([other0, other1], [], lambda a: after if a == keys.alice.address else Account())
    assert set(_hashes(stale)) == {a0.hash, a1.hash}
    assert a0.hash not in pool and a1.hash not in pool
    assert _hashes(pool.reap(10, 10**6)) == [a2.hash]
    assert len(pool) == 1


def test_update_with_everything_committed_empties_the_pool(pool: Mempool, tx: Any, keys: Any) -> None:
    a0, b0 = tx(keys.alice), tx(keys.bob)
    pool.admit(a0, RICH)
    pool.admit(b0, RICH)
    pool.update([a0, b0], [], lambda a: Account(balance=1, nonce=1))
    assert len(pool) == 0
    assert pool.reap(10, 10**6) == []
    # and the senders start over cleanly
    pool.admit(tx(keys.alice, nonce=1), Account(balance=1_000, nonce=1))
    assert len(pool.reap(10, 10**6)) == 1


# -- properties ------------------------------------------------------------------------------------

_SENDERS = [KeyPair.from_seed(bytes([i]) * 32) for i in (1, 2, 3, 4)]  # alice, bob, carol (funded), dave (not)
_AUTHORITY = KeyPair.from_seed(bytes([0xA0]) * 32)
_INITIAL = 1_000_000_000

_submissions = st.lists(
    st.tuples(
        st.integers(0, len(_SENDERS) - 1),  # sender
        st.integers(0, len(_SENDERS) - 1),  # recipient
        st.integers(0, 6),  # nonce offset from the committed nonce
        st.integers(8, 40),  # fee (min_fee is 10)
        st.one_of(st.integers(1, 1_000), st.sampled_from([_INITIAL // 3, _INITIAL // 2, _INITIAL])),  # amount
    ),
    max_size=30,
)
_pool_params = st.builds(
    _params,
    mempool_max_txs=st.integers(1, 12),
    mempool_nonce_window=st.integers(1, 6),
    mempool_max_per_sender=st.integers(1, 5),
)


def _submit(
    pool: Mempool,
    state: ChainState,
    chain_id: str,
    submissions: list[tuple[int, int, int, int, int]],
    live: dict[str, VerifiedTx],
) -> None:
    for sender_i, recipient_i, offset, fee, amount in submissions:
        sender = _SENDERS[sender_i]
        account = state.get_account(sender.address)
        unsigned = Transfer(
            chain_id=chain_id,
            sender=sender.address,
            nonce=account.nonce + offset,
            fee=fee,
            recipient=_SENDERS[recipient_i].address,
            amount=amount,
        )
        vtx = verify_tx(sign_tx(unsigned, sender))
        try:
            displaced = pool.admit(vtx, account)
        except MempoolRejected:
            continue
        live[vtx.hash] = vtx
        for old in displaced:
            del live[old.hash]


def _check_pool(pool: Mempool, state: ChainState, live: dict[str, VerifiedTx], params: ChainParams) -> list[VerifiedTx]:
    """Invariants of the pool; returns the full reap."""
    assert len(pool) == len(live) <= params.mempool_max_txs
    assert all(h in pool for h in live)
    reaped = pool.reap(10**6, 10**12)
    # reap gives exactly the executable txs: each sender's gap-free run from its committed nonce
    expected: set[str] = set()
    by_sender: dict[str, dict[int, VerifiedTx]] = {}
    for vtx in live.values():
        by_sender.setdefault(vtx.tx.sender, {})[vtx.tx.nonce] = vtx
    for sender, txs in by_sender.items():
        assert len(txs) <= params.mempool_max_per_sender
        nonce = state.get_account(sender).nonce
        while nonce in txs:
            expected.add(txs[nonce].hash)
            nonce += 1
    assert {v.hash for v in reaped} == expected
    assert len(reaped) == len(expected)
    # per sender: strictly consecutive nonces from the committed one
    seen: dict[str, int] = {}
    for vtx in reaped:
        want = seen.get(vtx.tx.sender, state.get_account(vtx.tx.sender).nonce)
        assert vtx.tx.nonce == want
        seen[vtx.tx.sender] = want + 1
    return reaped


@settings(max_examples=60, deadline=None)
@given(params=_pool_params, submissions=_submissions)
def test_reap_is_always_executable_against_the_state(
    genesis: Genesis, params: ChainParams, submissions: list[tuple[int, int, int, int, int]]
) -> None:
    state = genesis_state(genesis)
    pool = Mempool(genesis.chain_id, params)
    live: dict[str, VerifiedTx] = {}
    _submit(pool, state, genesis.chain_id, submissions, live)
    reaped = _check_pool(pool, state, live, params)
    delta = StateDelta(base=state)
    for vtx in reaped:
        process_tx(delta, vtx.tx, tx_context(_AUTHORITY.address, genesis.chain_id, params))  # never raises


@settings(max_examples=30, deadline=None)
@given(params=_pool_params, rounds=st.lists(_submissions, min_size=1, max_size=4), block_txs=st.integers(1, 6))
def test_blocks_from_reaped_txs_never_drop_and_update_keeps_the_pool_consistent(
    genesis: Genesis, params: ChainParams, rounds: list[list[tuple[int, int, int, int, int]]], block_txs: int
) -> None:
    state, replica = genesis_state(genesis), genesis_state(genesis)
    head = genesis_block(genesis, state).header
    pool = Mempool(genesis.chain_id, params)
    live: dict[str, VerifiedTx] = {}
    for height, submissions in enumerate(rounds, start=1):
        _submit(pool, state, genesis.chain_id, submissions, live)
        _check_pool(pool, state, live, params)
        candidates = pool.reap(block_txs, 10**9)
        assert len(candidates) <= block_txs
        built = build_block(state, head, candidates, _AUTHORITY, 1_700_000_000_000 + height * 1_000, params)
        assert [(v.hash, e.reason) for v, e in built.dropped] == []
        assert _hashes(built.included) == _hashes(candidates)
        applied = apply_block(replica, head, built.block, list(genesis.authorities), params)
        commit_delta(state, built.delta, built.tree)
        commit_delta(replica, applied.delta, applied.tree)
        head = built.block.header
        stale = pool.update(built.included, [v for v, _ in built.dropped], state.get_account)
        assert stale == []
        for vtx in built.included:
            del live[vtx.hash]
        assert not any(v.tx.nonce < state.get_account(v.tx.sender).nonce for v in live.values())
        _check_pool(pool, state, live, params)
