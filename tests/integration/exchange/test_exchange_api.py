"""The exchange's REST API and feed on a real SQLite database: trading, accounts, sessions, 2FA, API keys,
limits, and bad input (each a clear 4xx with nothing changed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
import sqlalchemy as sa
from exchange_harness import AIT, Harness, exchange_process, running, settings_for

from aitbc.exchange.db import schema

BOOK = "/api/v1/markets/AITBC-BTC/book"


def order(h: Harness, user: dict[str, Any], side: str, qty: int, price: int | None = None, **kw: Any) -> Any:
    body = {"side": side, "quantity": qty, **kw}
    if price is not None:
        body["price"] = price
    return h.client.post("/api/v1/orders", json=body, headers=user["h"])


def test_trade_between_two_users_moves_balances(ex: Harness) -> None:
    alice, bob = ex.user("alice"), ex.user("bob")
    ex.fund(alice, btc=100_000)
    ex.fund(bob, ait=10 * AIT)
    r = order(ex, bob, "sell", 2 * AIT, 5_000)
    assert r.status_code == 201 and r.json()["status"] == "open"
    book = ex.client.get(BOOK).json()
    assert book["asks"] == [[5_000, 2 * AIT]] and book["seq"] == 1
    r = order(ex, alice, "buy", AIT, 6_000)
    body = r.json()
    assert body["status"] == "filled" and body["trades"][0]["price"] == 5_000
    fee = AIT * 10 // 10_000
    assert ex.balances(alice) == {"AITBC": {"available": AIT - fee, "held": 0}, "BTC": {"available": 95_000, "held": 0}}
    assert ex.balances(bob)["BTC"] == {"available": 5_000, "held": 0}
    assert ex.balances(bob)["AITBC"] == {"available": 8 * AIT, "held": AIT}
    trades = ex.client.get("/api/v1/markets/AITBC-BTC/trades").json()["trades"]
    assert trades[0]["price"] == 5_000 and trades[0]["quantity"] == AIT
    ticker = ex.client.get("/api/v1/markets/AITBC-BTC/ticker").json()
    assert ticker["last_price"] == 5_000 and ticker["best_ask"] == 5_000 and ticker["volume_24h"] == AIT
    orders = ex.client.get("/api/v1/orders", headers=bob["h"]).json()["orders"]
    assert orders[0]["filled"] == AIT and orders[0]["status"] == "open"
    fills = ex.client.get("/api/v1/fills", headers=alice["h"]).json()["fills"]
    assert fills[0]["side"] == "buy" and fills[0]["fee"] == fee
    oid = orders[0]["order_id"]
    r = ex.client.delete(f"/api/v1/orders/{oid}", headers=bob["h"])
    assert r.status_code == 200 and r.json()["released"] == AIT
    assert ex.client.get(f"/api/v1/orders/{oid}", headers=bob["h"]).json()["status"] == "cancelled"
    assert ex.client.delete(f"/api/v1/orders/{oid}", headers=bob["h"]).status_code == 404


BAD_ORDERS = [
    ({"side": "buy", "price": 5_000}, 422, "invalid_request"),  # no quantity
    ({"side": "hold", "quantity": AIT, "price": 5_000}, 422, "invalid_request"),
    ({"side": "buy", "quantity": "1000000", "price": 5_000}, 422, "invalid_request"),  # a string
    ({"side": "buy", "quantity": 1.5, "price": 5_000}, 422, "invalid_request"),  # a fraction
    ({"side": "buy", "quantity": AIT, "price": 5_000, "extra": 1}, 422, "invalid_request"),
    ({"side": "buy", "quantity": 0, "price": 5_000}, 400, "non_positive_quantity"),
    ({"side": "buy", "quantity": -AIT, "price": 5_000}, 400, "non_positive_quantity"),
    ({"side": "buy", "quantity": 2**80, "price": 5_000}, 400, "quantity_too_large"),
    ({"side": "buy", "quantity": AIT, "price": 2**70}, 400, "price_too_large"),
    ({"side": "buy", "quantity": AIT, "price": 0}, 400, "non_positive_price"),
    ({"side": "buy", "quantity": AIT, "price": -5_000}, 400, "non_positive_price"),
    ({"side": "buy", "quantity": AIT, "price": 5_005}, 400, "tick_size"),
    ({"side": "buy", "quantity": AIT + 1, "price": 5_000}, 400, "lot_size"),
    ({"side": "buy", "quantity": 100 * AIT, "price": 5_000}, 400, "insufficient_balance"),
    ({"side": "sell", "quantity": 100 * AIT, "price": 5_000}, 400, "insufficient_balance"),
    ({"side": "buy", "type": "market", "quantity": AIT, "price": 5_000}, 400, "malformed"),
    ({"side": "buy", "type": "market", "quantity": AIT}, 400, "no_liquidity"),
    ({"side": "buy", "quantity": AIT, "price": 5_000, "market": "ETH-BTC"}, 404, "unknown_market"),
    ({"side": "buy", "quantity": AIT, "price": 5_000, "time_in_force": "ioc", "post_only": True}, 400, "malformed"),
]


@pytest.mark.parametrize(("body", "status", "reason"), BAD_ORDERS)
def test_bad_orders_are_clear_4xx_with_nothing_changed(
    ex: Harness, body: dict[str, Any], status: int, reason: str
) -> None:
    alice = ex.user("alice")
    ex.fund(alice, btc=100_000, ait=10 * AIT)
    before, balances = ex.state(), ex.balances(alice)
    r = ex.client.post("/api/v1/orders", json=body, headers=alice["h"])
    assert r.status_code == status, r.text
    assert r.json()["error"]["reason"] == reason
    assert ex.state() == before and ex.balances(alice) == balances


def test_credentials_sessions_and_api_key_scopes(ex: Harness) -> None:
    alice = ex.user("alice")
    assert ex.client.post("/api/v1/users", json={"username": "alice", "password": "x" * 12}).status_code == 409
    assert ex.client.post("/api/v1/users", json={"username": "al", "password": "x" * 12}).status_code == 422
    r = ex.client.post("/api/v1/sessions", json={"username": "alice", "password": "wrong password"})
    assert r.status_code == 401
    assert ex.client.get("/api/v1/balances").status_code == 401
    assert ex.client.get("/api/v1/balances", headers={"Authorization": "Bearer s_nope"}).status_code == 401
    me = ex.client.get("/api/v1/users/me", headers=alice["h"]).json()
    assert me["username"] == "alice" and me["totp_enabled"] is False
    # API keys: a read-only key reads but cannot trade; a revoked key is refused
    r = ex.client.post("/api/v1/api-keys", json={"label": "bot", "scopes": ["read"]}, headers=alice["h"])
    key = {"Authorization": f"Bearer {r.json()['token']}"}
    assert ex.client.get("/api/v1/balances", headers=key).status_code == 200
    r = order(ex, {"h": key}, "buy", AIT, 5_000)
    assert r.status_code == 403 and r.json()["error"]["reason"] == "missing_scope"
    bad = ex.client.post("/api/v1/api-keys", json={"label": "x", "scopes": ["admin"]}, headers=alice["h"])
    assert bad.status_code == 400
    key_id = ex.client.get("/api/v1/api-keys", headers=alice["h"]).json()["api_keys"][0]["id"]
    assert ex.client.delete(f"/api/v1/api-keys/{key_id}", headers=alice["h"]).status_code == 200
    assert ex.client.get("/api/v1/balances", headers=key).status_code == 401
    # a revoked session is refused at once
    second = ex.client.post("/api/v1/sessions", json={"username": "alice", "password": "correct horse battery"}).json()
    h2 = {"Authorization": f"Bearer {second['token']}"}
    assert ex.client.get("/api/v1/balances", headers=h2).status_code == 200
    assert ex.client.delete("/api/v1/sessions/current", headers=h2).status_code == 200
    r = ex.client.get("/api/v1/balances", headers=h2)
    assert r.status_code == 401 and r.json()["error"]["reason"] == "session_revoked"
    # an expired session is refused
    third = ex.client.post("/api/v1/sessions", json={"username": "alice", "password": "correct horse battery"}).json()
    ex.service.store.execute(
        schema.sessions.update().where(schema.sessions.c.id == third["session_id"]).values(expires_at_ms=1)
    )
    r = ex.client.get("/api/v1/balances", headers={"Authorization": f"Bearer {third['token']}"})
    assert r.status_code == 401 and r.json()["error"]["reason"] == "session_expired"
    actions = [a["action"] for a in ex.client.get("/api/v1/audit", headers=alice["h"]).json()["audit"]]
    assert {"sign_up", "login", "login_failed", "api_key_created", "api_key_revoked", "session_revoked"} <= set(actions)


def test_totp_setup_enable_replay_and_disable(ex: Harness) -> None:
    alice = ex.user("alice")
    setup = ex.client.post("/api/v1/2fa/setup", headers=alice["h"]).json()
    assert setup["otpauth_uri"].startswith("otpauth://totp/") and "secret=" in setup["otpauth_uri"]
    svg = ex.client.get("/api/v1/2fa/qr.svg", headers=alice["h"])
    assert svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content
    png = ex.client.get("/api/v1/2fa/qr.png", headers=alice["h"])
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    totp = pyotp.TOTP(setup["secret"])
    r = ex.client.post(
        "/api/v1/2fa/enable", json={"code": "000000" if totp.now() != "000000" else "111111"}, headers=alice["h"]
    )
    assert r.status_code == 401 and r.json()["error"]["reason"] == "totp_invalid"
    code = totp.now()
    assert ex.client.post("/api/v1/2fa/enable", json={"code": code}, headers=alice["h"]).status_code == 200
    # login now needs a code; the code just used is refused (replay), the next step's code works
    login = {"username": "alice", "password": "correct horse battery"}
    r = ex.client.post("/api/v1/sessions", json=login)
    assert r.status_code == 403 and r.json()["error"]["reason"] == "2fa_required"
    r = ex.client.post("/api/v1/sessions", json=login | {"totp": code})
    assert r.status_code == 401 and r.json()["error"]["reason"] == "totp_replayed"
    r = ex.client.post("/api/v1/sessions", json=login | {"totp": totp.at(time.time() + 30)})
    assert r.status_code == 201
    # turning 2FA off needs a fresh code
    r = ex.client.post("/api/v1/2fa/disable", json={"code": totp.at(time.time() + 30)}, headers=alice["h"])
    assert r.status_code == 401 and r.json()["error"]["reason"] == "totp_replayed"
    assert ex.client.get("/api/v1/users/me", headers=alice["h"]).json()["totp_enabled"] is True


def test_rate_limit(tmp_path: Path) -> None:
    with running(settings_for(tmp_path, rate_limit_per_second=0.001, rate_limit_burst=2)) as h:
        alice = h.user("alice")
        h.fund(alice, btc=100_000)
        assert order(h, alice, "buy", AIT, 1_000).status_code == 201
        assert order(h, alice, "buy", AIT, 1_000).status_code == 201
        before = h.state()
        r = order(h, alice, "buy", AIT, 1_000)
        assert r.status_code == 429 and h.state() == before


def test_body_limit_on_the_real_server(tmp_path: Path) -> None:
    """The transport's limit (aitbc.runtime.limits) wraps the app and its fast path: declared or chunked."""
    with exchange_process(tmp_path / "ex", {}) as url:
        big = b"{" + b" " * 20_000 + b"}"
        headers = {"content-type": "application/json", "authorization": "Bearer s_x"}
        r = httpx.post(f"{url}/api/v1/orders", content=big, headers=headers)
        assert r.status_code == 413 and r.json()["error"]["reason"] == "too_large"

        def chunks() -> Iterator[bytes]:
            for _ in range(40):
                yield b" " * 1_000

        r = httpx.post(f"{url}/api/v1/orders", content=chunks(), headers=headers)
        assert r.status_code == 413


