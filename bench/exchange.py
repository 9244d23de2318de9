"""Exchange benchmark: orders per second in process, beside a raw-book baseline in the same run.

1. **In process.** ``aitbc.market.trading.TradingEngine`` (validation of every field, tick/lot, overflow,
   the balance check and hold, matching, fees, the ledger moves and the events): ``--orders`` random
   orders from ``--users`` funded users — limit orders around a drifting mid (about a third cross and
   trade), 5 % market IOC, 5 % cancels of a live order. **Baseline**: the same order stream on the bare
   ``aitbc.market.orderbook.OrderBook`` (``match`` + ``add`` / ``remove``, no validation, no ledger, no
   events): the strongest honest floor for a Python book. Reported: orders/s of each and the ratio.
2. **Replay**: the accepted commands fed to a fresh engine, its state hash compared (and its speed).

Target (issue 19): in process >= 100,000 orders/s with validation and balance checks.

    .venv/bin/python bench/exchange.py             # full run
    .venv/bin/python bench/exchange.py --quick     # smoke run
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import time

from aitbc.market.orderbook import MarketSpec, Order, OrderBook, OrderRejected, OrderType, SelfTradePrevention, Side
from aitbc.market.trading import (
    CancelOrder,
    Command,
    Deposit,
    FeeSchedule,
    PlaceOrder,
    TimeInForce,
    TradingEngine,
    compute_state_hash,
    replay,
)

SPEC = MarketSpec(tick_size=10, lot_size=100_000)
FEES = FeeSchedule(maker_bps=5, taker_bps=20)


def make_stream(n: int, users: int, seed: int) -> list[Command]:
    rng = random.Random(seed)
    mid = 5_000
    stream: list[Command] = []
    names = [f"user{i}" for i in range(users)]
    next_id = 1  # order ids the engine will give (approximately: a cancel may hit a closed order, then it is rejected)
    for _ in range(n):
        r = rng.random()
        user = rng.choice(names)
        if r < 0.05 and next_id > 1:
            stream.append(CancelOrder(user, rng.randrange(max(1, next_id - 200), next_id)))
            continue
        mid = max(1_000, mid + rng.choice((-10, 0, 10)))
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        qty = rng.randint(1, 20) * SPEC.lot_size
        if r < 0.10:
            stream.append(PlaceOrder(user, side, OrderType.MARKET, qty, None, TimeInForce.IOC))
        else:
            offset = rng.randint(-3, 12) * SPEC.tick_size
            price = mid - offset if side is Side.BUY else mid + offset
            stream.append(PlaceOrder(user, side, OrderType.LIMIT, qty, price))
        next_id += 1
    return stream


def funded_engine(users: int) -> TradingEngine:
    engine = TradingEngine(SPEC, FEES)
    for i in range(users):
        engine.process(Deposit(f"user{i}", "BTC", 10**14, f"b{i}"))
        engine.process(Deposit(f"user{i}", "AITBC", 10**15, f"a{i}"))
    return engine


def run_engine(engine: TradingEngine, stream: list[Command]) -> tuple[float, list[Command], int]:
    accepted: list[Command] = []
    rejected = 0
    process = engine.process
    append = accepted.append
    t0 = time.perf_counter()
    for cmd in stream:
        try:
            process(cmd)
            append(cmd)
        except OrderRejected:
            rejected += 1
    return time.perf_counter() - t0, accepted, rejected


def run_raw_book(stream: list[Command]) -> float:
    """The same stream on the bare book: match, then rest the rest of a limit order; cancels remove."""
    book = OrderBook(SPEC)
    orders = book.orders
    next_id = 1
    stp = SelfTradePrevention.CANCEL_RESTING
    t0 = time.perf_counter()
    for cmd in stream:
        if type(cmd) is CancelOrder:
            order = orders.get(cmd.order_id)
            if order is not None:
                book.remove(order)
            continue
        assert type(cmd) is PlaceOrder
        _, _, remaining, _ = book.match(cmd.side, cmd.quantity, cmd.price, cmd.user, stp)
        if remaining and cmd.price is not None:
            order = Order(next_id, cmd.user, cmd.side, cmd.price, cmd.quantity)
            order.remaining = remaining
            book.add(order)
        next_id += 1
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 30_000 if args.quick else args.orders
    print(f"# bench/exchange.py  python {platform.python_version()}  {os.cpu_count()} cpus  load {os.getloadavg()}")
    print(f"# market {SPEC.symbol}: lot {SPEC.lot_size}, tick {SPEC.tick_size}; fees {FEES}; {args.users} users")
    stream = make_stream(n, args.users, args.seed)
    gc.collect()
    gc.freeze()
    raw_s = run_raw_book(stream)
    engine = funded_engine(args.users)
    eng_s, accepted, rejected = run_engine(engine, stream)
    trades = engine.next_trade_id - 1
    print(f"in process, {n:,} orders ({rejected:,} rejected, {trades:,} trades, {len(engine.book.orders):,} resting):")
    print(f"  engine (validation + balance checks + ledger + events): {n / eng_s:>10,.0f} orders/s")
    print(f"  baseline raw book (match + rest, nothing else):          {n / raw_s:>10,.0f} orders/s")
    print(
        f"  ratio engine / raw book: {raw_s / eng_s:.2f}   target >= 100,000 orders/s: "
        f"{'met' if n / eng_s >= 100_000 else 'NOT met'}"
    )
    seed_cmds: list[Command] = []
    for i in range(args.users):
        seed_cmds += [Deposit(f"user{i}", "BTC", 10**14, f"b{i}"), Deposit(f"user{i}", "AITBC", 10**15, f"a{i}")]
    t0 = time.perf_counter()
    again, _ = replay(SPEC, FEES, seed_cmds + accepted)
    rep_s = time.perf_counter() - t0
    same = compute_state_hash(again) == compute_state_hash(engine)
    print(
        f"replay of {len(accepted):,} accepted commands: {len(accepted) / rep_s:,.0f}/s, "
        f"state hash {'identical' if same else 'DIFFERENT'} ({compute_state_hash(engine)[:16]}…)"
    )
    print(f"# load average after: {os.getloadavg()}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
