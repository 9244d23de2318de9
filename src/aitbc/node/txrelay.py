"""Tx gossip between BFT nodes: admit what peers send, relay what this node admitted.

A tx a peer sends is admitted like a submitted one (signature checked, mempool
rules); what was admitted goes on to the other peers at once. Txs clients
submit here are batched and flushed every ``TX_FLUSH_SECONDS``. An honest node
relays only txs whose signatures it checked, so txs that fail those checks
cost the sender score.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aitbc.node.p2p import P2PNode, Peer, PeerMisbehaved
from aitbc.node.p2p_messages import TxGossip
from aitbc.node.service import NodeService
from aitbc.protocol.errors import TxRejection
from aitbc.protocol.tx import Tx, VerifiedTx, tx_hash

TX_FLUSH_SECONDS: Final = 0.01
TX_BATCH: Final = 2_000
BAD_TX_PENALTY: Final = 10
MAX_BAD_TX_PENALTY: Final = 50


class TxRelay:
    def __init__(self, node: NodeService, p2p: P2PNode) -> None:
        self.node = node
        self.p2p = p2p
        self.out: list[Tx] = []
        """Txs admitted from clients, waiting for the next flush."""
        self._source: Peer | None = None
        node.on_admitted = self.on_admitted

    async def on_txs(self, peer: Peer, txs: list[Tx]) -> None:
        """Txs a peer gossiped: admit the ones not seen yet; penalise the peer for forged ones."""
        fresh = [tx for tx in txs if self.p2p.is_new(bytes.fromhex(tx_hash(tx)))]
        if not fresh:
            return
        self._source = peer
        try:
            results = await self.node.submit_txs(fresh)
        finally:
            self._source = None
        forged = sum(
            1
            for r in results
            if r.error is not None and r.error.reason in (TxRejection.BAD_SIGNATURE, TxRejection.MALFORMED)
        )
        if forged:
            raise PeerMisbehaved(min(MAX_BAD_TX_PENALTY, BAD_TX_PENALTY * forged), f"{forged} txs fail their checks")

    def on_admitted(self, admitted: list[VerifiedTx]) -> None:
        """The node admitted txs: relay a peer's at once (to the others), queue a client's for the flush."""
        for vtx in admitted:
            self.p2p.is_new(bytes.fromhex(vtx.hash))
        if self._source is not None:
            self.p2p.broadcast(TxGossip([v.tx for v in admitted]), exclude=self._source)
            return
        self.out.extend(v.tx for v in admitted)

    async def flush_loop(self) -> None:
        while True:
            await asyncio.sleep(TX_FLUSH_SECONDS)
            while self.out:
                batch, self.out = self.out[:TX_BATCH], self.out[TX_BATCH:]
                self.p2p.broadcast(TxGossip(batch))