@pytest.mark.timeout(60)
def test_feed_snapshot_deltas_trades_and_own_orders(ex: Harness) -> None:
    alice, bob = ex.user("alice"), ex.user("bob")
    ex.fund(alice, btc=100_000)
    ex.fund(bob, ait=10 * AIT)
    with ex.client.websocket_connect("/api/v1/ws") as ws:
        ws.send_json({"op": "subscribe", "channels": ["book", "trades", "orders"], "token": alice["token"]})
        assert ws.receive_json()["type"] == "subscribed"
        snap = ws.receive_json()
        assert snap["type"] == "book_snapshot" and snap["seq"] == 0 and snap["bids"] == []
        order(ex, bob, "sell", 2 * AIT, 5_000)
        delta = ws.receive_json()
        assert delta == {"type": "book_delta", "market": "AITBC-BTC", "seq": 1, "changes": [["sell", 5_000, 2 * AIT]]}
        order(ex, alice, "buy", AIT, 5_000)
        kinds = []
        while len(kinds) < 5:
            kinds.append(ws.receive_json())
        types = [m["type"] for m in kinds]
        assert "trade" in types and "fill" in types and "order" in types
        delta = next(m for m in kinds if m["type"] == "book_delta")
        assert delta["seq"] == 2 and delta["changes"] == [["sell", 5_000, AIT]]
        ws.send_json({"op": "nonsense"})
        assert ws.receive_json()["reason"] == "malformed"


