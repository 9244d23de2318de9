"""Paying for jobs on chain: the coordinator's side of escrow, settlement and refund.

- At submission, ``check_escrow`` reads the job's escrow from the node: a paid job is dispatched only
  once its escrow is committed, names this coordinator and the API key's client, and covers the price.
- When a job finishes, ``PaymentWorker`` sends ``settle_job`` (completed: the countersigned receipt) or
  ``refund_escrow`` (failed, cancelled, expired). It writes its intent (payment state + tx hash) before
  sending, so a crash between the two is retried, never forgotten; a tx not seen on chain in time is
  checked and sent again (the chain refuses a second settle, so a retry cannot pay twice).
- ``ChainFollower`` reads the chain's job events for this coordinator from a cursor stored with the
  jobs (``get_job_events``): the job's payment state becomes what the chain says — settled, or refunded
  (also when the chain refunded by itself at the deadline) — across restarts too.

The node is called through the synchronous ``NodeClient`` on one thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, Protocol, TypeVar

import msgspec

from aitbc.chain.entries import Escrow, EscrowState
from aitbc.chain.escrow import compute_escrow_amount, compute_max_price
from aitbc.chain.params import ChainParams
from aitbc.client.node import NodeClient
from aitbc.coordinator.db.payment_records import DuePayment
from aitbc.coordinator.db.repo import CoordinatorRepo, Row
from aitbc.coordinator.metrics import CoordinatorMetrics
from aitbc.market.lifecycle import REFUND_ACTION, SETTLE_ACTION, JobState, PaymentState, get_payment_action
from aitbc.protocol.amounts import format_aitbc
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import PaymentRequired, RemoteError, TxRejection, Unavailable
from aitbc.protocol.tx import RefundEscrow, SettleJob, SettleJobZk, Tx, sign_tx, tx_hash, tx_to_json_obj
from aitbc.protocol.zk import ZkReceiptProof
from aitbc.runtime.priority import background_executor

log = logging.getLogger("aitbc.coordinator.payments")


class DepositSettlement(Protocol):
    """What the payment worker drives for deposit jobs (``aitbc.coordinator.settlement.DepositSettler``).

    A protocol, not an import: the settler itself builds on this module's ``ChainLink``."""

    async def run_once(
        self, reserve_nonce: Callable[[], Awaitable[int]], set_next_nonce: Callable[[int | None], None]
    ) -> None: ...

    async def on_events(self, events: Sequence[dict[str, Any]]) -> None: ...

    def on_takeover(self) -> None: ...


P = ParamSpec("P")
T = TypeVar("T")

CURSOR_NAME: Final = "job_events"
PAGE: Final = 1_000
APPLY_SLICE: Final = 64
"""Closed payments recorded per transaction: one block's 600 in one write held job submissions up to 25 ms
(``bench/settlement.py``, open loop at 600/s)."""
BATCH: Final = 256
INFO_TTL_SECONDS: Final = 5.0
"""How long the coordinator trusts the chain parameters it read (governance may change them)."""
SETTLE_REFUSALS: Final = frozenset(
    {TxRejection.BAD_RECEIPT, TxRejection.TOTAL_ABOVE_ESCROW, TxRejection.NOT_COORDINATOR, TxRejection.WRONG_CHAIN_ID}
)
"""Refusals a retry cannot fix: the escrow is refunded instead."""


class EscrowProblem(PaymentRequired):
    """A paid job's escrow is missing, closed or does not fit the job (HTTP 402)."""

    reason = "escrow_required"


class PriceTooLow(EscrowProblem):
    """No live miner that could run the job would take it at its ``max_price`` (HTTP 402): refused at
    submission with the amount needed, instead of queued until its ttl."""

    reason = "max_price_too_low"

    def __init__(self, max_price: int, needed: int) -> None:
        super().__init__(
            f"max_price {max_price} base units is below what any live miner serving this job may charge for it: "
            f"at least {needed} base units ({format_aitbc(needed)} AITBC)"
        )
        self.needed = needed

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "needed": self.needed, "needed_aitbc": format_aitbc(self.needed)}


