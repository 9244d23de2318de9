"""The mempool: which verified txs wait for a block, and in what order they leave.

Pure: no clock, no I/O. The node shell checks signatures (``verify_tx``, in
worker threads) and hands over ``VerifiedTx`` values plus the sender's
committed account; every refusal raises ``MempoolRejected`` with a stable
reason string.

Ordering: a sender's txs leave strictly in nonce order, starting at its
committed nonce with no gaps; across senders the higher fee goes first, ties
by arrival. When full, a tx paying more than the cheapest evictable tx (the
last nonce of some sender, so no gap is ever created) takes its place.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aitbc.chain.entries import Account
from aitbc.chain.params import ChainParams
from aitbc.chain.tx_rules import check_tx_stateless, compute_tx_cost
from aitbc.protocol.errors import InvalidTx, MempoolRejected, TxRejection
from aitbc.protocol.tx import SettleBatch, VerifiedTx


@dataclass(slots=True)
class _Entry:
    vtx: VerifiedTx
    seq: int


@dataclass(slots=True)
class _SenderQueue:
    committed_nonce: int
    balance: int
    by_nonce: dict[int, _Entry] = field(default_factory=dict)
    pending_cost: int = 0


class Mempool:
    def __init__(self, chain_id: str, params: ChainParams) -> None:
        self.chain_id = chain_id
        self.params = params
        self._senders: dict[str, _SenderQueue] = {}
        self._by_hash: dict[str, VerifiedTx] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: str) -> bool:
        return tx_hash in self._by_hash

    def get(self, tx_hash: str) -> VerifiedTx | None:
        return self._by_hash.get(tx_hash)

    def pending_nonce(self, sender: str, committed_nonce: int) -> int:
        """The next nonce a sender should use, counting its contiguous pending txs."""
        queue = self._senders.get(sender)
        nonce = committed_nonce
        if queue is None:
            return nonce
        while nonce in queue.by_nonce:
            nonce += 1
        return nonce

    def admit(self, vtx: VerifiedTx, account: Account) -> list[VerifiedTx]:
        """Add a tx; return the txs it displaced (replaced or evicted). Raise ``MempoolRejected``."""
        tx = vtx.tx
        # Verify it is not already here
        if vtx.hash in self._by_hash:
            raise MempoolRejected(TxRejection.DUPLICATE, "tx is already in the mempool")
        # Verify size, chain id, fee floor and amounts
        limit = self.params.max_batch_tx_bytes if isinstance(tx, SettleBatch) else self.params.max_tx_bytes
        if vtx.size > limit:
            raise MempoolRejected(TxRejection.TX_TOO_LARGE, f"tx is {vtx.size} bytes; the limit is {limit}")
        try:
            check_tx_stateless(tx, self.chain_id, self.params)
        except InvalidTx as exc:
            raise MempoolRejected(exc.rejection, exc.message) from None
        # Verify the nonce is inside the sender's window
        if tx.nonce < account.nonce:
            raise MempoolRejected(TxRejection.NONCE_TOO_LOW, f"nonce {tx.nonce} already used; next is {account.nonce}")
        if tx.nonce >= account.nonce + self.params.mempool_nonce_window:
            raise MempoolRejected(
                TxRejection.NONCE_TOO_HIGH,
                f"nonce {tx.nonce} is more than {self.params.mempool_nonce_window} ahead of {account.nonce}",
            )
        queue = self._senders.get(tx.sender)
        if queue is None:
            queue = _SenderQueue(committed_nonce=account.nonce, balance=account.balance)
        else:
            queue.committed_nonce, queue.balance = account.nonce, account.balance
        replaced = queue.by_nonce.get(tx.nonce)
        # Verify a same-nonce replacement pays strictly more
        if replaced is not None and tx.fee <= replaced.vtx.tx.fee:
            raise MempoolRejected(
                TxRejection.REPLACEMENT_UNDERPRICED,
                f"a tx with nonce {tx.nonce} is pending with fee {replaced.vtx.tx.fee}; pay more to replace it",
            )
        # Verify the balance covers this and every other pending tx of the sender
        cost = compute_tx_cost(tx)
        pending_cost = queue.pending_cost - (compute_tx_cost(replaced.vtx.tx) if replaced else 0)
        if pending_cost + cost > account.balance:
            raise MempoolRejected(
                TxRejection.INSUFFICIENT_BALANCE,
                f"balance {account.balance} does not cover this tx ({cost}) plus pending txs ({pending_cost})",
            )
        # Verify per-sender and global bounds (evicting a cheaper tx if full)
        if replaced is None and len(queue.by_nonce) >= self.params.mempool_max_per_sender:
            raise MempoolRejected(TxRejection.SENDER_LIMIT, "too many pending txs from this sender")
        displaced: list[VerifiedTx] = []
        if replaced is None and len(self._by_hash) >= self.params.mempool_max_txs:
            victim = self._cheapest_evictable(exclude_sender=tx.sender)
            if victim is None or victim.tx.fee >= tx.fee:
                raise MempoolRejected(TxRejection.MEMPOOL_FULL, "mempool is full; a higher fee may get in")
            self._remove(victim)
            displaced.append(victim)

        if replaced is not None:
            # (before re-registering the queue: removing a sender's only tx drops its queue)
            self._remove(replaced.vtx)
            displaced.append(replaced.vtx)
        self._senders[tx.sender] = queue
        self._seq += 1
        queue.by_nonce[tx.nonce] = _Entry(vtx, self._seq)
        queue.pending_cost += cost
        self._by_hash[vtx.hash] = vtx
        return displaced

    def _cheapest_evictable(self, exclude_sender: str) -> VerifiedTx | None:
        # O(senders), only on the rare full-pool path.
        best: VerifiedTx | None = None
        for sender, queue in self._senders.items():
            if sender == exclude_sender or not queue.by_nonce:
                continue
            last = queue.by_nonce[max(queue.by_nonce)].vtx
            if best is None or last.tx.fee < best.tx.fee:
                best = last
        return best

    def _remove(self, vtx: VerifiedTx) -> None:
        queue = self._senders[vtx.tx.sender]
        entry = queue.by_nonce.get(vtx.tx.nonce)
        if entry is None or entry.vtx.hash != vtx.hash:
            return
        del queue.by_nonce[vtx.tx.nonce]
        queue.pending_cost -= compute_tx_cost(vtx.tx)
        del self._by_hash[vtx.hash]
        if not queue.by_nonce:
            del self._senders[vtx.tx.sender]

    def reap(self, max_txs: int, max_bytes: int) -> list[VerifiedTx]:
        """Txs for the next block: executable (gap-free from the committed nonce), best fee first."""
        heap: list[tuple[int, int, str, int]] = []
        for sender, queue in self._senders.items():
            entry = queue.by_nonce.get(queue.committed_nonce)
            if entry is not None:
                heap.append((-entry.vtx.tx.fee, entry.seq, sender, queue.committed_nonce))
        heapq.heapify(heap)
        out: list[VerifiedTx] = []
        size = 0
        while heap and len(out) < max_txs:
            _, _, sender, nonce = heapq.heappop(heap)
            vtx = self._senders[sender].by_nonce[nonce].vtx
            if size + vtx.size > max_bytes:
                break
            out.append(vtx)
            size += vtx.size
            nxt = self._senders[sender].by_nonce.get(nonce + 1)
            if nxt is not None:
                heapq.heappush(heap, (-nxt.vtx.tx.fee, nxt.seq, sender, nonce + 1))
        return out

    def update(
        self,
        committed: Iterable[VerifiedTx],
        dropped: Iterable[VerifiedTx],
        get_account: Callable[[str], Account],
    ) -> list[VerifiedTx]:
        """After a block: remove what it included or refused, and anything its nonces made stale.

        Returns the stale txs removed (their nonce was used by another tx)."""
        touched: set[str] = set()
        for vtx in (*committed, *dropped):
            if vtx.hash in self._by_hash:
                self._remove(vtx)
            touched.add(vtx.tx.sender)
        stale: list[VerifiedTx] = []
        for sender in touched:
            queue = self._senders.get(sender)
            account = get_account(sender)
            if queue is None:
                continue
            queue.committed_nonce, queue.balance = account.nonce, account.balance
            for nonce in [n for n in queue.by_nonce if n < account.nonce]:
                vtx = queue.by_nonce[nonce].vtx
                stale.append(vtx)
                self._remove(vtx)
        return stale