def test_restart_replays_to_the_same_state(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with running(settings) as h:
        alice, bob = h.user("alice"), h.user("bob")
        h.fund(alice, btc=100_000)
        h.fund(bob, ait=10 * AIT)
        order(h, bob, "sell", 3 * AIT, 5_000)
        order(h, alice, "buy", AIT, 5_100)
        order(h, alice, "buy", AIT, 4_000)
        state = h.state()
    with running(settings) as h:
        assert h.state() == state
        assert h.balances(alice)["BTC"]["held"] == 4_000
        assert h.client.get(BOOK).json()["bids"] == [[4_000, AIT]]


def test_ops_endpoints_and_openapi(ex: Harness) -> None:
    assert ex.client.get("/healthz").json()["status"] == "ok"
    metrics = ex.client.get("/metrics").text
    assert "exchange_orders_accepted_total" in metrics
    paths = ex.client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/orders",
        "/api/v1/markets/{symbol}/book",
        "/api/v1/sessions",
        "/api/v1/2fa/enable",
        "/api/v1/api-keys",
        "/api/v1/balances",
    ):
        assert path in paths
    with ex.service.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.commands)).scalar() == 0


def test_browser_orders_get_cors_headers(tmp_path: Path) -> None:
    """An order from the web app's origin goes through the CORS middleware, not around it (fast path)."""
    with running(settings_for(tmp_path, cors_origins=["http://web.test"])) as h:
        alice = h.user("alice")
        h.fund(alice, btc=100_000)
        r = h.client.post(
            "/api/v1/orders",
            json={"side": "buy", "quantity": AIT, "price": 1_000},
            headers=alice["h"] | {"Origin": "http://web.test"},
        )
        assert r.status_code == 201 and r.headers["access-control-allow-origin"] == "http://web.test"


