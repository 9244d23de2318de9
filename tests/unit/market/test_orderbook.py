"""The exchange's matching and ledger rules (``aitbc.market.orderbook``, ``ledger``, ``trading``): one test per rule."""

from __future__ import annotations

import pytest

from aitbc.market.ledger import (
    Deposited,
    OrderAccepted,
    OrderClosed,
    OrderRested,
    Trade,
    check_ledger_invariants,
)
from aitbc.market.orderbook import (
    MarketSpec,
    OrderRejected,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
    compute_book_hash,
)
from aitbc.market.trading import (
    CancelOrder,
    CancelWithdrawal,
    CompleteWithdrawal,
    Deposit,
    FeeSchedule,
    PlaceOrder,
    RequestWithdrawal,
    ReverseDeposit,
    TradingEngine,
    compute_state_hash,
)
from aitbc.protocol.errors import ConfigError

AIT = 1_000_000
SPEC = MarketSpec(tick_size=10, lot_size=100_000)  # 0.1 AITBC lots, 10-sat ticks


def engine(fees: FeeSchedule | None = None) -> TradingEngine:
    e = TradingEngine(SPEC, fees or FeeSchedule(maker_bps=0, taker_bps=0))
    for user in ("alice", "bob", "carol"):
        e.process(Deposit(user, "BTC", 10**9, f"btc-{user}"))
        e.process(Deposit(user, "AITBC", 1000 * AIT, f"ait-{user}"))
    return e


def limit(user: str, side: Side, qty: int, price: int, **kw: object) -> PlaceOrder:
    return PlaceOrder(user, side, OrderType.LIMIT, qty, price, **kw)  # type: ignore[arg-type]


def test_market_spec_requires_exact_values() -> None:
    with pytest.raises(ConfigError):
        MarketSpec(tick_size=1, lot_size=1)  # 1 base unit at 1 sat/AITBC is a millionth of a sat


def test_limit_order_rests_and_holds_its_value() -> None:
    e = engine()
    events = e.process(limit("alice", Side.BUY, 2 * AIT, 5_000))
    assert isinstance(events[0], OrderAccepted) and events[0].hold == 10_000
    assert isinstance(events[-1], OrderRested)
    assert e.ledger.get_balance("alice", "BTC") == (10**9 - 10_000, 10_000)
    assert e.book.best_bid() == 5_000


def test_price_time_priority() -> None:
    e = engine()
    e.process(limit("alice", Side.SELL, AIT, 5_010))
    e.process(limit("bob", Side.SELL, AIT, 5_000))
    e.process(limit("carol", Side.SELL, AIT, 5_000))
    events = e.process(limit("alice", Side.BUY, 2 * AIT, 5_010))
    trades = [ev for ev in events if isinstance(ev, Trade)]
    assert [(t.seller, t.price) for t in trades] == [("bob", 5_000), ("carol", 5_000)]


def test_taker_buy_gets_price_improvement_back() -> None:
    e = engine()
    e.process(limit("bob", Side.SELL, AIT, 4_000))
    e.process(limit("alice", Side.BUY, AIT, 5_000))
    assert e.ledger.get_balance("alice", "BTC") == (10**9 - 4_000, 0)
    assert e.ledger.get_balance("alice", "AITBC") == (1001 * AIT, 0)
    assert e.ledger.get_balance("bob", "BTC") == (10**9 + 4_000, 0)


def test_market_order_walks_the_book_and_holds_exact_cost() -> None:
    e = engine()
    e.process(limit("bob", Side.SELL, AIT, 4_000))
    e.process(limit("carol", Side.SELL, AIT, 6_000))
    events = e.process(PlaceOrder("alice", Side.BUY, OrderType.MARKET, 3 * AIT, None, TimeInForce.IOC))
    assert events[0].hold == 10_000  # type: ignore[union-attr]
    closed = events[-1]
    assert isinstance(closed, OrderClosed) and closed.reason == "market" and closed.remaining == AIT
    assert e.book.best_ask() is None


