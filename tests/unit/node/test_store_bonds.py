"""Bonds survive a restart: the store keeps them as rows written per change, and a node reopened on its
data dir rebuilds the same staking state and state root (a block's ``delta.staking`` does not carry the
bonds; before this, a delegation made the node refuse its own data dir)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aitbc.chain.genesis import Genesis, GenesisBalance
from aitbc.chain.params import ChainParams
from aitbc.chain.validators import StakingParams
from aitbc.node.metrics import NodeMetrics
from aitbc.node.service import NodeService
from aitbc.node.store import NodeStore
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.tx import Delegate, Tx, Unstake, sign_tx, verify_tx

CHAIN = "aitbc-store-bonds"
AUTHORITY = KeyPair.from_seed(b"\x21" * 32)
ALICE = KeyPair.from_seed(b"\x22" * 32)
BOB = KeyPair.from_seed(b"\x23" * 32)
PARAMS = ChainParams(staking=StakingParams())
GENESIS = Genesis(
    chain_id=CHAIN,
    genesis_time_ms=1_700_000_000_000,
    authorities=[AUTHORITY.address],
    balances=[GenesisBalance(ALICE.address, 10**15), GenesisBalance(BOB.address, 10**15)],
    params=PARAMS,
)


def _block(node: NodeService, txs: list[Tx]) -> None:
    for tx in txs:
        vtx = verify_tx(tx)
        node.mempool.admit(vtx, node.state.get_account(tx.sender))
    outcome = asyncio.run(node.produce_block())
    assert len(outcome.included) == len(txs), [exc.reason for _, exc in outcome.dropped]


def test_bonds_written_by_blocks_are_there_after_a_restart(tmp_path: Path) -> None:
    amount = PARAMS.staking.min_delegation
    node = NodeService(GENESIS, NodeStore(tmp_path / "chain.db"), AUTHORITY, NodeMetrics())
    try:
        delegate = [
            sign_tx(
                Delegate(
                    chain_id=CHAIN, sender=k.address, nonce=0, fee=PARAMS.min_fee, validator=AUTHORITY.address, amount=n
                ),
                k,
            )
            for k, n in ((ALICE, 3 * amount), (BOB, amount))
        ]
        _block(node, delegate)
        # Bob's bond leaves entirely (its row goes), Alice's shrinks
        unstake = [
            sign_tx(
                Unstake(
                    chain_id=CHAIN, sender=k.address, nonce=1, fee=PARAMS.min_fee, validator=AUTHORITY.address, amount=n
                ),
                k,
            )
            for k, n in ((ALICE, amount), (BOB, amount))
        ]
        _block(node, unstake)
        staking, root, height = node.state.staking, node.state.state_root, node.head.height
        assert [(b.delegator, b.amount) for b in staking.bonds] == [(ALICE.address, 2 * amount)]
    finally:
        node.close()

    again = NodeService(GENESIS, NodeStore(tmp_path / "chain.db"), AUTHORITY, NodeMetrics())
    try:
        assert again.head.height == height
        assert again.state.state_root == root
        assert again.state.staking == staking
        assert again.state.bonds.get(AUTHORITY.address, ALICE.address) == 2 * amount
    finally:
        again.close()
