"""``create_app(settings)``: the coordinator's only wiring point."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import msgspec
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Receive, Scope, Send

from aitbc.coordinator.api.body import message_schemas
from aitbc.coordinator.api.fastpath import FastPath
from aitbc.coordinator.api.routes import account, audits, blobs, jobs, matching, miners, openai
from aitbc.coordinator.audits import AuditDesk
from aitbc.coordinator.blobs import BlobStore
from aitbc.coordinator.config import CoordinatorSettings
from aitbc.coordinator.db.engine import create_db_engine, migrate
from aitbc.coordinator.db.replicas import is_postgres
from aitbc.coordinator.db.repo import CoordinatorRepo
from aitbc.coordinator.metrics import CoordinatorMetrics
from aitbc.coordinator.openai_gateway import OPENAI_PREFIX, OpenAIGateway, openai_error
from aitbc.coordinator.payments import ChainLink
from aitbc.coordinator.replication import Replication
from aitbc.coordinator.services import CoordinatorService
from aitbc.coordinator.ws import JobUpdatesHub
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import AitbcError, ConfigError
from aitbc.runtime.cors import add_cors
from aitbc.runtime.errors import error_body, error_headers, http_status
from aitbc.runtime.http_errors import install_error_handlers
from aitbc.runtime.keyfile import read_keyfile, write_keyfile
from aitbc.runtime.priority import background_executor

log = logging.getLogger("aitbc.coordinator")
BLOB_SWEEP_SECONDS = 60.0
"""How often blobs past ``blob_retention_s`` are looked for."""


def _has_origin(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope.get("headers", ()))


class CoordinatorAPI(FastAPI):
    """FastAPI, except that the frequent requests try ``FastPath`` before the middleware and routing."""

    fast_path: FastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A browser's cross-origin request (it carries Origin) takes the full stack, where the CORS
        # middleware (``cors_origins``) tags the answer; the fast path serves programs.
        if self.fast_path is not None and self.fast_path.matches(scope) and not _has_origin(scope):
            await self.fast_path(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def full_stack(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, plus the schemas of the protocol messages the routes decode (``api.body``)."""
        if self.openapi_schema is None:
            schema = super().openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(message_schemas())
        return super().openapi()


def load_or_create_key(settings: CoordinatorSettings) -> KeyPair:
    if settings.key_path.exists():
        return read_keyfile(settings.key_path)
    key = KeyPair.generate()
    write_keyfile(settings.key_path, key)
    return key


def open_repo(settings: CoordinatorSettings) -> CoordinatorRepo:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(settings.sqlalchemy_url)
    migrate(engine)
    return CoordinatorRepo(engine)