def test_market_order_needs_liquidity_and_no_gtc() -> None:
    e = engine()
    with pytest.raises(OrderRejected) as info:
        e.process(PlaceOrder("alice", Side.BUY, OrderType.MARKET, AIT, None, TimeInForce.IOC))
    assert info.value.reason == "no_liquidity"
    with pytest.raises(OrderRejected) as info:
        e.process(PlaceOrder("alice", Side.BUY, OrderType.MARKET, AIT))
    assert info.value.reason == "malformed"


def test_ioc_cancels_the_rest() -> None:
    e = engine()
    e.process(limit("bob", Side.SELL, AIT, 5_000))
    events = e.process(limit("alice", Side.BUY, 2 * AIT, 5_000, time_in_force=TimeInForce.IOC))
    assert isinstance(events[-1], OrderClosed) and events[-1].reason == "ioc" and events[-1].remaining == AIT
    assert e.book.best_bid() is None
    assert e.ledger.get_balance("alice", "BTC") == (10**9 - 5_000, 0)


def test_fok_fills_all_or_nothing() -> None:
    e = engine()
    e.process(limit("bob", Side.SELL, AIT, 5_000))
    before = compute_state_hash(e)
    events = e.process(limit("alice", Side.BUY, 2 * AIT, 5_000, time_in_force=TimeInForce.FOK))
    assert not any(isinstance(ev, Trade) for ev in events)
    assert e.book.best_ask() == 5_000
    assert e.ledger.get_balance("alice", "BTC") == (10**9, 0)
    assert compute_state_hash(e) != before  # the order id was used
    events = e.process(limit("alice", Side.BUY, AIT, 5_000, time_in_force=TimeInForce.FOK))
    assert sum(ev.quantity for ev in events if isinstance(ev, Trade)) == AIT


def test_post_only_never_takes() -> None:
    e = engine()
    e.process(limit("bob", Side.SELL, AIT, 5_000))
    with pytest.raises(OrderRejected) as info:
        e.process(limit("alice", Side.BUY, AIT, 5_000, post_only=True))
    assert info.value.reason == "post_only_would_trade"
    e.process(limit("alice", Side.BUY, AIT, 4_990, post_only=True))
    assert e.book.best_bid() == 4_990


@pytest.mark.parametrize(
    ("stp", "resting_left", "taker_traded"),
    [
        (SelfTradePrevention.CANCEL_RESTING, False, True),
        (SelfTradePrevention.CANCEL_TAKER, True, False),
        (SelfTradePrevention.CANCEL_BOTH, False, False),
    ],
)
def test_self_trade_prevention(stp: SelfTradePrevention, resting_left: bool, taker_traded: bool) -> None:
    e = engine()
    own = e.process(limit("alice", Side.SELL, AIT, 5_000))[0].order_id  # type: ignore[union-attr]
    e.process(limit("bob", Side.SELL, AIT, 5_000))
    events = e.process(limit("alice", Side.BUY, AIT, 5_000, stp=stp))
    assert not any(isinstance(ev, Trade) and ev.buyer == ev.seller for ev in events)
    assert (own in e.book.orders) is resting_left
    assert any(isinstance(ev, Trade) for ev in events) is taker_traded
    check_ledger_invariants(e.ledger)


def test_cancel_releases_hold_and_only_owner_may_cancel() -> None:
    e = engine()
    oid = e.process(limit("alice", Side.SELL, 3 * AIT, 5_000))[0].order_id  # type: ignore[union-attr]
    with pytest.raises(OrderRejected) as info:
        e.process(CancelOrder("bob", oid))
    assert info.value.reason == "unknown_order"
    e.process(CancelOrder("alice", oid))
    assert e.ledger.get_balance("alice", "AITBC") == (1000 * AIT, 0)
    assert e.book.best_ask() is None


