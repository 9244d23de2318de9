"""``create_app(settings)``: the exchange's only wiring point (REST, WebSocket feed, ops, background tasks)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Receive, Scope, Send

from aitbc.exchange.accounts import TooManyRequests
from aitbc.exchange.api import build_router
from aitbc.exchange.config import ExchangeSettings
from aitbc.exchange.fastpath import FastPath
from aitbc.exchange.feed import CHANNELS
from aitbc.exchange.funds_api import build_funds_router
from aitbc.exchange.service import ExchangeService
from aitbc.market.orderbook import OrderRejected, OrderRejection
from aitbc.protocol.errors import AitbcError, Conflict, Forbidden, NotFound, RemoteError, StorageError, Unauthorized
from aitbc.runtime.cors import add_cors
from aitbc.runtime.http_errors import install_error_handlers

log = logging.getLogger("aitbc.exchange")

_STATUS: Final[list[tuple[type[AitbcError], int]]] = [
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooManyRequests, 429),
    (RemoteError, 502),
    (StorageError, 503),
]


def status_for(exc: AitbcError) -> int:
    if isinstance(exc, OrderRejected) and exc.rejection is OrderRejection.UNKNOWN_ORDER:
        return 404
    return next((status for cls, status in _STATUS if isinstance(exc, cls)), 400)


class ExchangeAPI(FastAPI):
    """FastAPI, except that order placement tries ``FastPath`` before the middleware and routing."""

    fast_path: FastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_path is not None and self.fast_path.matches(scope):
            headers = self.fast_path.takes(scope)
            if headers is not None:
                await self.fast_path(scope, receive, send, headers)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: ExchangeSettings, service: ExchangeService | None = None) -> FastAPI:
    service = service or ExchangeService(settings)
    service.load()
    if settings.bitcoin.xpub and service.bitcoin is None:
        from aitbc.exchange.bitcoin.funds import BitcoinFunds, open_backend

        service.bitcoin = BitcoinFunds(service, open_backend(settings))
        service.background_starters.append(service.bitcoin.run)
    if settings.aitbc.node_url and service.aitbc is None:
        from aitbc.exchange.chain import AitbcFunds

        service.aitbc = AitbcFunds(service)
        service.background_starters.append(service.aitbc.run)
    metrics = service.metrics
    background: list[asyncio.Task[None]] = []

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()

        async def invariant_loop() -> None:
            last_journal_check = time.monotonic()
            while True:
                await asyncio.sleep(settings.invariant_check_seconds)
                try:
                    service.check_memory_invariants()
                    if time.monotonic() - last_journal_check >= settings.journal_check_seconds:
                        last_journal_check = time.monotonic()
                        await service.check_all_invariants()
                except AitbcError:
                    log.critical("ledger invariant broken; the exchange stops accepting changes", exc_info=True)
                    service.failed = "ledger invariant broken"
                metrics.open_orders.set(len(service.engine.book.orders))

        background.append(asyncio.create_task(invariant_loop()))
        for starter in service.background_starters:
            background.append(asyncio.create_task(starter()))
        log.info("exchange started", extra={"db": settings.sqlalchemy_url, "port": settings.port})
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await service.stop()

    app = ExchangeAPI(
        title="AITBC exchange",
        version="0.1.0",
        description="BTC <-> AITBC order book: accounts with 2FA, BTC deposits to per-user BIP84 addresses, "
        "withdrawals, a real-time WebSocket feed. Amounts are integers in the smallest unit "
        '(satoshis; AITBC base units, 10**6 per AITBC). Errors: {"error": {"reason", "message"}}.',
        lifespan=lifespan,
    )
    app.state.service = service
    app.fast_path = FastPath(service, settings.max_body_bytes, status_for)
    add_cors(app, settings.cors_origins)  # the web app's exchange page (AITBC_EXCHANGE_CORS_ORIGINS)

    @app.exception_handler(AitbcError)
    async def on_aitbc_error(_: Request, exc: AitbcError) -> JSONResponse:
        metrics.rejections.labels(exc.reason).inc()
        return JSONResponse({"error": exc.to_dict()}, status_code=status_for(exc))

    install_error_handlers(app, lambda reason: metrics.rejections.labels(reason).inc(), aitbc_errors=False)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        body = {
            "status": "ok" if service.failed is None else "failed",
            "detail": service.failed,
            "seq": service.seq,
            "committed_seq": service.committed_seq,
            "open_orders": len(service.engine.book.orders),
            "bitcoin": service.bitcoin_status(),
            "aitbc": None if service.aitbc is None else service.aitbc.status(),
        }
        return JSONResponse(body, status_code=200 if service.failed is None else 503)

    @app.get("/metrics", tags=["ops"])
    async def prometheus() -> Response:
        metrics.open_orders.set(len(service.engine.book.orders))
        metrics.ws_clients.set(len(service.feed.subscribers))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(build_router(service))
    app.include_router(build_funds_router(service))
    for router in service.extra_routers:
        app.include_router(router)

    @app.websocket("/api/v1/ws")
    async def feed(ws: WebSocket) -> None:
        """Client → {"op": "subscribe", "channels": [...], "token"?: ...} | {"op": "snapshot", "depth"?: N}."""
        await ws.accept()
        sub = service.feed.subscribe()

        async def pump() -> None:
            while True:
                message = await sub.queue.get()
                await ws.send_text(orjson.dumps(message).decode())
                if sub.overflowed and sub.queue.empty():
                    await ws.send_text(orjson.dumps({"type": "error", "reason": "slow_consumer"}).decode())
                    await ws.close(code=1008)
                    return

        sender = asyncio.create_task(pump())
        try:
            while True:
                raw = await ws.receive_text()
                if len(raw) > 4096:
                    await _ws_error(ws, "too_large", "messages are at most 4096 bytes")
                    continue
                try:
                    msg = orjson.loads(raw)
                    op = msg.get("op") if isinstance(msg, dict) else None
                except orjson.JSONDecodeError:
                    op = None
                if op == "subscribe":
                    await _subscribe(ws, service, sub, msg)
                elif op == "snapshot":
                    depth = msg.get("depth", 50)
                    depth = depth if isinstance(depth, int) and 1 <= depth <= 1000 else 50
                    await sub.queue.put(service.book_snapshot(depth))
                elif op == "ping":
                    await sub.queue.put({"type": "pong"})
                else:
                    await _ws_error(ws, "malformed", 'expected {"op": "subscribe" | "snapshot" | "ping", ...}')
        except WebSocketDisconnect:
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            service.feed.unsubscribe(sub)

    return app


async def _ws_error(ws: WebSocket, reason: str, message: str) -> None:
    await ws.send_text(orjson.dumps({"type": "error", "reason": reason, "message": message}).decode())


async def _subscribe(ws: WebSocket, service: ExchangeService, sub: Any, msg: dict[str, Any]) -> None:
    channels = msg.get("channels")
    if not isinstance(channels, list) or not channels or any(c not in CHANNELS for c in channels):
        await _ws_error(ws, "malformed", f"channels must be a non-empty subset of {list(CHANNELS)}")
        return
    if "orders" in channels:
        token = msg.get("token")
        try:
            if not isinstance(token, str):
                raise Unauthorized("the orders channel needs a token")
            principal = service.accounts.authenticate(token)
            principal.require("read")
        except AitbcError as exc:
            await _ws_error(ws, exc.reason, exc.message)
            return
        sub.user = principal.engine_user
    sub.channels.update(channels)
    await sub.queue.put({"type": "subscribed", "channels": sorted(sub.channels)})
    if "book" in channels:
        await sub.queue.put(service.book_snapshot(50))
    if "ticker" in channels:
        await sub.queue.put(service.ticker())


def run_exchange(settings: ExchangeSettings) -> None:
    from aitbc.runtime.server import bind_socket, serve
    from aitbc.runtime.tls import server_tls

    server_tls(settings)  # a missing certificate or plain HTTP off loopback fails before anything starts
    sock = bind_socket(settings.host, settings.port, "the exchange API")
    app = create_app(settings)
    rejections = app.state.service.metrics.rejections
    # the body limit wraps everything, the order fast path included: nothing reads past it
    serve(
        "exchange",
        app,
        settings,
        sock,
        on_reject=lambda reason: rejections.labels(reason).inc(),
        ws_max_size=64 * 1024,
    )
