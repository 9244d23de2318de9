"""The exchange service: the trading engine in memory, its command log in the database (group commit),
the feed, tickers and the invariant checks.

Write path: a command is processed by the pure engine on the event loop (one at a time, so no locks),
queued with its events, and the caller waits until the batch holding it is committed; only then are its
events published. If a commit fails the service stops accepting commands (``/healthz`` says so): the
database is the truth and a restart replays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter

from aitbc.exchange.accounts import Accounts
from aitbc.exchange.config import ExchangeSettings
from aitbc.exchange.feed import Feed, compute_book_changes
from aitbc.exchange.metrics import ExchangeMetrics
from aitbc.exchange.store import Entry, ExchangeStore
from aitbc.market.ledger import (
    DEPOSITS,
    FEES,
    WITHDRAWALS,
    Event,
    LedgerInvariantBroken,
    Trade,
    available_account,
    check_ledger_invariants,
    held_account,
)
from aitbc.market.orderbook import OrderRejected
from aitbc.market.trading import Command, TradingEngine
from aitbc.protocol.errors import StorageError

log = logging.getLogger("aitbc.exchange")
DAY_MS = 24 * 3600 * 1000


def now_ms() -> int:
    return int(time.time() * 1000)


class RollingDay:
    """Open, high, low, volume and count of the trades of the last 24 hours, without rescanning them:
    running sums, plus monotonic queues for the high and the low (the sliding-window maximum)."""

    def __init__(self) -> None:
        self.window: deque[tuple[int, int, int, int, int]] = deque()
        """(at_ms, price, quantity, value, trade_id), oldest first."""
        self.highs: deque[tuple[int, int, int]] = deque()
        """(trade_id, price, at_ms) with decreasing prices: the first is the window's high."""
        self.lows: deque[tuple[int, int, int]] = deque()
        self.volume = 0
        self.quote_volume = 0

    def add(self, at_ms: int, trade: Trade) -> None:
        self.window.append((at_ms, trade.price, trade.quantity, trade.value, trade.trade_id))
        self.volume += trade.quantity
        self.quote_volume += trade.value
        while self.highs and self.highs[-1][1] <= trade.price:
            self.highs.pop()
        self.highs.append((trade.trade_id, trade.price, at_ms))
        while self.lows and self.lows[-1][1] >= trade.price:
            self.lows.pop()
        self.lows.append((trade.trade_id, trade.price, at_ms))
        self.expire(at_ms)

    def expire(self, now_ms: int) -> None:
        cutoff = now_ms - DAY_MS
        window = self.window
        while window and window[0][0] < cutoff:
            _, _, quantity, value, trade_id = window.popleft()
            self.volume -= quantity
            self.quote_volume -= value
            if self.highs and self.highs[0][0] == trade_id:
                self.highs.popleft()
            if self.lows and self.lows[0][0] == trade_id:
                self.lows.popleft()