@pytest.mark.timeout(60)
def test_feed_ticker_and_resync_snapshot(ex: Harness) -> None:
    alice, bob = ex.user("alice"), ex.user("bob")
    ex.fund(alice, btc=100_000)
    ex.fund(bob, ait=10 * AIT)
    order(ex, bob, "sell", 2 * AIT, 5_000)
    with ex.client.websocket_connect("/api/v1/ws") as ws:
        ws.send_json({"op": "subscribe", "channels": ["ticker"]})
        assert ws.receive_json()["type"] == "subscribed"
        first = ws.receive_json()
        assert first["type"] == "ticker" and first["best_ask"] == 5_000 and first["last_price"] is None
        order(ex, alice, "buy", AIT, 5_000)
        ticker = ws.receive_json()
        assert ticker["type"] == "ticker" and ticker["last_price"] == 5_000 and ticker["volume_24h"] == AIT
        ws.send_json({"op": "snapshot", "depth": 5})
        snap = ws.receive_json()
        assert snap["type"] == "book_snapshot" and snap["asks"] == [[5_000, AIT]] and snap["seq"] == 2
        ws.send_json({"op": "subscribe", "channels": ["orders"], "token": "s_wrong"})
        assert ws.receive_json()["reason"] == "unauthorized"


def test_journal_check_while_orders_are_being_committed(ex: Harness) -> None:
    """The running check compares memory and journal at one committed command: no false alarm under load."""
    import asyncio

    from aitbc.market.orderbook import OrderType, Side
    from aitbc.market.trading import PlaceOrder

    alice, bob = ex.user("alice"), ex.user("bob")
    ex.fund(alice, btc=10**9)
    ex.fund(bob, ait=10**6 * AIT)

    async def trade_and_check() -> None:
        orders = [
            ex.service.submit(PlaceOrder(str(u["id"]), side, OrderType.LIMIT, AIT, 5_000 + 10 * (i % 7)))
            for i in range(300)
            for u, side in ((bob, Side.SELL), (alice, Side.BUY))
        ]
        tasks = [asyncio.ensure_future(o) for o in orders]
        for _ in range(5):
            await asyncio.sleep(0)
            await ex.service.check_all_invariants()
        await asyncio.gather(*tasks)
        await ex.service.check_all_invariants()

    ex.run(trade_and_check())
    assert ex.service.committed_seq > 600
