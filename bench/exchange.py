"""Exchange benchmark: orders per second in process, beside a raw-book baseline in the same run.

1. **In process.** ``aitbc.market.trading.TradingEngine`` (validation of every field, tick/lot, overflow,
   the balance check and hold, matching, fees, the ledger moves and the events): ``--orders`` random
   orders from ``--users`` funded users — limit orders around a drifting mid (about a third cross and
   trade), 5 % market IOC, 5 % cancels of a live order. **Baseline**: the same order stream on the bare
   ``aitbc.market.orderbook.OrderBook`` (``match`` + ``add`` / ``remove``, no validation, no ledger, no
   events): the strongest honest floor for a Python book. Reported: orders/s of each and the ratio.
2. **Replay**: the accepted commands fed to a fresh engine, its state hash compared (and its speed).
3. **Over the API**: ``python -m aitbc exchange run`` (one process, SQLite WAL, group commit) with
   ``--api-users`` users holding API keys and funded through the command log before start; ``--api-orders``
   ``POST /api/v1/orders`` from ``--concurrency`` keep-alive connections, closed loop, the same order mix
   (every answer is read after the order is committed to the database). Per-user rate limits are raised
   for the run (the default 50/s per user would throttle it: that is the limit working, not the engine).
   **Baseline**: ``GET /healthz`` on the same connections (the HTTP floor of this server). Reported:
   orders/s, p50/p99 latency, and the machine's load average (the machine is shared).

Targets (issue 19): in process >= 100,000 orders/s with validation and balance checks; over the API
>= 2,000 orders/s with p99 <= 20 ms.

    .venv/bin/python bench/exchange.py             # full run
    .venv/bin/python bench/exchange.py --quick     # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

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
    parser.add_argument("--api-orders", type=int, default=20_000)
    parser.add_argument("--api-users", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-api", action="store_true")
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
    if not same:
        raise SystemExit(1)
    if not args.no_api:
        api_bench(3_000 if args.quick else args.api_orders, args.api_users, args.concurrency, args.seed)
    print(f"# load average after: {os.getloadavg()}")


# -- over the API --------------------------------------------------------------------------------------


def seed_exchange(data_dir: Path, users: int) -> list[str]:
    """Users with trade-scoped API keys, funded by Deposit commands in the log (as the watchers would)."""
    from aitbc.exchange.accounts import Accounts
    from aitbc.exchange.config import ExchangeSettings
    from aitbc.exchange.store import Entry, ExchangeStore

    settings = ExchangeSettings(**exchange_env_settings(data_dir))
    store = ExchangeStore(settings.sqlalchemy_url, SPEC.base, SPEC.quote)
    accounts = Accounts(settings, store)
    engine = TradingEngine(SPEC, FEES)
    tokens, entries, seq = [], [], 0
    now = int(time.time() * 1000)
    for i in range(users):
        uid = accounts.create_user(f"bench{i}", "unused-hash")
        tokens.append(accounts.create_api_key(uid, "bench", ["read", "trade"])[1])
        for asset, amount in (("BTC", 10**14), ("AITBC", 10**15)):
            seq += 1
            cmd = Deposit(str(uid), asset, amount, f"seed-{asset}-{uid}")
            entries.append(Entry(seq, now, cmd, engine.process(cmd)))
    store.write_batch(entries)
    store.close()
    return tokens


def exchange_env_settings(data_dir: Path) -> dict[str, Any]:
    return {
        "data_dir": data_dir,
        "market": {
            "tick_size": SPEC.tick_size,
            "lot_size": SPEC.lot_size,
            "maker_fee_bps": FEES.maker_bps,
            "taker_fee_bps": FEES.taker_bps,
        },
        "rate_limit_per_second": 1e9,
        "rate_limit_burst": 10**9,
        "max_open_orders_per_user": 10**9,
    }


ENV = {
    "AITBC_EXCHANGE_MARKET__TICK_SIZE": str(SPEC.tick_size),
    "AITBC_EXCHANGE_MARKET__LOT_SIZE": str(SPEC.lot_size),
    "AITBC_EXCHANGE_MARKET__MAKER_FEE_BPS": str(FEES.maker_bps),
    "AITBC_EXCHANGE_MARKET__TAKER_FEE_BPS": str(FEES.taker_bps),
    "AITBC_EXCHANGE_RATE_LIMIT_PER_SECOND": "1e9",
    "AITBC_EXCHANGE_RATE_LIMIT_BURST": str(10**9),
    "AITBC_EXCHANGE_MAX_OPEN_ORDERS_PER_USER": str(10**9),
}


async def _http_loop(port: int, requests: list[bytes], latencies: list[float], statuses: dict[int, int]) -> None:
    """One keep-alive HTTP/1.1 connection, requests one after another (a minimal client: the server is measured)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for raw in requests:
            t0 = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            status = int(head[9:12])
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def _post(path: str, token: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def _run_load(port: int, per_conn: list[list[bytes]]) -> tuple[float, list[float], dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def main() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(_http_loop(port, reqs, latencies, statuses) for reqs in per_conn))
        return time.perf_counter() - t0

    return asyncio.run(main()), latencies, statuses


def api_bench(n: int, users: int, concurrency: int, seed: int) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="i19-exchange-bench-", dir="/tmp"))
    proc = None
    try:
        tokens = seed_exchange(data_dir, users)
        port = _free_port()
        log = (data_dir / "server.log").open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")} | ENV
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aitbc",
                "exchange",
                "run",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"exchange did not start: {(data_dir / 'server.log').read_text()}")
            time.sleep(0.1)
        # the same order mix as in process, limit and market orders only (a cancel needs the id of a live order)
        rng = random.Random(seed)
        stream = [c for c in make_stream(n * 2, users, seed) if type(c) is PlaceOrder][:n]
        reqs = []
        for cmd in stream:
            body: dict[str, Any] = {"side": str(cmd.side), "type": str(cmd.order_type), "quantity": cmd.quantity}
            if cmd.price is not None:
                body["price"] = cmd.price
            reqs.append(_post("/api/v1/orders", tokens[int(cmd.user[4:]) % len(tokens)], body))
        rng.shuffle(tokens)
        per_conn = [reqs[i::concurrency] for i in range(concurrency)]
        health = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"
        base_s, base_lat, _ = _run_load(port, [[health] * (len(r)) for r in per_conn])
        load_before = os.getloadavg()
        api_s, lat, statuses = _run_load(port, per_conn)
        load_after = os.getloadavg()
        check = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
        print(
            f"over the API, {len(reqs):,} POST /api/v1/orders, {concurrency} keep-alive connections, "
            f"{users} users (server: 1 process, SQLite WAL, group commit):"
        )
        print(
            f"  orders: {len(reqs) / api_s:>8,.0f}/s   p50 {pct(lat, 50) * 1000:6.2f} ms   "
            f"p99 {pct(lat, 99) * 1000:6.2f} ms   statuses {statuses}"
        )
        print(
            f"  baseline GET /healthz: {len(base_lat) / base_s:>8,.0f}/s   p50 {pct(base_lat, 50) * 1000:6.2f} ms   "
            f"p99 {pct(base_lat, 99) * 1000:6.2f} ms"
        )
        print(
            f"  ratio orders / healthz: {base_s / api_s:.2f};  targets >= 2,000 orders/s: "
            f"{'met' if len(reqs) / api_s >= 2000 else 'NOT met'}, p99 <= 20 ms: "
            f"{'met' if pct(lat, 99) <= 0.020 else 'NOT met'}"
        )
        print(
            f"  committed commands {check['committed_seq']:,}; load average during "
            f"{load_before[0]:.2f} -> {load_after[0]:.2f}"
        )
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    main()
