"""Property tests of the trading engine: any sequence of deposits, orders, cancels, withdrawals and reversed
deposits keeps the book uncrossed, conserves quantity and value, keeps the ledger invariant, journals
double-entry postings that rebuild the same ledger, and replays to the same state hash."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.market.ledger import (
    Event,
    Ledger,
    OrderAccepted,
    OrderClosed,
    Trade,
    apply_postings,
    check_ledger_invariants,
    compute_postings,
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
    Command,
    CompleteWithdrawal,
    Deposit,
    FeeSchedule,
    PlaceOrder,
    RequestWithdrawal,
    ReverseDeposit,
    TradingEngine,
    compute_state_hash,
    rebuild_book,
    replay,
)

SPEC = MarketSpec(tick_size=10, lot_size=100_000)
FEES = FeeSchedule(maker_bps=5, taker_bps=25)
USERS = ("u0", "u1", "u2")

users = st.sampled_from(USERS)
lots = st.integers(min_value=-1, max_value=30).map(lambda n: n * SPEC.lot_size)
prices = st.integers(min_value=-1, max_value=40).map(lambda n: 4_800 + n * SPEC.tick_size)


@st.composite
def place(draw: st.DrawFn) -> PlaceOrder:
    """Mostly well-formed orders (some malformed ones, which must be rejected with nothing changed)."""
    kind = draw(st.sampled_from([OrderType.LIMIT] * 4 + [OrderType.MARKET]))
    price = draw(prices) if kind is OrderType.LIMIT or draw(st.integers(0, 9)) == 0 else None
    tif = draw(st.sampled_from([TimeInForce.GTC] * 3 + [TimeInForce.IOC, TimeInForce.FOK]))
    if kind is OrderType.MARKET and draw(st.integers(0, 9)):
        tif = draw(st.sampled_from([TimeInForce.IOC, TimeInForce.FOK]))
    return PlaceOrder(
        draw(users),
        draw(st.sampled_from(Side)),
        kind,
        draw(lots),
        price,
        tif,
        draw(st.integers(0, 5)) == 0,
        draw(st.sampled_from(SelfTradePrevention)),
    )


deposit = st.builds(
    Deposit,
    users,
    st.sampled_from(("AITBC", "BTC")),
    st.integers(min_value=1, max_value=5_000_000),
    st.integers(min_value=0, max_value=5).map(lambda i: f"d{i}"),
)
reverse = st.builds(
    ReverseDeposit,
    users,
    st.sampled_from(("AITBC", "BTC")),
    st.integers(min_value=1, max_value=5_000_000),
    st.integers(min_value=0, max_value=5).map(lambda i: f"d{i}"),
)
withdraw = st.builds(
    RequestWithdrawal,
    st.integers(min_value=0, max_value=3).map(lambda i: f"w{i}"),
    users,
    st.sampled_from(("AITBC", "BTC")),
    st.integers(min_value=-1, max_value=3_000_000),
)
commands = st.lists(
    st.one_of(
        place(),
        place(),
        place(),
        place(),
        place(),
        deposit,
        st.builds(CancelOrder, users, st.integers(min_value=1, max_value=40)),
        withdraw,
        st.builds(CompleteWithdrawal, st.integers(min_value=0, max_value=3).map(lambda i: f"w{i}")),
        st.builds(CancelWithdrawal, st.integers(min_value=0, max_value=3).map(lambda i: f"w{i}")),
        reverse,
    ),
    min_size=10,
    max_size=80,
)


def seeded(cmds: list[Command]) -> list[Command]:
    """Every user starts with some of both assets, so most orders are accepted."""
    seed: list[Command] = []
    for u in USERS:
        seed += [Deposit(u, "BTC", 2_000_000, f"seed-btc-{u}"), Deposit(u, "AITBC", 300_000_000, f"seed-ait-{u}")]
    return seed + cmds


def check_events(engine: TradingEngine, events: list[Event]) -> None:
    """Quantity and value conservation of one command's events."""
    accepted = {e.order_id: e for e in events if isinstance(e, OrderAccepted)}
    filled: dict[int, int] = defaultdict(int)
    for e in events:
        if isinstance(e, Trade):
            assert e.buyer != e.seller, "self-trade"
            assert e.quantity > 0 and e.value == SPEC.compute_value(e.quantity, e.price)
            assert e.buyer_hold_used >= e.value
            filled[e.taker_order_id] += e.quantity
            filled[e.maker_order_id] += e.quantity
    for oid, acc in accepted.items():
        closed = [e for e in events if isinstance(e, OrderClosed) and e.order_id == oid]
        if closed:
            assert closed[0].filled + closed[0].remaining == acc.quantity
            assert closed[0].filled == filled[oid]
            if acc.order_type == "limit" and acc.side == "buy":
                assert acc.hold == SPEC.compute_value(acc.quantity, acc.price or 0)


@settings(max_examples=150, deadline=None)
@given(commands)
def test_any_sequence_keeps_every_invariant(cmds: list[Command]) -> None:
    cmds = seeded(cmds)
    engine = TradingEngine(SPEC, FEES)
    journal = Ledger((SPEC.base, SPEC.quote))
    log: list[Command] = []
    all_events: list[Event] = []
    for cmd in cmds:
        before = compute_state_hash(engine)
        try:
            events = engine.process(cmd)
        except OrderRejected:
            assert compute_state_hash(engine) == before, "a rejected command changed the state"
            continue
        log.append(cmd)
        all_events += events
        # no crossed book after any command
        assert not engine.book.is_crossed()
        check_events(engine, events)
        # double entry: each event's postings sum to zero per asset, and rebuild the same ledger
        for event in events:
            postings = compute_postings(event, SPEC.base, SPEC.quote)
            for asset in (SPEC.base, SPEC.quote):
                assert sum(p.amount for p in postings if p.asset == asset) == 0
            apply_postings(journal, postings)
        check_ledger_invariants(engine.ledger)
        # every open order's hold is on the book's orders, and held = open order holds + pending withdrawals
        for asset in (SPEC.base, SPEC.quote):
            held: dict[str, int] = defaultdict(int)
            for order in engine.book.orders.values():
                if (order.side is Side.BUY) == (asset == SPEC.quote):
                    held[order.user] += order.hold
            for user, a, amount in engine.withdrawals.values():
                if a == asset:
                    held[user] += amount
            for user, balance in engine.ledger.accounts[asset].items():
                assert balance.held == held[user]
    for asset in (SPEC.base, SPEC.quote):
        for user, balance in engine.ledger.accounts[asset].items():
            assert journal.get_balance(user, asset) == (balance.available, balance.held)
        assert journal.fees[asset] == engine.ledger.fees[asset]
    # replay determinism: the accepted commands give the same events and state hash, bit for bit
    again, replayed = replay(SPEC, FEES, log)
    assert replayed == all_events
    assert compute_state_hash(again) == compute_state_hash(engine)
    # and the book rebuilt from the events alone has the same hash
    assert compute_book_hash(rebuild_book(SPEC, all_events)) == compute_book_hash(engine.book)
