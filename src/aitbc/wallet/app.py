"""The wallet daemon's HTTP face: REST under ``/v1``, JSON-RPC 2.0 at ``/rpc``, ``/healthz``, ``/metrics``.

Every ``/v1`` and ``/rpc`` request needs the daemon's API token (``Authorization: Bearer …``),
which it writes at start to ``WALLET_DIR/daemon.token`` with mode 0600: only the user who
runs the daemon can read it. It listens on loopback only unless forced.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Final

import orjson
from fastapi import Depends, FastAPI, Path, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from aitbc.protocol.errors import AitbcError, ConfigError, Unauthorized
from aitbc.runtime.errors import error_body, rpc_code
from aitbc.runtime.files import atomic_write
from aitbc.runtime.http_errors import install_error_handlers
from aitbc.runtime.origin import LoopbackGuard
from aitbc.runtime.server import announce, bind_socket, build_server, scheme_of, url_of
from aitbc.runtime.tls import server_tls
from aitbc.wallet.config import WalletSettings, is_loopback_host
from aitbc.wallet.service import WalletService

log = logging.getLogger("aitbc.wallet")

# JSON-RPC codes: the standard ones, then the application's (``data.reason`` is machine-readable).
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
TX_REJECTED: Final = -32001
NOT_FOUND: Final = -32004
UNAUTHORIZED: Final = -32010
WRONG_PASSPHRASE: Final = -32011
WALLET_LOCKED: Final = -32012
RATE_LIMITED: Final = -32013
NODE_ERROR: Final = -32020
MAX_BODY_BYTES: Final = 1024 * 1024
MAX_BATCH: Final = 100

WalletName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", description="Wallet name")]


# -- request bodies (their schemas are the OpenAPI document) ------------------------------------------------
class CreateBody(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    passphrase: str = Field(min_length=1, max_length=1024)
    mnemonic: str | None = Field(None, description="24 BIP39 words to restore a key from its backup")


class UnlockBody(BaseModel):
    passphrase: str = Field(max_length=1024)
    timeout_s: float | None = Field(None, gt=0, allow_inf_nan=False, description="Seconds until the key is wiped again")


class SignBody(BaseModel):
    tx: dict[str, Any] = Field(description="The tx as JSON (its signature empty); a multisig spend gets an approval")


class SendBody(BaseModel):
    to: str
    amount: int = Field(gt=0, description="Base units")
    fee: int = Field(ge=0, description="Base units")
    memo: str = ""
    wait: bool = False


class VerifyReceiptBody(BaseModel):
    job_id: str | None = None
    receipt: dict[str, Any] | None = None


def create_app(service: WalletService, token: str) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async def expire_forever() -> None:
            while True:
                await asyncio.sleep(0.5)
                service.expire()

        task = asyncio.create_task(expire_forever())
        try:
            yield
        finally:
            task.cancel()
            service.lock()  # wipe every key on shutdown

    app = FastAPI(
        title="AITBC wallet daemon",
        version="0.1.0",
        description="Encrypted keystore (Argon2id + XChaCha20-Poly1305) and signing on loopback. "
        "REST under /v1 and JSON-RPC 2.0 at POST /rpc (wallet.create, wallet.list, wallet.unlock, wallet.lock, "
        "wallet.balance, wallet.sign_tx, wallet.send, receipts.verify). Send the token of WALLET_DIR/daemon.token "
        "as `Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )
    expected = token.encode()

    async def require_token(request: Request) -> None:  # async: a sync dependency would hop to a thread
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else request.headers.get("x-wallet-token", "")
        if not hmac.compare_digest(given.encode(), expected):
            raise Unauthorized("missing or wrong API token (see WALLET_DIR/daemon.token)")

    install_error_handlers(app, lambda reason: service.metrics.rejected.labels(reason).inc())

    auth = [Depends(require_token)]

    @app.get("/healthz", summary="Liveness (no token needed)")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "service": "wallet", "unlocked": service.unlocked_count()}

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/wallets", dependencies=auth, summary="List wallets (name, address, unlocked)")
    async def list_wallets() -> dict[str, Any]:
        return {"wallets": service.list_wallets()}

    @app.post("/v1/wallets", dependencies=auth, status_code=201, summary="Create (or restore from a mnemonic)")
    async def create_wallet(body: CreateBody) -> dict[str, Any]:
        return await service.create(body.name, body.passphrase, body.mnemonic)

    @app.post("/v1/wallets/{name}/unlock", dependencies=auth, summary="Unlock a key for timeout_s seconds")
    async def unlock(name: WalletName, body: UnlockBody) -> dict[str, Any]:
        return await service.unlock(name, body.passphrase, body.timeout_s)

    @app.post("/v1/wallets/{name}/lock", dependencies=auth, summary="Wipe an unlocked key from memory")
    async def lock(name: WalletName) -> dict[str, Any]:
        return {"name": name, "was_unlocked": bool(service.lock(name)), "unlocked": False}

    @app.get("/v1/wallets/{name}/balance", dependencies=auth, summary="Balance and nonce on chain")
    async def balance(name: WalletName) -> dict[str, Any]:
        return await service.balance(name)

    @app.post("/v1/wallets/{name}/sign", dependencies=auth, summary="Sign a tx (or approve a multisig spend)")
    async def sign(name: WalletName, body: SignBody) -> Response:
        return _json(await service.sign_tx(name, body.tx))

    @app.post("/v1/wallets/{name}/send", dependencies=auth, summary="Build, sign and submit a transfer")
    async def send(name: WalletName, body: SendBody) -> dict[str, Any]:
        return await service.send(name, body.to, body.amount, body.fee, body.memo, body.wait)

    @app.post("/v1/receipts/verify", dependencies=auth, summary="Verify a job receipt end to end")
    async def verify_receipt(body: VerifyReceiptBody) -> dict[str, Any]:
        return (await service.verify_receipt(body.job_id, body.receipt)).to_json()

    @app.post("/rpc", dependencies=auth, summary="JSON-RPC 2.0 (single or batch)")
    async def rpc(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return Response(
                orjson.dumps(_rpc_error(None, INVALID_REQUEST, "request body too large")),
                status_code=413,
                media_type="application/json",
            )
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _json(_rpc_error(None, PARSE_ERROR, f"parse error: {exc}"))
        if isinstance(payload, list):
            if not payload or len(payload) > MAX_BATCH:
                return _json(
                    _rpc_error(None, INVALID_REQUEST, f"invalid request: a batch holds 1 to {MAX_BATCH} calls")
                )
            replies = [r for r in [await _rpc_call(service, item) for item in payload] if r is not None]
            return _json(replies) if replies else Response(status_code=204)
        reply = await _rpc_call(service, payload)
        return Response(status_code=204) if reply is None else _json(reply)

    return app


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def _rpc_error(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": id_}


class _Params:
    """Positional or named params of one call, by name."""

    def __init__(self, params: Any, names: tuple[str, ...]) -> None:
        if params is None:
            params = {}
        if isinstance(params, list):
            if len(params) > len(names):
                raise ConfigError(f"at most {len(names)} params: {', '.join(names)}", reason="invalid_params")
            params = dict(zip(names, params, strict=False))
        if not isinstance(params, dict):
            raise ConfigError("params must be an array or an object", reason="invalid_params")
        unknown = set(params) - set(names)
        if unknown:
            raise ConfigError(f"unknown params: {', '.join(sorted(unknown))}", reason="invalid_params")
        self.values = params

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ..., *, allow_none: bool = False) -> Any:
        if name not in self.values or (self.values[name] is None and default is not ...):
            if default is ...:
                raise ConfigError(f"missing param {name!r}", reason="invalid_params")
            return default
        value = self.values[name]
        if (value is None and allow_none) or (isinstance(value, kind) and not isinstance(value, bool)):
            return value
        if kind is bool and isinstance(value, bool):
            return value
        raise ConfigError(f"param {name!r} has the wrong type", reason="invalid_params")


RpcHandler = Callable[[WalletService, Any], Awaitable[Any]]


async def _rpc_create(s: WalletService, raw: Any) -> Any:
    p = _Params(raw, ("name", "passphrase", "mnemonic"))
    return await s.create(p.get("name", str), p.get("passphrase", str), p.get("mnemonic", str, None))


async def _rpc_list(s: WalletService, raw: Any) -> Any:
    _Params(raw, ())
    return {"wallets": s.list_wallets()}


async def _rpc_unlock(s: WalletService, raw: Any) -> Any:
    p = _Params(raw, ("name", "passphrase", "timeout_s"))
    timeout = p.get("timeout_s", (int, float), None)
    return await s.unlock(p.get("name", str), p.get("passphrase", str), None if timeout is None else float(timeout))


async def _rpc_lock(s: WalletService, raw: Any) -> Any:
    p = _Params(raw, ("name",))
    name = p.get("name", str, None)
    return {"locked": s.lock(name)}


async def _rpc_balance(s: WalletService, raw: Any) -> Any:
    return await s.balance(_Params(raw, ("name",)).get("name", str))


async def _rpc_sign_tx(s: WalletService, raw: Any) -> Any:
    p = _Params(raw, ("name", "tx"))
    return await s.sign_tx(p.get("name", str), p.get("tx", dict))


async def _rpc_send(s: WalletService, raw: Any) -> Any:
    p = _Params(raw, ("name", "to", "amount", "fee", "memo", "wait"))
    return await s.send(
        p.get("name", str),
        p.get("to", str),
        p.get("amount", int),
        p.get("fee", int),
        p.get("memo", str, ""),
        p.get("wait", bool, False),
    )


async def _rpc_verify_receipt(s: WalletService, raw: Any) -> Any:
    p = _Params(raw, ("job_id", "receipt"))
    report = await s.verify_receipt(p.get("job_id", str, None), p.get("receipt", dict, None))
    return report.to_json()


RPC_METHODS: Final[dict[str, RpcHandler]] = {
    "wallet.create": _rpc_create,
    "wallet.list": _rpc_list,
    "wallet.unlock": _rpc_unlock,
    "wallet.lock": _rpc_lock,
    "wallet.balance": _rpc_balance,
    "wallet.sign_tx": _rpc_sign_tx,
    "wallet.send": _rpc_send,
    "receipts.verify": _rpc_verify_receipt,
}


async def _rpc_call(service: WalletService, request: Any) -> dict[str, Any] | None:
    if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str):
        return _rpc_error(None, INVALID_REQUEST, 'invalid request: expected {"jsonrpc": "2.0", "method": …}')
    id_, wants_reply, method = request.get("id"), "id" in request, request["method"]
    handler = RPC_METHODS.get(method)
    try:
        if handler is None:
            return _rpc_error(id_, METHOD_NOT_FOUND, f"method not found: {method}") if wants_reply else None
        service.metrics.rpc_requests.labels(method).inc()
        result = await handler(service, request.get("params"))
    except AitbcError as exc:
        service.metrics.rejected.labels(exc.reason).inc()
        return _rpc_error(id_, rpc_code(exc), exc.message, error_body(exc)["error"]) if wants_reply else None
    except Exception:
        log.exception("wallet rpc handler failed", extra={"method": method})
        return _rpc_error(id_, INTERNAL_ERROR, "internal error") if wants_reply else None
    return {"jsonrpc": "2.0", "result": result, "id": id_} if wants_reply else None


# -- process ------------------------------------------------------------------------------------------------
def bind_daemon_socket(settings: WalletSettings) -> socket.socket:
    """Refuse a non-loopback address unless forced; bind before announcing anything."""
    if not is_loopback_host(settings.host) and not settings.force_bind:
        raise ConfigError(
            f"refusing to listen on {settings.host}: the wallet daemon holds keys and listens on loopback only "
            "(127.0.0.1, ::1); pass --force to override on an isolated network",
            reason="not_loopback",
        )
    return bind_socket(settings.host, settings.port, "the wallet daemon")


def run_daemon(settings: WalletSettings) -> None:
    """Serve until SIGINT/SIGTERM; keys are wiped and the token file removed on the way out."""
    import uvloop

    sock = bind_daemon_socket(settings)
    server_tls(settings)  # a missing certificate or plain HTTP off loopback fails before the token is written
    settings.wallet_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    atomic_write(settings.token_path, token.encode() + b"\n", mode=0o600)
    url = url_of(sock, scheme_of(settings))
    atomic_write(settings.info_path, orjson.dumps({"url": url, "pid": os.getpid()}) + b"\n", mode=0o600)
    service = WalletService(settings)
    allowed_hosts = [*settings.allowed_hosts, settings.host]  # a forced non-loopback address is allowed too
    server = build_server(
        create_app(service, token),
        settings,
        rpc_paths={"/rpc"},
        lifespan="on",
        wrap=lambda app: LoopbackGuard(app, allowed_hosts=allowed_hosts, allowed_origins=settings.allowed_origins),
    )
    announce("wallet", sock, settings.announce_file, scheme=scheme_of(settings), wallet_dir=str(settings.wallet_dir))
    try:
        uvloop.run(server.serve(sockets=[sock]))
    finally:
        service.lock()
        for path in (settings.token_path, settings.info_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        log.info("wallet daemon stopped")
