"""A rule context for unit tests that run single txs outside a block."""

from __future__ import annotations

from aitbc.chain.context import BlockContext, TxContext
from aitbc.chain.params import ChainParams


def tx_context(
    proposer: str, chain_id: str, params: ChainParams, height: int = 1, tx_hash: str = "", index: int = 0
) -> TxContext:
    """The context of tx ``index`` (hash ``tx_hash``) in a block at ``height`` that ``proposer`` proposes."""
    block = BlockContext(
        chain_id=chain_id, height=height, time_ms=height * 1000, proposer=proposer, params=params, prev_hash=""
    )
    return block.tx(tx_hash, index)