class ExchangeService:
    def __init__(self, settings: ExchangeSettings, store: ExchangeStore | None = None) -> None:
        self.settings = settings
        self.spec = settings.market.spec()
        self.fees = settings.market.fees()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = store or ExchangeStore(settings.sqlalchemy_url, self.spec.base, self.spec.quote)
        self.accounts = Accounts(settings, self.store)
        self.engine = TradingEngine(self.spec, self.fees)
        self.metrics = ExchangeMetrics()
        self.feed = Feed(settings.ws_queue_size)
        self.seq = 0
        self.committed_seq = 0
        self.trades: deque[tuple[int, Trade]] = deque()
        """(at_ms, trade) of the last 1,000 trades, for /trades."""
        self.day = RollingDay()
        """24-hour ticker statistics, kept up to date trade by trade (O(1) amortized)."""
        self.failed: str | None = None
        self.book_seq = 0
        """Sequence of book changes processed (a snapshot carries it; deltas above it follow)."""
        self._pending: list[tuple[Entry, list[list[Any]], int, asyncio.Future[None]]] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self.background_starters: list[Callable[[], Coroutine[Any, Any, None]]] = []
        """Long-running tasks (chain watchers) the app starts with it."""
        self.extra_routers: list[APIRouter] = []
        self.bitcoin: Any = None
        """``aitbc.exchange.bitcoin.funds.BitcoinFunds`` when BTC deposits are configured."""
        self.aitbc: Any = None
        """``aitbc.exchange.chain.AitbcFunds`` when the AITBC node is configured."""

    # -- start and stop ------------------------------------------------------------------------
    def load(self) -> None:
        """Replay the command log into the engine, then check it against the journal in the database."""
        count = 0
        for seq, at_ms, command in self.store.load_commands():
            try:
                events = self.engine.process(command)
            except OrderRejected as exc:
                raise StorageError(f"command {seq} of the log no longer applies ({exc.reason}): log corrupt") from None
            self._remember_trades(at_ms, events)
            self.seq = seq
            count += 1
        self.committed_seq = self.seq
        self.check_journal()
        log.info("exchange state replayed", extra={"commands": count, "orders_open": len(self.engine.book.orders)})

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop())

    async def stop(self) -> None:
        if self._writer is not None:
            await self.flush()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self.store.close()

    # -- the write path ---------------------------------------------------------------------------
    async def submit(
        self,
        command: Command,
        *,
        client_order_id: str | None = None,
        extra: list[tuple[Any, dict[str, Any]]] | None = None,
    ) -> list[Event]:
        """Process ``command`` and return its events once they are durable (``OrderRejected``: nothing changed)."""
        if self.failed is not None:
            raise StorageError(f"the exchange stopped accepting changes: {self.failed}", reason="unavailable")
        assert self._wake is not None, "start() first"
        events = self.engine.process(command)
        self.seq += 1
        entry = Entry(self.seq, now_ms(), command, events, client_order_id, extra or [])
        changes = compute_book_changes(self.engine.book, events)
        if changes:
            self.book_seq += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, changes, self.book_seq, future))
        self._wake.set()
        await future
        return events

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed."""
        target = self.seq
        while self.committed_seq < target and self.failed is None:
            await asyncio.sleep(0.001)

    async def _write_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                started = time.perf_counter()
                try:
                    await asyncio.to_thread(self.store.write_batch, [entry for entry, _, _, _ in batch])
                except Exception as exc:
                    self.failed = str(exc)
                    log.critical("commit failed; the exchange stops accepting changes", exc_info=True)
                    error = StorageError(f"the exchange could not store this: {exc}", reason="unavailable")
                    for _, _, _, future in batch + self._pending:
                        if not future.done():
                            future.set_exception(error)
                    self._pending = []
                    return
                self.metrics.commit_batch.observe(len(batch))
                self.metrics.commit_seconds.observe(time.perf_counter() - started)
                for entry, changes, book_seq, future in batch:
                    self.committed_seq = entry.seq
                    self._on_committed(entry, changes, book_seq)
                    if not future.done():
                        future.set_result(None)

    def _on_committed(self, entry: Entry, changes: list[list[Any]], book_seq: int) -> None:
        traded = self._remember_trades(entry.at_ms, entry.events)
        self.metrics.count_events(entry.events)
        ticker = self.ticker() if traded and self.feed.wants("ticker") else None
        self.feed.publish(self.spec.symbol, book_seq, changes, entry.events, ticker)

    def _remember_trades(self, at_ms: int, events: list[Event]) -> bool:
        traded = False
        for e in events:
            if type(e) is Trade:
                assert isinstance(e, Trade)
                self.trades.append((at_ms, e))
                self.day.add(at_ms, e)
                traded = True
        if traded:
            while len(self.trades) > 1000:
                self.trades.popleft()
        return traded

    # -- reads ---------------------------------------------------------------------------------
    def ticker(self) -> dict[str, Any]:
        book = self.engine.book
        day = self.day
        day.expire(now_ms())
        return {
            "type": "ticker",
            "market": self.spec.symbol,
            "last_price": self.trades[-1][1].price if self.trades else None,
            "best_bid": book.best_bid(),
            "best_ask": book.best_ask(),
            "open_24h": day.window[0][1] if day.window else None,
            "high_24h": day.highs[0][1] if day.highs else None,
            "low_24h": day.lows[0][1] if day.lows else None,
            "volume_24h": day.volume,
            "quote_volume_24h": day.quote_volume,
            "trades_24h": len(day.window),
        }

    def book_snapshot(self, depth: int) -> dict[str, Any]:
        from aitbc.market.orderbook import Side

        book = self.engine.book
        return {
            "type": "book_snapshot",
            "market": self.spec.symbol,
            "seq": self.book_seq,
            "bids": [list(level) for level in book.levels(Side.BUY, depth)],
            "asks": [list(level) for level in book.levels(Side.SELL, depth)],
        }

    def balances(self, user: str) -> dict[str, dict[str, int]]:
        return {
            asset: dict(zip(("available", "held"), self.engine.ledger.get_balance(user, asset), strict=True))
            for asset in self.engine.ledger.assets
        }

    # -- invariants ------------------------------------------------------------------------------
    def check_memory_invariants(self) -> None:
        try:
            check_ledger_invariants(self.engine.ledger)
            if self.engine.book.is_crossed():
                raise LedgerInvariantBroken("the book is crossed")
        except LedgerInvariantBroken:
            self.metrics.invariant_failures.inc()
            raise

    def expected_journal(self) -> dict[tuple[str, str], int]:
        """What Σ postings per (account, asset) must be for the ledger in memory now."""
        ledger = self.engine.ledger
        expected: dict[tuple[str, str], int] = {}
        for asset in ledger.assets:
            for user, balance in ledger.accounts[asset].items():
                expected[(available_account(user), asset)] = balance.available
                expected[(held_account(user), asset)] = balance.held
            expected[(DEPOSITS, asset)] = -ledger.deposits[asset]
            expected[(WITHDRAWALS, asset)] = ledger.withdrawals[asset]
            expected[(FEES, asset)] = ledger.fees[asset]
        return expected

    def compare_journal(self, expected: dict[tuple[str, str], int], sums: dict[tuple[str, str], int]) -> None:
        """The journal balances to zero per asset and equals the ledger, account by account."""
        try:
            for asset in self.engine.ledger.assets:
                total = sum(v for (_, a), v in sums.items() if a == asset)
                if total != 0:
                    raise LedgerInvariantBroken(f"{asset}: the journal does not balance (sum {total})")
            for key in set(sums) | set(expected):
                if sums.get(key, 0) != expected.get(key, 0):
                    raise LedgerInvariantBroken(
                        f"{key}: journal says {sums.get(key, 0)}, the ledger in memory {expected.get(key, 0)}"
                    )
        except LedgerInvariantBroken:
            self.metrics.invariant_failures.inc()
            raise

    def check_journal(self) -> None:
        """At start-up (nothing pending): the journal in the database equals the replayed ledger."""
        self.compare_journal(self.expected_journal(), self.store.journal_balances())
        self.check_memory_invariants()

    async def check_all_invariants(self) -> None:
        """While the exchange runs: the ledger as of the last committed command against the journal up to it.

        The expected balances are copied when nothing is pending (no await in between), and the journal is
        summed up to that command's sequence number, so commands committed meanwhile are left out of both.
        """
        while True:
            await self.flush()
            if self.committed_seq == self.seq or self.failed is not None:
                break
        expected, seq = self.expected_journal(), self.committed_seq
        self.check_memory_invariants()
        sums = await asyncio.to_thread(self.store.journal_balances, seq)
        self.compare_journal(expected, sums)

    def open_order_count(self, user: str) -> int:
        return self.engine.book.open_by_user.get(user, 0)

    def bitcoin_status(self) -> dict[str, Any] | None:
        return None if self.bitcoin is None else self.bitcoin.status()
