"""REST routes under ``/api/v1``: markets, book, trades, ticker, orders, balances, users, sessions, 2FA,
API keys, audit (deposits and withdrawals: ``aitbc.exchange.funds``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import segno
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Query, Response

from aitbc.exchange.accounts import Principal
from aitbc.exchange.db import schema
from aitbc.exchange.schemas import Login, NewApiKey, NewOrder, SignUp, TotpBody
from aitbc.exchange.service import ExchangeService
from aitbc.market.ledger import OrderAccepted, OrderClosed, OrderRested, Trade
from aitbc.market.orderbook import OrderType, TimeInForce
from aitbc.market.trading import CancelOrder, PlaceOrder
from aitbc.protocol.errors import Forbidden, NotFound, Unauthorized

AuthDep = Callable[..., Awaitable[Principal]]


def make_auth(service: ExchangeService) -> Callable[[str], AuthDep]:
    def needs(scope: str) -> AuthDep:
        async def dependency(authorization: Annotated[str | None, Header()] = None) -> Principal:
            return authenticate_header(service, authorization, scope)

        return dependency

    return needs


def order_view(order_id: int, events: list[Any]) -> dict[str, Any]:
    """The outcome of one order submission, from its events."""
    view: dict[str, Any] = {"order_id": order_id, "status": "new", "trades": []}
    for e in events:
        if isinstance(e, OrderAccepted) and e.order_id == order_id:
            view.update(
                side=str(e.side),
                type=str(e.order_type),
                price=e.price,
                quantity=e.quantity,
                time_in_force=str(e.time_in_force),
                post_only=e.post_only,
                filled=0,
                remaining=e.quantity,
            )
        elif isinstance(e, Trade) and order_id in (e.taker_order_id, e.maker_order_id):
            view["filled"] += e.quantity
            view["remaining"] -= e.quantity
            view["trades"].append(
                {
                    "trade_id": e.trade_id,
                    "price": e.price,
                    "quantity": e.quantity,
                    "value": e.value,
                    "fee": e.buyer_fee if str(e.taker_side) == "buy" else e.seller_fee,
                }
            )
        elif isinstance(e, OrderRested) and e.order_id == order_id:
            view["status"] = "open"
        elif isinstance(e, OrderClosed) and e.order_id == order_id:
            view["status"] = "filled" if e.reason == "filled" else "cancelled"
            view["reason"] = str(e.reason)
    return view


def _order_row(r: Any) -> dict[str, Any]:
    return {
        "order_id": r.order_id,
        "client_order_id": r.client_order_id,
        "side": r.side,
        "type": r.order_type,
        "time_in_force": r.time_in_force,
        "price": r.price,
        "quantity": r.quantity,
        "filled": r.filled,
        "remaining": r.quantity - r.filled if r.status in ("open", "new") else 0,
        "status": r.status,
        "reason": r.reason,
        "created_at_ms": r.created_at_ms,
        "updated_at_ms": r.updated_at_ms,
    }


async def place_order(service: ExchangeService, p: Principal, body: NewOrder) -> dict[str, Any]:
    """``POST /api/v1/orders`` after parsing: market, rate limit, open-order cap, then the trading rules."""
    if body.market != service.spec.symbol:
        raise NotFound(
            f"no market {body.market!r} (this exchange lists {service.spec.symbol})", reason="unknown_market"
        )
    service.accounts.check_rate(p.user_id)
    cap = service.settings.max_open_orders_per_user
    if service.open_order_count(p.engine_user) >= cap:
        raise Forbidden(f"at most {cap} open orders", reason="too_many_orders")
    tif = body.time_in_force or (TimeInForce.GTC if body.type is OrderType.LIMIT else TimeInForce.IOC)
    command = PlaceOrder(
        p.engine_user,
        body.side,
        body.type,
        body.quantity,
        body.price,
        tif,
        body.post_only,
        body.self_trade_prevention,
    )
    events = await service.submit(command, client_order_id=body.client_order_id)
    first = events[0]
    assert isinstance(first, OrderAccepted)
    return order_view(first.order_id, events) | {"client_order_id": body.client_order_id}


def authenticate_header(service: ExchangeService, authorization: str | None, scope: str) -> Principal:
    if authorization is None or not authorization.startswith("Bearer "):
        raise Unauthorized("this endpoint needs Authorization: Bearer <session token or API key>")
    principal = service.accounts.authenticate(authorization[7:].strip())
    principal.require(scope)
    return principal


def build_router(service: ExchangeService) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    needs = make_auth(service)
    reader, trader = Depends(needs("read")), Depends(needs("trade"))
    accounts = service.accounts
    spec = service.spec
    # each Argon2id run holds password_memlimit bytes (64 MiB): a bounded number at once, the rest wait
    argon2_slots = asyncio.Semaphore(service.settings.password_hash_concurrency)

    def check_market(symbol: str) -> None:
        if symbol != spec.symbol:
            raise NotFound(f"no market {symbol!r} (this exchange lists {spec.symbol})", reason="unknown_market")

    # -- public market data ------------------------------------------------------------------
    @router.get("/markets", tags=["market"], summary="Markets with their units, lot and tick sizes, fees")
    async def markets() -> dict[str, Any]:
        return {
            "markets": [
                {
                    "symbol": spec.symbol,
                    "base": spec.base,
                    "quote": spec.quote,
                    "base_unit": "1 AITBC = 1,000,000 base units",
                    "quote_unit": "satoshi",
                    "price_scale": spec.price_scale,
                    "tick_size": spec.tick_size,
                    "lot_size": spec.lot_size,
                    "max_quantity": spec.max_quantity,
                    "max_price": spec.max_price,
                    "maker_fee_bps": service.fees.maker_bps,
                    "taker_fee_bps": service.fees.taker_bps,
                }
            ]
        }

    @router.get("/markets/{symbol}/book", tags=["market"], summary="Order book levels with the feed sequence")
    async def book(symbol: str, depth: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
        check_market(symbol)
        return service.book_snapshot(depth)

    @router.get("/markets/{symbol}/trades", tags=["market"], summary="Latest trades, newest first")
    async def trades(symbol: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        check_market(symbol)
        recent = list(service.trades)[-limit:][::-1]
        return {
            "trades": [
                {
                    "trade_id": t.trade_id,
                    "at_ms": at,
                    "price": t.price,
                    "quantity": t.quantity,
                    "value": t.value,
                    "taker_side": str(t.taker_side),
                }
                for at, t in recent
            ]
        }

    @router.get("/markets/{symbol}/ticker", tags=["market"], summary="Last price, best bid/ask, 24 h statistics")
    async def ticker(symbol: str) -> dict[str, Any]:
        check_market(symbol)
        return service.ticker()

    # -- users and sessions --------------------------------------------------------------------
    @router.post("/users", tags=["users"], status_code=201, summary="Sign up")
    async def sign_up(body: SignUp) -> dict[str, Any]:
        async with argon2_slots:
            password_hash = await asyncio.to_thread(accounts.hash_password, body.password)
        user_id = accounts.create_user(body.username, password_hash)
        return {"user_id": user_id, "username": body.username}

    @router.get("/users/me", tags=["users"], summary="The caller's account")
    async def me(p: Principal = reader) -> dict[str, Any]:
        user = accounts.get_user(p.user_id)
        return {
            "user_id": user.id,
            "username": user.username,
            "totp_enabled": user.totp_enabled,
            "is_operator": user.is_operator,
            "created_at_ms": user.created_at_ms,
            "scopes": sorted(p.scopes),
            "in_debt": service.engine.ledger.is_in_debt(p.engine_user),
        }

    @router.post("/sessions", tags=["sessions"], status_code=201, summary="Log in: a session token")
    async def login(body: Login) -> dict[str, Any]:
        key = f"login:{body.username}"
        accounts.check_login_throttle(key)
        user = accounts.find_user(body.username)
        # an unknown user costs the same Argon2id verification (no timing oracle for usernames)
        stored = user.password_hash if user is not None else accounts.dummy_hash
        async with argon2_slots:
            ok = await asyncio.to_thread(accounts.is_password_ok, stored, body.password) and user is not None
        if not ok:
            accounts.note_failure(key)
            accounts.audit(user.id if user is not None else None, "login_failed", username=body.username)
            raise Unauthorized("wrong username or password")
        if user.totp_enabled:
            if body.totp is None:
                raise Forbidden("this account has 2FA: send the current code as totp", reason="2fa_required")
            accounts.check_totp(user.id, body.totp)
        session_id, token, expires = accounts.create_session(user)
        return {"session_id": session_id, "token": token, "expires_at_ms": expires, "user_id": user.id}

    @router.get("/sessions", tags=["sessions"], summary="The caller's sessions")
    async def list_sessions(p: Principal = reader) -> dict[str, Any]:
        return {"sessions": accounts.list_sessions(p.user_id), "current": p.session_id}

    @router.delete("/sessions/{session_id}", tags=["sessions"], summary="Revoke a session ('current': log out)")
    async def revoke_session(session_id: str, p: Principal = reader) -> dict[str, Any]:
        target = p.session_id if session_id == "current" else session_id
        if target is None:
            raise NotFound("an API key has no current session")
        accounts.revoke_session(p.user_id, target)
        return {"revoked": target}

    # -- 2FA -------------------------------------------------------------------------------------
    @router.post("/2fa/setup", tags=["2fa"], summary="A new TOTP secret and its otpauth:// URI (confirm to enable)")
    async def totp_setup(p: Principal = trader) -> dict[str, Any]:
        _require_session(p)
        secret, uri = accounts.begin_totp(p.user_id)
        return {"secret": secret, "otpauth_uri": uri, "qr_svg": "/api/v1/2fa/qr.svg", "qr_png": "/api/v1/2fa/qr.png"}

    @router.get("/2fa/qr.{fmt}", tags=["2fa"], summary="QR code of the pending otpauth:// URI (svg or png)")
    async def totp_qr(fmt: str, p: Principal = trader) -> Response:
        _require_session(p)
        user = accounts.get_user(p.user_id)
        if not user.totp_secret or user.totp_enabled:
            raise NotFound("no 2FA setup in progress")
        return qr_response(accounts.otpauth_uri(user.username, user.totp_secret), fmt)

    @router.post("/2fa/enable", tags=["2fa"], summary="Confirm the setup with a current code")
    async def totp_enable(body: TotpBody, p: Principal = trader) -> dict[str, Any]:
        _require_session(p)
        accounts.check_totp(p.user_id, body.code)
        accounts.set_totp_enabled(p.user_id, True)
        return {"totp_enabled": True}

    @router.post("/2fa/disable", tags=["2fa"], summary="Turn 2FA off (needs a current code)")
    async def totp_disable(body: TotpBody, p: Principal = trader) -> dict[str, Any]:
        _require_session(p)
        if not accounts.get_user(p.user_id).totp_enabled:
            raise Forbidden("2FA is not on", reason="2fa_required")
        accounts.check_totp(p.user_id, body.code)
        accounts.set_totp_enabled(p.user_id, False)
        return {"totp_enabled": False}

    # -- API keys ----------------------------------------------------------------------------------
    @router.post("/api-keys", tags=["api keys"], status_code=201, summary="New API key (the token is shown once)")
    async def new_key(body: NewApiKey, p: Principal = trader) -> dict[str, Any]:
        _require_session(p)
        key_id, token = accounts.create_api_key(p.user_id, body.label, body.scopes)
        return {"id": key_id, "token": token, "scopes": body.scopes, "label": body.label}

    @router.get("/api-keys", tags=["api keys"], summary="The caller's API keys (no secrets)")
    async def list_keys(p: Principal = reader) -> dict[str, Any]:
        return {"api_keys": accounts.list_api_keys(p.user_id)}

    @router.delete("/api-keys/{key_id}", tags=["api keys"], summary="Revoke an API key")
    async def revoke_key(key_id: str, p: Principal = trader) -> dict[str, Any]:
        accounts.revoke_api_key(p.user_id, key_id)
        return {"revoked": key_id}

    @router.get("/audit", tags=["users"], summary="The caller's audit log, newest first")
    async def audit(p: Principal = reader, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
        return {"audit": accounts.list_audit(p.user_id, limit)}

    # -- balances and orders -------------------------------------------------------------------------
    @router.get("/balances", tags=["trading"], summary="Available and held, per asset (smallest units)")
    async def balances(p: Principal = reader) -> dict[str, Any]:
        return {"balances": service.balances(p.engine_user)}

    @router.post("/orders", tags=["trading"], status_code=201, summary="Place an order")
    async def place(body: NewOrder, p: Principal = trader) -> dict[str, Any]:
        # (served by ``aitbc.exchange.fastpath`` for JSON bodies of a declared size: the same function)
        return await place_order(service, p, body)

    @router.get("/orders", tags=["trading"], summary="The caller's orders, newest first")
    async def list_orders(
        p: Principal = reader,
        status: Annotated[str, Query(pattern="^(open|all)$")] = "open",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        await service.flush()
        o = schema.orders.c
        query = sa.select(schema.orders).where(o.user_id == p.user_id)
        if status == "open":
            query = query.where(o.status == "open")
        rows = service.store.fetch_all(query.order_by(o.order_id.desc()).limit(limit))
        return {"orders": [_order_row(r) for r in rows]}

    @router.get("/orders/{order_id}", tags=["trading"], summary="One of the caller's orders")
    async def get_order(order_id: int, p: Principal = reader) -> dict[str, Any]:
        await service.flush()
        o = schema.orders.c
        row = service.store.fetch_one(sa.select(schema.orders).where(o.order_id == order_id, o.user_id == p.user_id))
        if row is None:
            raise NotFound(f"no order {order_id}", reason="unknown_order")
        return _order_row(row)

    @router.delete("/orders/{order_id}", tags=["trading"], summary="Cancel an open order")
    async def cancel(order_id: int, p: Principal = trader) -> dict[str, Any]:
        accounts.check_rate(p.user_id)
        events = await service.submit(CancelOrder(p.engine_user, order_id))
        closed = events[-1]
        assert isinstance(closed, OrderClosed)
        return {"order_id": order_id, "status": "cancelled", "filled": closed.filled, "released": closed.released}

    @router.get("/fills", tags=["trading"], summary="The caller's trades, newest first")
    async def fills(p: Principal = reader, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        await service.flush()
        t = schema.trades.c
        rows = service.store.fetch_all(
            sa.select(schema.trades)
            .where(sa.or_(t.buyer == p.user_id, t.seller == p.user_id))
            .order_by(t.trade_id.desc())
            .limit(limit)
        )
        return {
            "fills": [
                {
                    "trade_id": r.trade_id,
                    "at_ms": r.at_ms,
                    "price": r.price,
                    "quantity": r.quantity,
                    "value": r.value,
                    "side": "buy" if r.buyer == p.user_id else "sell",
                    "fee": r.buyer_fee if r.buyer == p.user_id else r.seller_fee,
                    "fee_asset": spec.base if r.buyer == p.user_id else spec.quote,
                }
                for r in rows
            ]
        }

    return router


def _require_session(p: Principal) -> None:
    if p.session_id is None:
        raise Forbidden("account security needs a logged-in session, not an API key", reason="session_required")


def qr_response(data: str, fmt: str) -> Response:
    """A QR code of ``data`` as SVG or PNG (segno)."""
    import io

    qr = segno.make(data, error="m")
    buf = io.BytesIO()
    if fmt == "svg":
        qr.save(buf, kind="svg", scale=4, border=2)
        return Response(buf.getvalue(), media_type="image/svg+xml")
    if fmt == "png":
        qr.save(buf, kind="png", scale=6, border=2)
        return Response(buf.getvalue(), media_type="image/png")
    raise NotFound(f"QR codes come as .svg or .png, not .{fmt}")
