"""Block sync between BFT nodes: committed blocks with the certificates that finalized them.

A node that is behind asks a peer for the blocks after its head; the peer
answers with up to ``SYNC_BATCH`` of them, read through its ``HeadView`` (only
blocks it has made its head). The receiver checks each block's commit
certificate against the validator set in force (more than 2/3 of the power)
and the block itself against its head, then commits it like a decided one; a
block that does not verify ends the batch and costs the sender
``BAD_SYNC_BLOCK_PENALTY``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from aitbc.chain.block import BlockOutcome, apply_block
from aitbc.consensus.proposer import get_proposer
from aitbc.node.p2p_messages import CommittedBlock, SyncBlocks
from aitbc.node.service import NodeService
from aitbc.protocol.block import block_hash
from aitbc.protocol.errors import InvalidBlock
from aitbc.protocol.vote import verify_commit

SYNC_BATCH: Final = 20
SYNC_BACKLOG: Final = 256
"""A peer with more frames than this waiting in its send queue is not served sync batches now."""
BAD_SYNC_BLOCK_PENALTY: Final = 20
"""What a peer loses for a sync block that does not verify (as for an invalid proposal)."""


def get_sync_batch(node: NodeService, from_height: int) -> list[CommittedBlock]:
    """Our committed blocks from ``from_height`` on (at most ``SYNC_BATCH``), each with its certificate."""
    view = node.view
    blocks: list[CommittedBlock] = []
    for height in range(max(1, from_height), min(view.height, from_height + SYNC_BATCH - 1) + 1):
        block, commit = view.block_by_height(height), view.commit_by_height(height)
        if block is None or commit is None:
            break
        blocks.append(CommittedBlock(block, commit))
    return blocks


async def commit_synced_blocks(
    node: NodeService, message: SyncBlocks, outcomes: Mapping[str, BlockOutcome]
) -> tuple[int, str | None]:
    """Verify and commit the blocks that extend our head, in order, up to the first that does not verify;
    returns (how many were committed, why the next one was refused or None).

    ``outcomes``: blocks of the current height this node already executed (a proposal it saw)."""
    applied = 0
    for item in message.blocks:
        header = item.block.header
        if header.height != node.head.height + 1:
            continue
        powers = node.get_validator_powers()
        hash_ = block_hash(header)
        try:
            verify_commit(item.commit, node.chain_id, header.height, hash_, powers)
            outcome = (outcomes.get(hash_) if applied == 0 else None) or apply_block(
                node.state,
                node.head,
                item.block,
                node.genesis.authorities,
                node.genesis.params,
                expected_proposer=get_proposer(powers, header.height, item.commit.round),
            )
        except InvalidBlock as exc:
            return applied, f"sync block {header.height}: {exc.message}"
        await node.commit_outcome(outcome, item.commit)
        applied += 1
    return applied, None