class ChainUnavailable(Unavailable):
    """The coordinator cannot reach its node (HTTP 503): paid jobs cannot be checked now."""

    reason = "chain_unavailable"


@dataclass(frozen=True, slots=True)
class EscrowTerms:
    amount: int
    deadline_height: int
    head_height: int
    max_price: int
    """The highest receipt total the escrow pays (with its protocol fee)."""


@dataclass(frozen=True, slots=True)
class ChainInfo:
    chain_id: str
    params: ChainParams
    block_time_ms: int


class ChainLink:
    """The coordinator's node: one thread for its blocking client, and what the chain said at start."""

    def __init__(
        self,
        node_url: str,
        *,
        client: NodeClient | None = None,
        info_ttl: float = INFO_TTL_SECONDS,
        thread_nice: int = 0,
    ) -> None:
        self.node_url = node_url
        self.node = client or NodeClient(node_url, timeout=10.0)
        self._thread = background_executor("chain", thread_nice, max_workers=1)
        self.info: ChainInfo | None = None
        self.info_ttl = info_ttl
        self._info_at = 0.0
        self._info_task: asyncio.Task[None] | None = None

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, lambda: fn(*args, **kwargs))

    async def get_info(self) -> ChainInfo:
        """Chain id and the parameters in force, re-read every ``info_ttl`` seconds: governance can change
        the parameters (min_fee, protocol_fee_bps, …) while the coordinator runs, and a settle tx paying
        last week's min_fee would be refused forever. Under steady use a value up to ``2 * info_ttl`` old
        is answered at once while one background read replaces it (no caller waits on the node for it, and
        there is one read, not one per caller waiting at that moment); an older one is read again first."""
        age = time.monotonic() - self._info_at
        if self.info is None or age > 2 * self.info_ttl:
            try:
                await self._read_info()
            except ChainUnavailable:
                if self.info is None:
                    raise
        elif age > self.info_ttl and self._info_task is None:
            self._info_task = asyncio.create_task(self._refresh_info())
        assert self.info is not None
        return self.info

    async def _refresh_info(self) -> None:
        try:
            await self._read_info()
        except ChainUnavailable:
            pass  # a node hiccup: keep the last parameters we saw (the next call tries again)
        finally:
            self._info_task = None

    async def _read_info(self) -> None:
        try:
            raw = await self.call(self.node.get_chain_info)
        except RemoteError as exc:
            raise ChainUnavailable(f"cannot reach the node at {self.node_url}: {exc.message}") from None
        self.info = ChainInfo(
            raw["chain_id"], msgspec.convert(raw["params"], ChainParams), int(raw.get("block_time_ms", 1000))
        )
        self._info_at = time.monotonic()

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
        self.node.close()


def is_chain_address(client: str) -> bool:
    return client.startswith("ait1")


