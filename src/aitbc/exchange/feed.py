"""The real-time feed: book deltas with a contiguous sequence (and snapshots to resync), trades, tickers,
and each user's own order updates, fanned out to WebSocket clients through bounded queues."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aitbc.market.ledger import Event, OrderAccepted, OrderClosed, OrderRested, Trade
from aitbc.market.orderbook import OrderBook, Side

PUBLIC_CHANNELS = ("book", "trades", "ticker")
CHANNELS = (*PUBLIC_CHANNELS, "orders")


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[dict[str, Any]]
    channels: set[str] = field(default_factory=set)
    user: str | None = None
    overflowed: bool = False


def compute_book_changes(book: OrderBook, events: list[Event]) -> list[list[Any]]:
    """[side, price, quantity now] for each level an event touched (quantity 0: the level is gone)."""
    touched: dict[tuple[str, int], None] = {}
    never_rested = {e.order_id for e in events if type(e) is OrderAccepted}
    for e in events:
        t = type(e)
        if t is OrderRested:
            assert isinstance(e, OrderRested)
            never_rested.discard(e.order_id)
            touched[(str(e.side), e.price)] = None
        elif t is OrderClosed:
            assert isinstance(e, OrderClosed)
            if e.price and e.order_id not in never_rested:
                touched[(str(e.side), e.price)] = None
        elif t is Trade:
            assert isinstance(e, Trade)
            touched[("sell" if e.taker_side == "buy" else "buy", e.price)] = None
    return [[side, price, book.level_quantity(Side(side), price)] for side, price in touched]


def order_update(event: Event) -> tuple[str, dict[str, Any]] | None:
    """(user, message) of an event that concerns one user's order; a trade concerns two (see ``Feed``)."""
    if isinstance(event, OrderAccepted | OrderRested | OrderClosed):
        return event.user, {"type": "order", "event": type(event).__name__, **_plain(event._asdict())}
    return None


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, str) else v) for k, v in d.items()}


class Feed:
    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()

    def subscribe(self) -> Subscriber:
        sub = Subscriber(asyncio.Queue(self.queue_size))
        self.subscribers.add(sub)
        return sub

    def wants(self, channel: str) -> bool:
        return any(channel in sub.channels for sub in self.subscribers)

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def _send(self, sub: Subscriber, message: dict[str, Any]) -> None:
        if sub.overflowed:
            return
        try:
            sub.queue.put_nowait(message)
        except asyncio.QueueFull:
            sub.overflowed = True  # the connection handler closes it; the client resyncs with a snapshot

    def publish(
        self, symbol: str, book_seq: int, changes: list[list[Any]], events: list[Event], ticker: dict[str, Any] | None
    ) -> None:
        """Called once per committed command, in log order; ``book_seq`` numbers the book changes contiguously."""
        delta: dict[str, Any] = {}
        if changes:
            delta = {"type": "book_delta", "market": symbol, "seq": book_seq, "changes": changes}
        trades = [{"type": "trade", "market": symbol, **_plain(e._asdict())} for e in events if isinstance(e, Trade)]
        if not self.subscribers:
            return
        for sub in list(self.subscribers):
            ch = sub.channels
            if changes and "book" in ch:
                self._send(sub, delta)
            if trades and "trades" in ch:
                for t in trades:
                    self._send(sub, {k: v for k, v in t.items() if k not in ("buyer", "seller", "buyer_hold_used")})
            if ticker is not None and "ticker" in ch:
                self._send(sub, ticker)
            if sub.user is not None and "orders" in ch:
                for e in events:
                    update = order_update(e)
                    if update is not None and update[0] == sub.user:
                        self._send(sub, update[1])
                    elif isinstance(e, Trade) and sub.user in (e.buyer, e.seller):
                        self._send(sub, {"type": "fill", "market": symbol, **_plain(e._asdict())})
