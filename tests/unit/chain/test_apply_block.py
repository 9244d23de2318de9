"""``build_block`` proposes, ``apply_block`` validates: every honest block is accepted, every tampering refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.chain.block import BlockOutcome, apply_block, build_block, compute_block_time
from aitbc.chain.entries import Account
from aitbc.chain.genesis import Genesis, genesis_block, genesis_state
from aitbc.chain.params import ChainParams
from aitbc.chain.state import ChainState, StateDelta, commit_delta, compute_state_root
from aitbc.chain.tx_rules import process_tx
from aitbc.protocol.block import (
    Block,
    BlockHeader,
    block_hash,
    compute_tx_root,
    header_bytes,
    sign_header,
    verify_header_signature,
)
from aitbc.protocol.crypto import KeyPair, SigningKind
from aitbc.protocol.errors import InvalidBlock, InvalidTx, TxRejection
from aitbc.protocol.tx import Transfer, VerifiedTx, sign_tx, tx_signing_bytes, verify_tx
from support.chain import tx_context

INITIAL = 1_000_000_000  # conftest.INITIAL_BALANCE
NOW = 1_700_000_001_000


@pytest.fixture
def authorities(keys: Any) -> list[str]:
    return [keys.authority.address]


@pytest.fixture
def build(
    make_state: Callable[[], ChainState], genesis_head: BlockHeader, keys: Any, params: ChainParams
) -> Callable[..., BlockOutcome]:
    """Build block 1 on a fresh genesis state."""

    def _build(candidates: list[VerifiedTx], key: KeyPair | None = None, **kw: Any) -> BlockOutcome:
        return build_block(
            make_state(),
            genesis_head,
            candidates,
            key or keys.authority,
            kw.pop("now_ms", NOW),
            kw.pop("params", params),
        )

    return _build


@pytest.fixture
def some_txs(keys: Any, make_verified: Any) -> list[VerifiedTx]:
    return [
        make_verified(keys.alice, keys.bob, amount=100, fee=10, nonce=0),
        make_verified(keys.bob, keys.carol, amount=200, fee=20, nonce=0),
        make_verified(keys.alice, keys.dave, amount=300, fee=30, nonce=1),
    ]


def _resign(block: Block, key: KeyPair, **changes: Any) -> Block:
    header = msgspec.structs.replace(block.header, **changes)
    return msgspec.structs.replace(block, header=header, proposer_signature=sign_header(header, key))


def _forge(
    state: ChainState, head: BlockHeader, txs: list[Transfer], key: KeyPair, time_ms: int = NOW, **changes: Any
) -> Block:
    """A block whose header honestly commits to ``txs`` (tx root and count) but whose txs are not checked."""
    header = BlockHeader(
        chain_id=head.chain_id,
        height=head.height + 1,
        time_ms=time_ms,
        prev_hash=block_hash(head),
        tx_root=compute_tx_root([bytes.fromhex(verify_tx(tx).hash) for tx in txs]),
        tx_count=len(txs),
        state_root=state.state_root,
        proposer=key.address,
    )
    header = msgspec.structs.replace(header, **changes)
    return Block(header=header, proposer_signature=sign_header(header, key), txs=txs)


def _rejects(
    block: Block,
    state: ChainState,
    head: BlockHeader,
    authorities: list[str],
    params: ChainParams,
    match: str,
) -> None:
    root_before, accounts_before = state.state_root, dict(state.accounts)
    with pytest.raises(InvalidBlock, match=match):
        apply_block(state, head, block, authorities, params)
    assert state.state_root == root_before
    assert state.accounts == accounts_before


# -- honest blocks --------------------------------------------------------------------------


def test_built_block_is_accepted_with_the_same_state_root(
    build: Any,
    some_txs: list[VerifiedTx],
    make_state: Callable[[], ChainState],
    genesis_head: BlockHeader,
    authorities: list[str],
    params: ChainParams,
) -> None:
    built = build(some_txs)
    assert built.dropped == []
    assert [v.hash for v in built.included] == [v.hash for v in some_txs]
    replica = make_state()
    applied = apply_block(replica, genesis_head, built.block, authorities, params)
    assert applied.hash == built.hash == block_hash(built.block.header)
    assert applied.block.header.state_root == built.block.header.state_root == built.tree.root_hash.hex()
    assert applied.tree.root_hash == built.tree.root_hash
    assert applied.delta.accounts == built.delta.accounts
    assert [v.hash for v in applied.included] == [v.hash for v in built.included]
    # apply_block itself does not commit
    assert replica.state_root == genesis_head.state_root


def test_built_header_fields(
    build: Any, some_txs: list[VerifiedTx], genesis_head: BlockHeader, keys: Any, params: ChainParams
) -> None:
    built = build(some_txs)
    header = built.block.header
    assert header.chain_id == genesis_head.chain_id
    assert header.height == 1
    assert header.prev_hash == block_hash(genesis_head)
    assert header.time_ms == NOW
    assert header.tx_count == 3 == len(built.block.txs)
    assert header.tx_root == compute_tx_root([bytes.fromhex(v.hash) for v in some_txs])
    assert header.proposer == keys.authority.address
    verify_header_signature(header, built.block.proposer_signature)


def test_fees_go_to_the_proposer(build: Any, some_txs: list[VerifiedTx], keys: Any) -> None:
    built = build(some_txs)
    assert built.delta.get_account(keys.authority.address) == Account(balance=10 + 20 + 30)
    assert built.delta.get_account(keys.alice.address) == Account(balance=INITIAL - 110 - 330, nonce=2)
    assert built.delta.get_account(keys.dave.address) == Account(balance=300)


def test_empty_block_is_valid(
    build: Any, make_state: Any, genesis_head: BlockHeader, authorities: list[str], params: ChainParams
) -> None:
    built = build([])
    assert built.block.header.tx_count == 0
    assert built.block.header.state_root == genesis_head.state_root
    apply_block(make_state(), genesis_head, built.block, authorities, params)


def test_a_chain_of_blocks_replicates(
    genesis: Genesis, keys: Any, make_verified: Any, params: ChainParams, authorities: list[str]
) -> None:
    proposer_state, replica = genesis_state(genesis), genesis_state(genesis)
    head = genesis_block(genesis, proposer_state).header
    for height in range(1, 5):
        txs = [make_verified(keys.alice, keys.bob, amount=height, nonce=height - 1)]
        built = build_block(proposer_state, head, txs, keys.authority, NOW + height, params)
        applied = apply_block(replica, head, built.block, authorities, params)
        commit_delta(proposer_state, built.delta, built.tree)
        commit_delta(replica, applied.delta, applied.tree)
        assert proposer_state.state_root == replica.state_root == built.block.header.state_root
        assert proposer_state.accounts == replica.accounts
        head = built.block.header
    assert replica.get_account(keys.alice.address).nonce == 4
    # a full rebuild of the tree from the accounts gives the incrementally maintained root
    assert ChainState.from_accounts(replica.accounts).state_root == replica.state_root


def test_round_robin_proposers(genesis: Genesis, keys: Any, params: ChainParams) -> None:
    two = msgspec.structs.replace(genesis, authorities=[keys.authority.address, keys.authority2.address])
    state = genesis_state(two)
    head = genesis_block(two, state).header
    auths = list(two.authorities)
    # height 1 is authority2's turn, height 2 authority's
    wrong = build_block(state, head, [], keys.authority, NOW, params)
    with pytest.raises(InvalidBlock, match="proposer"):
        apply_block(state, head, wrong.block, auths, params)
    right = build_block(state, head, [], keys.authority2, NOW, params)
    apply_block(state, head, right.block, auths, params)
    head2 = right.block.header
    apply_block(state, head2, build_block(state, head2, [], keys.authority, NOW + 1, params).block, auths, params)


def test_block_time_strictly_increases() -> None:
    assert compute_block_time(1_000, 5_000) == 5_000
    assert compute_block_time(1_000, 1_000) == 1_001
    assert compute_block_time(1_000, 10) == 1_001


def test_built_block_with_a_clock_behind_is_still_valid(
    build: Any, make_state: Any, genesis_head: BlockHeader, authorities: list[str], params: ChainParams
) -> None:
    built = build([], now_ms=genesis_head.time_ms - 5_000)
    assert built.block.header.time_ms == genesis_head.time_ms + 1
    apply_block(make_state(), genesis_head, built.block, authorities, params)


# -- build_block drops what fails -------------------------------------------------------------


def test_build_block_drops_and_reports_failing_txs(
    build: Any,
    keys: Any,
    make_verified: Any,
    make_state: Any,
    genesis_head: BlockHeader,
    authorities: list[str],
    params: ChainParams,
) -> None:
    good1 = make_verified(keys.alice, keys.bob, amount=100, nonce=0)
    replay = make_verified(keys.alice, keys.carol, amount=5, nonce=0)
    gap = make_verified(keys.bob, keys.carol, amount=5, nonce=3)
    broke = make_verified(keys.dave, keys.carol, amount=5, nonce=0)
    other_chain = make_verified(keys.carol, keys.alice, amount=5, nonce=0, chain_id="other-chain")
    cheap = make_verified(keys.carol, keys.alice, amount=5, nonce=0, fee=1)
    zero = make_verified(keys.carol, keys.alice, amount=0, nonce=0)
    good2 = make_verified(keys.alice, keys.carol, amount=5, nonce=1)
    built = build([good1, replay, gap, broke, other_chain, cheap, zero, good2])
    assert [v.hash for v in built.included] == [good1.hash, good2.hash]
    assert [(v.hash, exc.reason) for v, exc in built.dropped] == [
        (replay.hash, "nonce_too_low"),
        (gap.hash, "nonce_too_high"),
        (broke.hash, "insufficient_balance"),
        (other_chain.hash, "wrong_chain_id"),
        (cheap.hash, "fee_too_low"),
        (zero.hash, "zero_amount"),
    ]
    assert all(isinstance(exc, InvalidTx) for _, exc in built.dropped)
    assert built.block.txs == [good1.tx, good2.tx]
    applied = apply_block(make_state(), genesis_head, built.block, authorities, params)
    assert applied.block.header.state_root == built.block.header.state_root


def test_build_block_with_only_failing_txs_is_an_empty_valid_block(
    build: Any,
    keys: Any,
    make_verified: Any,
    make_state: Any,
    genesis_head: BlockHeader,
    authorities: list[str],
    params: ChainParams,
) -> None:
    built = build([make_verified(keys.dave, keys.alice, amount=1)])
    assert built.included == [] and len(built.dropped) == 1
    assert built.block.header.state_root == genesis_head.state_root
    apply_block(make_state(), genesis_head, built.block, authorities, params)


def test_build_block_respects_max_block_txs(build: Any, keys: Any, make_verified: Any, params: ChainParams) -> None:
    txs = [make_verified(keys.alice, keys.bob, amount=1, nonce=n) for n in range(5)]
    built = build(txs, params=msgspec.structs.replace(params, max_block_txs=3))
    assert [v.hash for v in built.included] == [v.hash for v in txs[:3]]


def test_build_block_respects_max_block_bytes(build: Any, keys: Any, make_verified: Any, params: ChainParams) -> None:
    txs = [make_verified(keys.alice, keys.bob, amount=1, nonce=n) for n in range(5)]
    limit = txs[0].size * 2 + txs[0].size // 2
    built = build(txs, params=msgspec.structs.replace(params, max_block_bytes=limit))
    assert len(built.included) == 2
    assert sum(v.size for v in built.included) <= limit


# -- every tampering is refused ------------------------------------------------------------------


@pytest.fixture
def honest(build: Any, some_txs: list[VerifiedTx]) -> Block:
    block: Block = build(some_txs).block
    return block


@pytest.fixture
def check(
    state: ChainState, genesis_head: BlockHeader, authorities: list[str], params: ChainParams
) -> Callable[[Block, str], None]:
    def _check(block: Block, match: str) -> None:
        _rejects(block, state, genesis_head, authorities, params, match)

    return _check


def test_honest_block_passes_the_check_fixture(
    honest: Block, state: ChainState, genesis_head: BlockHeader, authorities: list[str], params: ChainParams
) -> None:
    apply_block(state, genesis_head, honest, authorities, params)  # so each refusal below is due to its tampering


@pytest.mark.parametrize("height", [0, 2, 100])
def test_wrong_height(honest: Block, keys: Any, check: Any, height: int) -> None:
    check(_resign(honest, keys.authority, height=height), "height")


def test_wrong_prev_hash(honest: Block, keys: Any, check: Any) -> None:
    check(_resign(honest, keys.authority, prev_hash="11" * 32), "prev_hash")


def test_block_on_another_head(
    honest: Block, keys: Any, state: ChainState, genesis_head: BlockHeader, authorities: list[str], params: ChainParams
) -> None:
    other_head = msgspec.structs.replace(genesis_head, time_ms=genesis_head.time_ms + 1)
    _rejects(honest, state, other_head, authorities, params, "prev_hash")


@pytest.mark.parametrize("delta_ms", [0, -1, -1_000])
def test_non_increasing_time(honest: Block, keys: Any, check: Any, genesis_head: BlockHeader, delta_ms: int) -> None:
    check(_resign(honest, keys.authority, time_ms=genesis_head.time_ms + delta_ms), "time")


def test_wrong_proposer(honest: Block, keys: Any, check: Any) -> None:
    # a well-formed block, correctly signed by a key that is not the authority
    check(_resign(honest, keys.authority2, proposer=keys.authority2.address), "proposer")
    check(_resign(honest, keys.alice, proposer=keys.alice.address), "proposer")


def test_bad_proposer_signature(honest: Block, keys: Any, check: Any) -> None:
    header = honest.header
    by_other_key = keys.authority2.sign(header.chain_id, SigningKind.BLOCK, header_bytes(header)).hex()
    flipped = bytearray(bytes.fromhex(honest.proposer_signature))
    flipped[0] ^= 1
    for signature in (by_other_key, bytes(flipped).hex(), "", "00" * 64, "zz" * 64, honest.proposer_signature[:-2]):
        check(msgspec.structs.replace(honest, proposer_signature=signature), "signature")


@pytest.mark.parametrize("kind", [SigningKind.TX, SigningKind.VOTE])
def test_proposer_signature_of_the_wrong_kind(honest: Block, keys: Any, check: Any, kind: SigningKind) -> None:
    header = honest.header
    signature = keys.authority.sign(header.chain_id, kind, header_bytes(header)).hex()
    check(msgspec.structs.replace(honest, proposer_signature=signature), "signature")


def test_proposer_signature_for_another_chain(honest: Block, keys: Any, check: Any) -> None:
    header = honest.header
    signature = keys.authority.sign("other-chain", SigningKind.BLOCK, header_bytes(header)).hex()
    check(msgspec.structs.replace(honest, proposer_signature=signature), "signature")


def test_header_changed_after_signing(honest: Block, check: Any) -> None:
    tampered = msgspec.structs.replace(honest.header, state_root="22" * 32)
    check(msgspec.structs.replace(honest, header=tampered), "signature")


def test_tx_root_mismatch(honest: Block, keys: Any, check: Any) -> None:
    check(_resign(honest, keys.authority, tx_root="33" * 32), "tx root")


def test_reordered_txs_do_not_match_the_tx_root(honest: Block, check: Any) -> None:
    txs = list(honest.txs)
    txs[0], txs[1] = txs[1], txs[0]  # alice#0 and bob#0 are independent: only the root can tell
    check(msgspec.structs.replace(honest, txs=txs), "tx root")


def test_swapped_tx_does_not_match_the_tx_root(honest: Block, keys: Any, make_transfer: Any, check: Any) -> None:
    txs = list(honest.txs)
    txs[1] = make_transfer(keys.bob, keys.carol, amount=201, fee=20, nonce=0)
    check(msgspec.structs.replace(honest, txs=txs), "tx root")


def test_tx_count_mismatch(honest: Block, keys: Any, check: Any) -> None:
    check(msgspec.structs.replace(honest, txs=honest.txs[:-1]), "tx count")
    check(_resign(honest, keys.authority, tx_count=4), "tx count")


def test_state_root_mismatch(honest: Block, keys: Any, check: Any) -> None:
    check(_resign(honest, keys.authority, state_root="44" * 32), "state root")


def test_state_root_of_the_previous_state(honest: Block, keys: Any, check: Any, genesis_head: BlockHeader) -> None:
    check(_resign(honest, keys.authority, state_root=genesis_head.state_root), "state root")


def test_block_carrying_a_badly_signed_tx(honest: Block, check: Any) -> None:
    txs = list(honest.txs)
    txs[0] = msgspec.structs.replace(txs[0], amount=txs[0].amount + 1)  # signature no longer matches
    check(msgspec.structs.replace(honest, txs=txs), "invalid tx")


def test_block_carrying_a_wrong_kind_signed_tx(
    keys: Any,
    make_transfer: Any,
    state: ChainState,
    genesis_head: BlockHeader,
    authorities: list[str],
    params: ChainParams,
) -> None:
    unsigned = make_transfer(keys.alice, keys.bob, sign=False)
    signature = keys.alice.sign(unsigned.chain_id, SigningKind.BLOCK, tx_signing_bytes(unsigned)).hex()
    tx = msgspec.structs.replace(unsigned, signature=signature)
    good = sign_tx(unsigned, keys.alice)
    block = _forge(state, genesis_head, [good], keys.authority)
    block = msgspec.structs.replace(block, txs=[tx])
    _rejects(block, state, genesis_head, authorities, params, "invalid tx")


@pytest.mark.parametrize(
    ("tx_args", "reason"),
    [
        ({"sender": "dave", "amount": 5}, "insufficient_balance"),
        ({"sender": "alice", "amount": 5, "nonce": 1}, "nonce_too_high"),
        ({"sender": "alice", "amount": 0}, "zero_amount"),
        ({"sender": "alice", "amount": 5, "fee": 1}, "fee_too_low"),
        ({"sender": "alice", "amount": 5, "chain_id": "other-chain"}, "wrong_chain_id"),
        ({"sender": "alice", "amount": INITIAL}, "insufficient_balance"),
    ],
)
def test_block_carrying_a_tx_that_fails_the_state_rules(
    keys: Any,
    make_transfer: Any,
    state: ChainState,
    genesis_head: BlockHeader,
    authorities: list[str],
    params: ChainParams,
    tx_args: dict[str, Any],
    reason: str,
) -> None:
    sender = getattr(keys, tx_args.pop("sender"))
    bad = make_transfer(sender, keys.bob, **tx_args)
    verify_tx(bad)  # correctly signed: only the state transition refuses it
    first = make_transfer(keys.carol, keys.bob, amount=1)
    block = _forge(state, genesis_head, [first, bad], keys.authority)
    _rejects(block, state, genesis_head, authorities, params, f"fails: {reason}")


def test_block_replaying_a_tx_inside_itself(
    keys: Any,
    make_transfer: Any,
    state: ChainState,
    genesis_head: BlockHeader,
    authorities: list[str],
    params: ChainParams,
) -> None:
    tx = make_transfer(keys.alice, keys.bob, amount=5)
    block = _forge(state, genesis_head, [tx, tx], keys.authority)
    _rejects(block, state, genesis_head, authorities, params, "nonce_too_low")


def test_block_replaying_a_committed_tx(
    genesis: Genesis, keys: Any, make_verified: Any, params: ChainParams, authorities: list[str]
) -> None:
    state = genesis_state(genesis)
    head = genesis_block(genesis, state).header
    vtx = make_verified(keys.alice, keys.bob, amount=5)
    built = build_block(state, head, [vtx], keys.authority, NOW, params)
    commit_delta(state, built.delta, built.tree)
    replay = _forge(state, built.block.header, [vtx.tx], keys.authority, time_ms=NOW + 1)
    _rejects(replay, state, built.block.header, authorities, params, "nonce_too_low")


def test_wrong_chain_id(honest: Block, keys: Any, check: Any, build: Any) -> None:
    check(_resign(honest, keys.authority, chain_id="other-chain"), "is for chain")
    # an empty block, so no tx's own chain id can give it away
    empty: Block = build([]).block
    check(_resign(empty, keys.authority, chain_id="other-chain"), "is for chain")


def test_block_over_the_tx_count_limit(
    build: Any,
    some_txs: list[VerifiedTx],
    make_state: Any,
    genesis_head: BlockHeader,
    authorities: list[str],
    params: ChainParams,
) -> None:
    block = build(some_txs).block
    _rejects(block, make_state(), genesis_head, authorities, msgspec.structs.replace(params, max_block_txs=2), "limit")


def test_block_over_the_byte_limit(
    build: Any,
    some_txs: list[VerifiedTx],
    make_state: Any,
    genesis_head: BlockHeader,
    authorities: list[str],
    params: ChainParams,
) -> None:
    """A validator enforces the same size limit a proposer builds under."""
    block = build(some_txs).block
    total = sum(v.size for v in some_txs)
    small = msgspec.structs.replace(params, max_block_bytes=total - 1)
    _rejects(block, make_state(), genesis_head, authorities, small, "bytes")
    apply_block(make_state(), genesis_head, block, authorities, msgspec.structs.replace(params, max_block_bytes=total))


# -- property: supply is conserved, fees included, and every built block validates --------------

_ACTORS = [KeyPair.from_seed(bytes([i]) * 32) for i in (1, 2, 3, 4)]  # alice, bob, carol (funded), dave (not)
_AUTHORITY = KeyPair.from_seed(bytes([0xA0]) * 32)
_ALL = [*_ACTORS, _AUTHORITY]

_steps = st.lists(
    st.tuples(
        st.integers(0, len(_ALL) - 1),  # sender (the authority earns fees and may spend them)
        st.integers(0, len(_ALL) - 1),  # recipient
        st.one_of(st.integers(0, INITIAL // 2), st.sampled_from([0, INITIAL, 2**63 - 1])),  # amount
        st.one_of(st.integers(0, 50), st.sampled_from([2**63 - 1])),  # fee (min_fee is 10)
        st.sampled_from([0, 0, 0, -1, 1]),  # nonce offset from the optimistic next nonce
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(blocks=st.lists(_steps, min_size=1, max_size=3))
def test_random_transfers_conserve_supply(
    genesis: Genesis, params: ChainParams, blocks: list[list[tuple[int, int, int, int, int]]]
) -> None:
    state, replica = genesis_state(genesis), genesis_state(genesis)
    head = genesis_block(genesis, state).header
    supply = state.total_supply()
    optimistic_nonce = {k.address: 0 for k in _ALL}
    for height, steps in enumerate(blocks, start=1):
        candidates = []
        for sender_i, recipient_i, amount, fee, offset in steps:
            sender = _ALL[sender_i]
            nonce = max(0, optimistic_nonce[sender.address] + offset)
            optimistic_nonce[sender.address] += 1
            tx = Transfer(
                chain_id=genesis.chain_id,
                sender=sender.address,
                nonce=nonce,
                fee=fee,
                recipient=_ALL[recipient_i].address,
                amount=amount,
            )
            candidates.append(verify_tx(sign_tx(tx, sender)))
        proposer_before = state.get_account(_AUTHORITY.address).balance
        built = build_block(state, head, candidates, _AUTHORITY, NOW + height, params)
        assert len(built.included) + len(built.dropped) == len(candidates)
        applied = apply_block(replica, head, built.block, list(genesis.authorities), params)
        assert applied.block.header.state_root == built.block.header.state_root
        commit_delta(state, built.delta, built.tree)
        commit_delta(replica, applied.delta, applied.tree)
        # the sum of all balances, fees included, never changes
        assert state.total_supply() == supply
        assert replica.accounts == state.accounts
        # the proposer gains exactly the included fees, net of what it moved itself
        moved_by_proposer = sum(
            v.tx.amount + v.tx.fee for v in built.included if v.tx.sender == _AUTHORITY.address
        ) - sum(v.tx.amount for v in built.included if v.tx.recipient == _AUTHORITY.address)
        fees = sum(v.tx.fee for v in built.included)
        assert state.get_account(_AUTHORITY.address).balance == proposer_before + fees - moved_by_proposer
        head = built.block.header


def test_state_root_from_scratch_matches_incremental(
    genesis: Genesis, keys: Any, make_verified: Any, params: ChainParams
) -> None:
    state = genesis_state(genesis)
    head = genesis_block(genesis, state).header
    txs = [
        make_verified(keys.alice, keys.dave, amount=9, nonce=0),
        make_verified(keys.bob, keys.alice, amount=3, nonce=0),
    ]
    built = build_block(state, head, txs, keys.authority, NOW, params)
    delta = StateDelta(base=state)
    for v in txs:
        process_tx(delta, v.tx, tx_context(keys.authority.address, genesis.chain_id, params))
    root, _ = compute_state_root(state, delta)
    assert root == built.block.header.state_root
    merged = {**state.accounts, **built.delta.accounts}
    assert ChainState.from_accounts(merged).state_root == root


def test_dropped_reasons_are_tx_rejections(build: Any, keys: Any, make_verified: Any) -> None:
    built = build([make_verified(keys.dave, keys.alice, amount=1)])
    ((_, exc),) = built.dropped
    assert exc.rejection is TxRejection.INSUFFICIENT_BALANCE


# -- issue 13 ---------------------------------------------------------------------------------


def test_item1_block_times_outside_the_codec_range_or_ahead_of_the_clock_are_refused(
    build: Any,
    make_state: Callable[[], ChainState],
    genesis_head: BlockHeader,
    authorities: list[str],
    params: ChainParams,
    keys: Any,
) -> None:
    """Issue 13 item 1: a header dated 2^63-1 neither decodes nor validates (so the next block's time always
    fits the codec), and a proposal dated beyond the validator's clock + drift is invalid."""
    from aitbc.chain.block import verify_block_time
    from aitbc.protocol import codec
    from aitbc.protocol.errors import EncodingError
    from aitbc.protocol.types import MAX_TIME_MS, MAX_U64

    block = build([]).block
    far = _resign(block, keys.authority, time_ms=MAX_U64)
    _rejects(far, make_state(), genesis_head, authorities, params, "outside the codec's range")
    raw = bytearray(codec.encode(block.header))
    encoded_time = NOW.to_bytes(8, "big")
    at = raw.index(encoded_time)
    raw[at : at + 8] = MAX_U64.to_bytes(8, "big")
    with pytest.raises(EncodingError):
        codec.decode(BlockHeader, bytes(raw))
    assert MAX_TIME_MS + 1 <= MAX_U64  # the successor of the latest valid time still encodes
    ten_years = 10 * 365 * 24 * 3600 * 1000
    verify_block_time(block.header, NOW, 5_000)
    with pytest.raises(InvalidBlock, match="ahead of our clock"):
        verify_block_time(_resign(block, keys.authority, time_ms=NOW + ten_years).header, NOW, 5_000)


def test_item3_the_block_hash_covers_last_commit(
    build: Any,
    make_state: Callable[[], ChainState],
    genesis_head: BlockHeader,
    authorities: list[str],
    params: ChainParams,
    keys: Any,
) -> None:
    """Issue 13 item 3: a copy of a block whose ``last_commit`` was swapped on the way is not the block the
    proposer signed: its header no longer matches (the relay is found out before the block is executed)."""
    from aitbc.protocol.block import compute_last_commit_hash, get_block_tamper_problem
    from aitbc.protocol.vote import CommitCertificate

    block = build([]).block
    assert block.header.last_commit_hash == compute_last_commit_hash(None)
    swapped = msgspec.structs.replace(
        block,
        last_commit=CommitCertificate(
            chain_id=block.header.chain_id, height=0, round=0, block_hash=block_hash(genesis_head), signatures=[]
        ),
    )
    assert get_block_tamper_problem(block) is None
    assert get_block_tamper_problem(swapped) == "last_commit is not the one the header commits to"
    _rejects(swapped, make_state(), genesis_head, authorities, params, "last_commit_hash")