async def check_escrow(
    link: ChainLink,
    coordinator: str,
    client: str,
    job_id: str,
    max_price: int | None,
    min_blocks_left: int,
) -> EscrowTerms:
    """The terms of a job's committed escrow, or ``EscrowProblem`` saying what is wrong with it."""
    if not is_chain_address(client):
        raise EscrowProblem(
            "this API key is not bound to a chain address, so it cannot pay for jobs; "
            "create one with `aitbc coordinator keys create --client ait1…`",
            reason="key_not_bound",
        )
    info = await link.get_info()
    try:
        found = await link.call(link.node.get_job, job_id)
    except RemoteError as exc:
        raise ChainUnavailable(f"cannot read the escrow of {job_id} from the node: {exc.message}") from None
    if found is None:
        raise EscrowProblem(
            f"no escrow is committed on chain for job {job_id}: open one naming coordinator {coordinator} "
            "and wait for it to commit (`aitbc job submit` does both)",
            reason="escrow_missing",
        )
    escrow = msgspec.convert(found["escrow"], Escrow)
    head = int(found["height"])
    if escrow.state != EscrowState.OPEN:
        raise EscrowProblem(f"the escrow of job {job_id} is already {escrow.state}", reason="escrow_closed")
    if escrow.coordinator != coordinator:
        raise EscrowProblem(
            f"the escrow of job {job_id} names coordinator {escrow.coordinator}, not this one ({coordinator})",
            reason="wrong_coordinator",
        )
    if escrow.client != client:
        raise EscrowProblem(
            f"the escrow of job {job_id} was opened by {escrow.client}, not by this API key's client {client}",
            reason="wrong_client",
        )
    if escrow.deadline_height - head < min_blocks_left:
        raise EscrowProblem(
            f"the escrow of job {job_id} ends at height {escrow.deadline_height}, {escrow.deadline_height - head} "
            f"blocks from now; at least {min_blocks_left} are needed to run and settle the job",
            reason="deadline_too_close",
        )
    most = compute_max_price(escrow.amount, info.params)
    if max_price is not None and max_price > most:
        raise EscrowProblem(
            f"max_price {max_price} needs an escrow of {compute_escrow_amount(max_price, info.params)} "
            f"(with the protocol fee); the escrow holds {escrow.amount}",
            reason="price_above_escrow",
        )
    return EscrowTerms(escrow.amount, escrow.deadline_height, head, most if max_price is None else max_price)


def now_ms() -> int:
    return int(time.time() * 1000)


