"""Settling completed deposit jobs in ``settle_batch`` txs, crash-safe.

Each round (run by the ``PaymentWorker``, which owns the coordinator key's nonce):

1. deposit jobs that ended without a result are marked ``released`` (nothing to pay);
2. batches are pipelined: a new one may go while earlier ones wait for their block (the next
   nonce), but at most one per ``BATCH_INTERVAL_SECONDS`` and at most ``MAX_INFLIGHT`` waiting, so
   a finished job waits for the next block rather than for the block after the previous batch's
   (a batch holds up to ``max_batch_entries`` jobs, so a busy coordinator is not slowed);
3. completed jobs not in a batch yet are taken oldest first; those past their expiry height
   are marked ``batch_refused`` (the chain would refuse them); the rest become one batch, whose
   **intent** is written first (``batching`` + the tx hash) and the tx sent after;
4. a batch not seen on chain after ``retry_seconds`` (lost in a crash, or dropped) has its jobs
   put back to ``reserved``: they go into a new batch. The chain pays a job id at most once, so a
   replay of a batch that did commit pays nothing (``already_paid``) — never twice.

The chain's answer comes through the payment worker's event follower: ``settled`` events close
the jobs (the shared escrow path writes them), ``settle_rejected`` events (``on_events``) mark
``batch_refused`` with the chain's reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from aitbc.coordinator.db.deposit_repo import DepositRepo
from aitbc.coordinator.db.payment_records import DueSettlement
from aitbc.coordinator.db.repo import CoordinatorRepo
from aitbc.coordinator.deposits import DepositBook
from aitbc.coordinator.metrics import CoordinatorMetrics
from aitbc.coordinator.payments import ChainLink
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.deposit import SettlementEntry, get_job_expiry
from aitbc.protocol.errors import RemoteError
from aitbc.protocol.tx import SettleBatch, sign_tx, tx_hash, tx_to_json_obj

log = logging.getLogger("aitbc.coordinator.settlement")

REFRESH_SECONDS: Final = 1.0
"""How often the deposits are read back from the chain when no batch commits (top-ups, withdrawals)."""
EXPIRY_MARGIN_BLOCKS: Final = 2
BATCH_INTERVAL_SECONDS: Final = 0.25
"""Least time between two batches sent (a few per block at most)."""
MAX_INFLIGHT: Final = 8
"""Most batches sent and not yet seen committed."""
"""A job this close to its expiry is not batched any more: the batch could commit after it."""


def now_ms() -> int:
    return int(time.time() * 1000)


def plan_batch(due: Sequence[DueSettlement], head: int) -> tuple[list[tuple[str, SettlementEntry]], list[str]]:
    """The entries of a batch from completed jobs (job id, entry), and the jobs too near their expiry at
    head height ``head`` to be batched any more (the chain would refuse them)."""
    planned: list[tuple[str, SettlementEntry]] = []
    expired: list[str] = []
    for job in due:
        expires = get_job_expiry(job.id)
        if expires is None or expires < head + EXPIRY_MARGIN_BLOCKS:
            expired.append(job.id)
            continue
        entry = (
            SettlementEntry(deposit_id=job.deposit_id, receipt=job.receipt)
            if job.client_signature is None  # delegated: the coordinator's word (the tx signature) and the cap
            else SettlementEntry(
                deposit_id=job.deposit_id,
                receipt=job.receipt,
                max_price=job.max_price or 0,
                client_signature=job.client_signature,
            )
        )
        planned.append((job.id, entry))
    return planned, expired


class DepositSettler:
    def __init__(
        self,
        link: ChainLink,
        key: KeyPair,
        repo: CoordinatorRepo,
        deposit_repo: DepositRepo,
        book: DepositBook,
        metrics: CoordinatorMetrics,
        read: Callable[..., Awaitable[Any]],
        write: Callable[..., Awaitable[Any]],
        *,
        retry_seconds: float = 10.0,
    ) -> None:
        self.link = link
        self.key = key
        self.repo = repo
        self.deposit_repo = deposit_repo
        self.book = book
        self.metrics = metrics
        self._read = read
        self._write = write
        self._retry_ms = int(retry_seconds * 1000)
        self._last_refresh = 0.0
        self.inflight: list[str] = []
        """Batches sent and not yet seen committed, oldest first."""
        self._last_sent = 0.0
        self.batches_sent = 0

    async def run_once(
        self, reserve_nonce: Callable[[], Awaitable[int]], set_next_nonce: Callable[[int | None], None]
    ) -> None:
        """One round (module docstring); the nonce comes from the payment worker, which sends escrow txs too."""
        now = now_ms()
        if self.book.unpaid_finished:  # mark ``released`` the jobs that ended without a result (one write)
            self.book.unpaid_finished = False
            for job_id in await self._write(self.deposit_repo.release_unpaid, now):
                self.book.cancel_reservation(job_id)
        if self.inflight:
            statuses = await self.link.call(self.link.node.batch, [("get_tx_status", [h]) for h in self.inflight])
            states = [None if isinstance(s, RemoteError) else s.get("status") for s in statuses]
            if any(state not in ("pending", "committed") for state in states):
                set_next_nonce(None)  # a lost batch may have left a gap (its jobs come back in ``_retry_lost``)
            waiting = [h for h, state in zip(self.inflight, states, strict=True) if state == "pending"]
            if len(waiting) < len(self.inflight):
                await self.book.refresh()
            self.inflight = waiting
            if len(waiting) >= MAX_INFLIGHT or time.monotonic() - self._last_sent < BATCH_INTERVAL_SECONDS:
                return
        if time.monotonic() - self._last_refresh > REFRESH_SECONDS:  # top-ups, withdrawals, a new period
            self._last_refresh = time.monotonic()
            await self.book.refresh()
        await self._retry_lost(now, set_next_nonce)
        info = await self.link.get_info()
        due = await self._read(self.deposit_repo.jobs_due_for_batch, info.params.max_batch_entries)
        if not due:
            return
        nonce = await reserve_nonce()
        # The receipts' decoding and the batch's encoding and signature run off the event loop (a batch of
        # hundreds of jobs would hold it for tens of milliseconds); the books are changed here, on it.
        planned, expired = await asyncio.to_thread(plan_batch, due, self.book.head_height)
        too_late: list[tuple[str, Sequence[str], dict[str, Any]]] = []
        for job_id in expired:
            too_late.append(
                (
                    job_id,
                    ["reserved"],
                    {"payment_state": "batch_refused", "payment_error": "expired: not batched in time"},
                )
            )
            self.book.on_refused(job_id)
        if too_late:
            await self._write(self.repo.set_payment_states, too_late)
        if not planned:
            return
        batched = [job_id for job_id, _ in planned]
        entries = [entry for _, entry in planned]
        for job_id, entry in planned:
            self.book.on_batched(job_id, entry.receipt.total_price, info.params)
        batch = SettleBatch(
            chain_id=info.chain_id, sender=self.key.address, nonce=nonce, fee=info.params.min_fee, entries=entries
        )
        hash_, tx_json = await asyncio.to_thread(self._sign, batch)
        # Intent first (one statement): a crash after this write finds the jobs in ``batching`` and checks the tx.
        if await self._write(self.deposit_repo.mark_batching, batched, hash_, now) != len(batched):
            log.warning("batch intents did not all match; sending none", extra={"tx": hash_})
            await self._write(self.deposit_repo.unmark_batching, hash_, None)
            return
        set_next_nonce(nonce + 1)
        try:
            await self.link.call(self.link.node.call, "send_tx", tx_json)
        except RemoteError as exc:
            log.warning("settle batch refused", extra={"tx": hash_, "reason": exc.reason, "error": str(exc)})
            set_next_nonce(None)
            await self._write(self.deposit_repo.unmark_batching, hash_, f"{exc.reason}: {exc}")
            return
        self.inflight.append(hash_)
        self._last_sent = time.monotonic()
        self.batches_sent += 1
        self.metrics.payments_sent.labels("settle_batch").inc()
        log.info("settle batch sent", extra={"tx": hash_, "jobs": len(entries)})

    def on_takeover(self) -> None:
        """This replica settles from now on (another one stopped): batches it did not send are found through
        the database (``_retry_lost``), and the unpaid jobs marked."""
        self.inflight = []
        self._last_refresh = 0.0
        self.book.unpaid_finished = True

    def _sign(self, batch: SettleBatch) -> tuple[str, dict[str, Any]]:
        tx = sign_tx(batch, self.key)
        return tx_hash(tx), tx_to_json_obj(tx)

    async def _retry_lost(self, now: int, set_next_nonce: Callable[[int | None], None]) -> None:
        """Batches sent long ago and never committed: their jobs go back to ``reserved`` (rebatched)."""
        stale = await self._read(self.deposit_repo.batches_to_check, now - self._retry_ms)
        if not stale:
            return
        hashes = list(stale)
        statuses = await self.link.call(self.link.node.batch, [("get_tx_status", [h]) for h in hashes])
        back: list[tuple[str, Sequence[str], dict[str, Any]]] = []
        for hash_, status in zip(hashes, statuses, strict=True):
            state = None if isinstance(status, RemoteError) else status.get("status")
            if state in ("pending", "committed"):
                continue  # in a block or on its way: the follower will see it
            back += [(j, ["batching"], {"payment_state": "reserved", "payment_updated_ms": now}) for j in stale[hash_]]
        if back:
            log.warning("settle batches lost; their jobs are batched again", extra={"jobs": len(back)})
            set_next_nonce(None)
            await self._write(self.repo.set_payment_states, back)

    async def on_events(self, events: Sequence[dict[str, Any]]) -> None:
        """The chain's answer to our batches: settled jobs leave the books, refused entries are recorded."""
        refused: list[tuple[str, Sequence[str], dict[str, Any]]] = []
        for event in events:
            if event.get("coordinator") != self.key.address or not event.get("deposit_id"):
                continue
            if event["kind"] == "settled":
                self.book.on_settled(event["job_id"], int(event["height"]))
            elif event["kind"] == "settle_rejected":
                self.book.on_refused(event["job_id"])
                self.metrics.payments_refused.labels(event["reason"].split(":")[0]).inc()
                refused.append(
                    (
                        event["job_id"],
                        ["batching"],
                        {
                            "payment_state": "batch_refused",
                            "payment_error": event["reason"],
                            "payment_updated_ms": now_ms(),
                        },
                    )
                )
        if refused:
            await self._write(self.repo.set_payment_states, refused)
