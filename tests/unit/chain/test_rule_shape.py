"""The shape of the chain rules: one tx-kind table covering the whole ``Tx`` union, blocks validated
before they are executed, slashing built on the jail rule, the block context reaching every rule."""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest

from aitbc.chain.block import apply_block, build_block, verify_block_body, verify_block_header
from aitbc.chain.genesis import Genesis
from aitbc.chain.params import ChainParams
from aitbc.chain.state import ChainState, StateDelta
from aitbc.chain.tx_rules import TX_KINDS, process_tx
from aitbc.chain.validators import Bond, StakingParams, StakingState, process_jail, process_slash
from aitbc.protocol.block import BlockHeader, sign_header
from aitbc.protocol.errors import InvalidBlock, InvalidTx, TxRejection
from aitbc.protocol.tx import OpenEscrow, Transfer, Tx, sign_tx, verify_tx
from support.chain import tx_context

NOW = 1_700_000_100_000


def test_every_tx_kind_of_the_union_has_exactly_one_table_entry() -> None:
    union = set(typing.get_args(Tx))
    assert union == set(TX_KINDS), "add the kind to TX_KINDS (aitbc.chain.tx_rules) and its rule module"


def test_a_kind_missing_from_the_table_is_refused_before_any_check(
    state: ChainState, keys: Any, make_transfer: Any, chain_id: str, params: ChainParams, monkeypatch: Any
) -> None:
    tx = make_transfer(keys.alice, keys.bob, amount=5)
    monkeypatch.delitem(TX_KINDS, type(tx))
    delta = StateDelta(base=state)
    with pytest.raises(InvalidTx) as info:
        process_tx(delta, tx, tx_context(keys.authority.address, chain_id, params))
    assert info.value.rejection == TxRejection.UNKNOWN_TX_TYPE and delta.accounts == {}


def test_the_context_reaches_the_rules(
    genesis: Genesis, make_state: Any, genesis_head: BlockHeader, keys: Any, params: ChainParams
) -> None:
    """An escrow opened in a block records that block's height, and its event the tx's hash."""
    state = make_state()
    transfer = verify_tx(sign_tx(_transfer(keys, genesis.chain_id), keys.alice))
    escrow_tx = verify_tx(
        sign_tx(
            OpenEscrow(
                chain_id=genesis.chain_id,
                sender=keys.alice.address,
                nonce=1,
                fee=10,
                job_id="job_ctx",
                coordinator=keys.bob.address,
                amount=1_000,
                deadline_height=9,
            ),
            keys.alice,
        )
    )
    outcome = build_block(state, genesis_head, [transfer, escrow_tx], keys.authority, NOW, params)
    assert outcome.included == [transfer, escrow_tx]
    escrow = outcome.delta.get_escrow("job_ctx")
    assert escrow is not None and escrow.opened_height == genesis_head.height + 1
    assert [(e.kind, e.tx_hash) for e in outcome.delta.events] == [("escrow_opened", escrow_tx.hash)]


def _transfer(keys: Any, chain_id: str) -> Tx:
    return Transfer(chain_id=chain_id, sender=keys.alice.address, nonce=0, fee=10, recipient=keys.bob.address, amount=7)


def test_validation_is_separate_from_execution(
    make_state: Any, genesis_head: BlockHeader, keys: Any, make_verified: Any, params: ChainParams
) -> None:
    """A block whose header and body are sound passes validation without running a tx; only
    execution finds that its state root is wrong."""
    state = make_state()
    built = build_block(
        state, genesis_head, [make_verified(keys.alice, keys.bob, amount=3)], keys.authority, NOW, params
    )
    header = msgspec.structs.replace(built.block.header, state_root="00" * 32)
    forged = msgspec.structs.replace(built.block, header=header, proposer_signature=sign_header(header, keys.authority))
    authorities = [keys.authority.address]
    verify_block_header(genesis_head, forged, authorities)
    assert [v.hash for v in verify_block_body(forged, params)] == [v.hash for v in built.included]
    assert state.get_account(keys.alice.address).nonce == 0  # validation executed nothing
    with pytest.raises(InvalidBlock, match="state root"):
        apply_block(state, genesis_head, forged, authorities, params)
    # the header checks refuse a block by someone else before its body or txs are looked at
    with pytest.raises(InvalidBlock, match="proposer"):
        verify_block_header(genesis_head, forged, [keys.bob.address])


def test_slashing_is_the_jail_rule_plus_the_burn() -> None:
    rules = StakingParams(slash_double_sign_bps=1_000, jail_blocks=50)
    authorities = ("ait1a", "ait1b", "ait1c")
    staking = StakingState(bonds=[Bond("ait1a", "ait1a", 1_000), Bond("ait1a", "ait1d", 500)])
    slashed, burned = process_slash(staking, "ait1a", 7, authorities, rules)
    jailed = process_jail(staking, "ait1a", 7, authorities, rules)
    assert burned == 150 and slashed.burned == 150
    assert slashed.jailed == jailed.jailed and slashed.active == jailed.active
    assert [b.amount for b in slashed.bonds] == [900, 450]