class PaymentWorker:
    """Sends the settle and refund txs finished jobs need, and follows the chain's answer."""

    def __init__(
        self,
        link: ChainLink,
        repo: CoordinatorRepo,
        key: KeyPair,
        metrics: CoordinatorMetrics,
        read: Callable[..., Awaitable[Any]],
        write: Callable[..., Awaitable[Any]],
        on_refunded: Callable[[list[str]], Awaitable[None]],
        *,
        retry_seconds: float = 10.0,
        poll_seconds: float = 0.2,
    ) -> None:
        self.link = link
        self.repo = repo
        self.key = key
        self.metrics = metrics
        self._read = read
        self._write = write
        self._on_refunded = on_refunded
        self._retry_ms = int(retry_seconds * 1000)
        self._poll = poll_seconds
        self._wake = asyncio.Event()
        self._next_nonce: int | None = None
        self._cursor: int | None = None
        self.settler: DepositSettlement | None = None
        """Settles deposit jobs in batches (``aitbc.coordinator.settlement``) with this worker's nonce."""
        self.gate: Callable[[], Awaitable[bool]] | None = None
        """Set on replicas (``aitbc.coordinator.replication``): whether this replica is the one that settles now.
        Only the holder of the settler lock sends payments and follows the chain; the others wait."""
        self.settling = False
        """With a gate: whether this replica held the settler lock at its last look."""

    def wake(self) -> None:
        """A job finished: look for payments to send now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Send payments and follow chain events until cancelled; node outages are waited out."""
        while True:
            try:
                if not await self._may_settle():
                    await asyncio.sleep(self._poll * 5)
                    continue
                await self.follow_once()
                while await self.pay_once():
                    pass
                if self.settler is not None:
                    await self.settler.run_once(self._reserve_nonce, self._set_next_nonce)
            except (RemoteError, ChainUnavailable) as exc:
                log.warning("node unavailable; payments wait", extra={"error": str(exc)})
                self._next_nonce = None
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("payment round failed")
                self._next_nonce = None
                await asyncio.sleep(1.0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    async def _may_settle(self) -> bool:
        if self.gate is None:
            return True
        held = await self.gate()
        if held and not self.settling:  # taken over from a replica that stopped: trust nothing it knew
            log.info("this replica settles now")
            self._next_nonce = None
            self._cursor = None
            if self.settler is not None:
                self.settler.on_takeover()
        elif not held and self.settling:
            log.info("another replica settles")
        self.settling = held
        return held

    # -- sending -----------------------------------------------------------------
    async def pay_once(self) -> bool:
        """Send one batch of due payments; True if the batch was full (more may be due)."""
        now = now_ms()
        due = await self._read(self.repo.jobs_due_for_payment, now - self._retry_ms, BATCH)
        if not due:
            return False
        info = await self.link.get_info()
        # A payment already sent is sent again only if the chain never took it.
        resend: list[DuePayment] = []
        planned: list[tuple[DuePayment, str]] = []
        for row in due:
            if row.payment_state in (PaymentState.SETTLING, PaymentState.REFUNDING):
                resend.append(row)
            elif (wanted := get_payment_action(row.state, row.payment_state)) is not None:
                planned.append((row, wanted))
        if resend:
            statuses = await self.link.call(
                self.link.node.batch, [("get_tx_status", [row.payment_tx]) for row in resend]
            )
            for row, status in zip(resend, statuses, strict=True):
                state = None if isinstance(status, RemoteError) else status.get("status")
                if state in ("pending", "committed"):  # in a block or on its way: the follower will see it
                    await self._write(
                        self.repo.set_payment_states, [(row.id, [row.payment_state], {"payment_updated_ms": now})]
                    )
                    continue
                planned.append((row, SETTLE_ACTION if row.payment_state == PaymentState.SETTLING else REFUND_ACTION))
                self._next_nonce = None  # the lost tx may have left a nonce gap
        if not planned:
            return len(due) == BATCH
        receipts = await self._read(self.repo.get_receipts, [r.id for r, a in planned if a == SETTLE_ACTION])
        nonce = await self._reserve_nonce()
        txs: list[tuple[DuePayment, str, Tx]] = []
        for row, action in planned:
            tx: Tx
            if action == SETTLE_ACTION and row.id in receipts:
                receipt = receipts[row.id].receipt
                zk_proof = receipts[row.id].zk_proof
                if zk_proof is not None:  # the chain verifies the receipt's zk proof too (docs/zk.md)
                    tx = SettleJobZk(
                        sender=self.key.address,
                        nonce=nonce,
                        fee=info.params.min_fee,
                        chain_id=info.chain_id,
                        receipt=receipt,
                        proof=msgspec.convert(zk_proof, ZkReceiptProof),
                    )
                else:
                    tx = SettleJob(
                        sender=self.key.address,
                        nonce=nonce,
                        fee=info.params.min_fee,
                        chain_id=info.chain_id,
                        receipt=receipt,
                    )
            else:
                action = REFUND_ACTION
                tx = RefundEscrow(
                    sender=self.key.address,
                    nonce=nonce,
                    fee=info.params.min_fee,
                    chain_id=info.chain_id,
                    job_id=row.id,
                )
            txs.append((row, action, sign_tx(tx, self.key)))
            nonce += 1
        # Write the intent first: a crash after this line resends; before it, the job is simply still due.
        intents = [
            (
                row.id,
                [row.payment_state],
                {
                    "payment_state": PaymentState.SETTLING if action == SETTLE_ACTION else PaymentState.REFUNDING,
                    "payment_tx": tx_hash(tx),
                    "payment_updated_ms": now,
                },
            )
            for row, action, tx in txs
        ]
        matched = set(await self._write(self.repo.set_payment_states, intents))
        to_send = [(row, action, tx) for row, action, tx in txs if row.id in matched]
        self._next_nonce = nonce
        if not to_send:
            return len(due) == BATCH
        results = await self.link.call(
            self.link.node.batch, [("send_tx", [tx_to_json_obj(tx)]) for _, _, tx in to_send]
        )
        refused: list[tuple[str, Any, Row]] = []
        for (row, action, _), result in zip(to_send, results, strict=True):
            if not isinstance(result, RemoteError):
                self.metrics.payments_sent.labels(action).inc()
                continue
            reason = result.reason or "rejected"
            self.metrics.payments_refused.labels(reason).inc()
            log.warning(
                "payment tx refused",
                extra={"job_id": row.id, "action": action, "reason": reason, "error": str(result)},
            )
            self._next_nonce = None
            in_flight = PaymentState.SETTLING if action == SETTLE_ACTION else PaymentState.REFUNDING
            if reason in (TxRejection.ALREADY_SETTLED, TxRejection.ALREADY_REFUNDED, TxRejection.ESCROW_EXPIRED):
                continue  # the chain already closed the escrow; the follower records how
            if action == SETTLE_ACTION and reason in SETTLE_REFUSALS:
                next_state = PaymentState.SETTLE_REFUSED
            elif action == SETTLE_ACTION or row.state != JobState.COMPLETED:
                next_state = PaymentState.ESCROWED  # a nonce race, a full mempool, no funds for the fee: retry
            else:
                next_state = PaymentState.SETTLE_REFUSED  # a completed job's refund: stay on the refund path
            refused.append((row.id, [in_flight], {"payment_state": next_state, "payment_error": f"{reason}: {result}"}))
        if refused:
            await self._write(
                self.repo.set_payment_states,
                [(job_id, expect, {**changes, "payment_updated_ms": now}) for job_id, expect, changes in refused],
            )
        return len(due) == BATCH

    def _set_next_nonce(self, nonce: int | None) -> None:
        self._next_nonce = nonce

    async def _reserve_nonce(self) -> int:
        if self._next_nonce is None:
            self._next_nonce = await self.link.call(self.link.node.next_nonce, self.key.address)
        return self._next_nonce

    # -- following ---------------------------------------------------------------
    async def follow_once(self) -> None:
        """Apply the chain's job events for this coordinator, page by page, up to the head."""
        if self._cursor is None:
            self._cursor = await self._read(self.repo.get_chain_cursor, CURSOR_NAME)
        while True:
            page = await self.link.call(self.link.node.get_job_events, self._cursor, self.key.address, PAGE)
            events = page["events"]
            if not events:
                return
            closed: list[tuple[str, Row]] = []
            refunded: list[str] = []
            for event in events:
                if event["coordinator"] != self.key.address or event["kind"] not in ("settled", "refunded"):
                    continue
                state = PaymentState.SETTLED if event["kind"] == "settled" else PaymentState.REFUNDED
                closed.append(
                    (
                        event["job_id"],
                        {
                            "payment_state": state,
                            "payment_tx": event["tx_hash"] or None,
                            "payment_height": event["height"],
                            "paid_to_miner": event["paid_to_miner"],
                            "protocol_fee": event["protocol_fee"],
                            "refunded": event["refunded"],
                            "payment_error": None,
                            "payment_updated_ms": now_ms(),
                        },
                    )
                )
                if state == PaymentState.REFUNDED:
                    refunded.append(event["job_id"])
                self.metrics.payments_closed.labels(event["kind"]).inc()
            next_seq = int(page["next_seq"])
            if self.settler is not None:  # deposit jobs: settled ones leave the books, refused ones are marked
                await self.settler.on_events(events)
            # Stop the jobs first, then record the refunds with the cursor: whoever sees a job's payment
            # "refunded" also sees the job ended, and a crash in between replays these events (both idempotent).
            if refunded:
                await self._on_refunded(refunded)
            # A block settles hundreds of jobs: record them a slice at a time, so submissions (whose inserts the
            # writer thread runs first) wait behind a slice, not the whole block; the cursor moves with the last
            # slice (alone when nothing closed), and a crash before it replays the page (idempotent).
            for start in range(0, max(len(closed), 1), APPLY_SLICE):
                last = start + APPLY_SLICE >= len(closed)
                await self._write(
                    self.repo.apply_chain_events,
                    CURSOR_NAME,
                    next_seq if last else None,
                    closed[start : start + APPLY_SLICE],
                )
            self._cursor = next_seq
            if len(events) < PAGE:
                return
