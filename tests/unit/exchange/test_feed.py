"""The feed's book changes and its bounded per-client queues."""

from __future__ import annotations

import asyncio

from aitbc.exchange.feed import Feed, compute_book_changes
from aitbc.market.orderbook import MarketSpec, OrderType, Side
from aitbc.market.trading import Deposit, PlaceOrder, TradingEngine

AIT = 1_000_000


def test_book_changes_name_each_touched_level_with_its_new_quantity() -> None:
    engine = TradingEngine(MarketSpec())
    engine.process(Deposit("a", "AITBC", 10 * AIT, "d1"))
    engine.process(Deposit("b", "BTC", 10**8, "d2"))
    rested = engine.process(PlaceOrder("a", Side.SELL, OrderType.LIMIT, 3 * AIT, 500))
    assert compute_book_changes(engine.book, rested) == [["sell", 500, 3 * AIT]]
    taken = engine.process(PlaceOrder("b", Side.BUY, OrderType.LIMIT, 3 * AIT, 600))
    assert compute_book_changes(engine.book, taken) == [["sell", 500, 0]]  # the taker never rested: not listed


def test_a_slow_client_overflows_and_is_marked() -> None:
    async def run() -> None:
        feed = Feed(queue_size=10)
        sub = feed.subscribe()
        sub.channels.add("book")
        for seq in range(1, 21):
            feed.publish("AITBC-BTC", seq, [["buy", 100, seq]], [], None)
        assert sub.overflowed and sub.queue.qsize() == 10
        assert [sub.queue.get_nowait()["seq"] for _ in range(10)] == list(range(1, 11))

    asyncio.run(run())