@pytest.mark.parametrize(
    ("qty", "price", "reason"),
    [
        (0, 5_000, "non_positive_quantity"),
        (-AIT, 5_000, "non_positive_quantity"),
        (AIT + 1, 5_000, "lot_size"),
        (10**16, 5_000, "quantity_too_large"),
        (AIT, 0, "non_positive_price"),
        (AIT, -10, "non_positive_price"),
        (AIT, 5_005, "tick_size"),
        (AIT, 10**20, "price_too_large"),
        (10**15, 2 * 10**14, "value_too_large"),
        (2000 * AIT, 5_000, "insufficient_balance"),
    ],
)
def test_bad_orders_change_nothing(qty: int, price: int, reason: str) -> None:
    e = engine()
    before = compute_state_hash(e)
    with pytest.raises(OrderRejected) as info:
        e.process(limit("alice", Side.SELL, qty, price))
    assert info.value.reason == reason
    assert compute_state_hash(e) == before


def test_fees_go_to_the_exchange() -> None:
    e = engine(FeeSchedule(maker_bps=10, taker_bps=20))
    e.process(limit("bob", Side.SELL, 10 * AIT, 5_000))
    events = e.process(limit("alice", Side.BUY, 10 * AIT, 5_000))
    trade = next(ev for ev in events if isinstance(ev, Trade))
    assert trade.buyer_fee == 10 * AIT * 20 // 10_000 and trade.seller_fee == 50_000 * 10 // 10_000
    assert e.ledger.fees == {"AITBC": trade.buyer_fee, "BTC": trade.seller_fee}
    check_ledger_invariants(e.ledger)


def test_withdrawal_hold_complete_and_cancel() -> None:
    e = engine()
    e.process(RequestWithdrawal("w1", "alice", "BTC", 1_000))
    assert e.ledger.get_balance("alice", "BTC") == (10**9 - 1_000, 1_000)
    e.process(CompleteWithdrawal("w1"))
    assert e.ledger.get_balance("alice", "BTC") == (10**9 - 1_000, 0)
    e.process(RequestWithdrawal("w2", "alice", "BTC", 1_000))
    e.process(CancelWithdrawal("w2"))
    assert e.ledger.get_balance("alice", "BTC") == (10**9 - 1_000, 0)
    with pytest.raises(OrderRejected):
        e.process(CompleteWithdrawal("w2"))
    assert e.ledger.withdrawals["BTC"] == 1_000
    check_ledger_invariants(e.ledger)


def test_reversed_deposit_cancels_orders_and_leaves_a_debt() -> None:
    e = TradingEngine(SPEC, FeeSchedule(0, 0))
    e.process(Deposit("alice", "BTC", 10_000, "tx1:0"))
    e.process(Deposit("bob", "AITBC", 10 * AIT, "b"))
    e.process(limit("bob", Side.SELL, AIT, 6_000))
    e.process(limit("alice", Side.BUY, AIT, 6_000))  # spends 6,000 of the deposit
    oid = e.process(limit("alice", Side.BUY, AIT // 2, 6_000))[0].order_id  # type: ignore[union-attr]
    events = e.process(ReverseDeposit("alice", "BTC", 10_000, "tx1:0"))
    assert any(isinstance(ev, OrderClosed) and ev.order_id == oid and ev.reason == "deposit_reversed" for ev in events)
    assert e.ledger.get_balance("alice", "BTC") == (-6_000, 0)
    assert e.ledger.get_balance("bob", "BTC") == (6_000, 0)  # the trade stands
    with pytest.raises(OrderRejected) as info:
        e.process(RequestWithdrawal("w", "alice", "AITBC", 1))
    assert info.value.reason == "account_in_debt"
    check_ledger_invariants(e.ledger)


def test_duplicate_deposit_is_refused() -> None:
    e = engine()
    with pytest.raises(OrderRejected) as info:
        e.process(Deposit("alice", "BTC", 5, "btc-alice"))
    assert info.value.reason == "duplicate_reference"
    assert isinstance(e.process(Deposit("alice", "BTC", 5, "new"))[0], Deposited)


def test_book_hash_depends_on_priority() -> None:
    a, b = engine(), engine()
    a.process(limit("alice", Side.BUY, AIT, 5_000))
    a.process(limit("bob", Side.BUY, AIT, 5_000))
    b.process(limit("bob", Side.BUY, AIT, 5_000))
    b.process(limit("alice", Side.BUY, AIT, 5_000))
    assert compute_book_hash(a.book) != compute_book_hash(b.book)