def create_app(settings: CoordinatorSettings) -> FastAPI:
    repo = open_repo(settings)
    metrics = CoordinatorMetrics()
    chain = None if settings.node_url is None else ChainLink(settings.node_url, thread_nice=settings.background_nice)
    service = CoordinatorService(settings, repo, load_or_create_key(settings), metrics, chain)
    service.load()
    # On PostgreSQL any number of replicas may run: each one keeps in step with the others.
    replication = Replication(service, settings.sqlalchemy_url) if is_postgres(settings.sqlalchemy_url) else None
    desk = None
    if chain is not None:
        desk = AuditDesk(chain, service.dispatcher, service.match_policy, service.events, service.db, repo)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # ``asyncio.to_thread`` work (batch signing, blob sweeps …) yields the CPU to the loop, as the database
        # and chain threads do (``CoordinatorSettings.background_nice``).
        asyncio.get_running_loop().set_default_executor(
            background_executor("coordinator-worker", settings.background_nice)
        )

        async def sweeper() -> None:
            while True:
                await asyncio.sleep(0.25)
                try:
                    await service.sweep()
                except Exception:
                    log.exception("sweep failed")

        async def blob_sweeper() -> None:
            store: BlobStore = app.state.blobs
            while True:
                try:
                    deleted = await asyncio.to_thread(store.sweep, time.time())
                    if deleted:
                        log.info("blobs past their retention deleted", extra={"deleted": deleted})
                except Exception:
                    log.exception("blob sweep failed")
                await asyncio.sleep(BLOB_SWEEP_SECONDS)

        tasks = [asyncio.create_task(sweeper()), asyncio.create_task(blob_sweeper())]
        if service.deposits is not None:
            try:
                await service.deposits.start()
            except AitbcError as exc:  # the books fill in as the node answers (ChainUnavailable among others)
                log.warning("deposits not read at start", extra={"error": str(exc)})
        if service.payments is not None:
            tasks.append(asyncio.create_task(service.payments.run()))
        if desk is not None:
            tasks.append(asyncio.create_task(desk.run()))
        if replication is not None:
            tasks.append(asyncio.create_task(replication.run()))
        log.info(
            "coordinator started",
            extra={"address": service.key.address, "db": settings.sqlalchemy_url, "node": settings.node_url},
        )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await service.match_policy.aclose()
            service.close()
            repo.engine.dispose()

    app = CoordinatorAPI(
        title="AITBC coordinator",
        version="0.1.0",
        description="Job submission (X-Api-Key), miner registration and assignment (signed requests), receipts.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.replication = replication
    app.state.audits = desk
    app.state.openai = OpenAIGateway(service, settings.openai_max_open_per_key, settings.openai_keepalive_seconds)
    app.include_router(jobs.router)
    app.include_router(miners.router)
    app.include_router(matching.router)
    app.include_router(account.router)
    app.include_router(openai.router)
    app.include_router(audits.router)
    app.include_router(blobs.router)
    app.state.blobs = BlobStore.at(settings)
    app.state.job_updates = JobUpdatesHub(service, settings.ws_max_connections_per_key)
    app.add_api_websocket_route("/api/v1/ws", app.state.job_updates.handle, name="job_updates")

    def render_error(exc: AitbcError) -> JSONResponse:
        metrics.http_rejections.labels(exc.reason).inc()
        return JSONResponse(error_body(exc), status_code=http_status(exc), headers=error_headers(exc))

    add_cors(app, settings.cors_origins)
    app.fast_path = FastPath(app.full_stack, service, render_error, settings.max_body_bytes)

    @app.exception_handler(AitbcError)
    async def on_aitbc_error(request: Request, exc: AitbcError) -> Response:
        if request.url.path.startswith(OPENAI_PREFIX):  # OpenAI clients get OpenAI's error shape
            metrics.http_rejections.labels(exc.reason).inc()
            status, body = openai_error(exc)
            return Response(msgspec.json.encode(body), status, error_headers(exc), media_type="application/json")
        return render_error(exc)

    install_error_handlers(app, lambda reason: metrics.http_rejections.labels(reason).inc(), aitbc_errors=False)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "coordinator": service.key.address,
            "chain_id": settings.chain_id,
            "miners_online": len(service.live_miners()),
            "payments": "on chain" if settings.node_url else "off (no node: jobs run unpaid)",
            "node_url": settings.node_url,
            "replica": None
            if replication is None
            else {
                "id": replication.origin,
                "settling": service.payments is not None and service.payments.settling,
            },
        }

    @app.get("/metrics", tags=["ops"])
    async def prometheus() -> Response:
        await service.refresh_gauges()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def run_coordinator(settings: CoordinatorSettings) -> None:
    from aitbc.runtime.server import bind_socket, serve
    from aitbc.runtime.tls import server_tls

    server_tls(settings)  # a missing certificate or plain HTTP off loopback fails before anything starts
    single = None if is_postgres(settings.sqlalchemy_url) else lock_single_process(settings.data_dir)
    sock = bind_socket(settings.host, settings.port, "the coordinator API")
    app = create_app(settings)
    rejections = app.state.service.metrics.http_rejections
    # Miners long-poll /claim for up to max_claim_wait_seconds: a stop ends those polls first (``stop_claims``),
    # so the graceful wait for open requests stays short.
    serve(
        "coordinator",
        app,
        settings,
        sock,
        openai_prefix=OPENAI_PREFIX,
        streamed_paths=(blobs.BLOBS_PATH,),
        on_reject=lambda reason: rejections.labels(reason).inc(),
        on_stop=app.state.service.stop_claims,
    )
    if single is not None:
        single.close()


def lock_single_process(data_dir: Path) -> IO[bytes]:
    """Hold the data directory's lock for the process's life: a coordinator on SQLite is one process (its
    claims, wake-ups and settling live in it); replicas need PostgreSQL (``--database-url``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "coordinator.lock").open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(
            f"another coordinator runs on {data_dir} (SQLite is one process): stop it, or run replicas on "
            "PostgreSQL (--database-url postgresql+psycopg://…)"
        ) from None
    return handle
