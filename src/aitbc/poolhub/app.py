"""``create_app(settings)``: the pool hub's only wiring point."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aitbc.market.matching import JobRequirements
from aitbc.poolhub.config import PoolHubSettings
from aitbc.poolhub.metrics import PoolHubMetrics
from aitbc.poolhub.registry import Registry
from aitbc.poolhub.schemas import (
    HeartbeatIn,
    HeartbeatsIn,
    MatchRequest,
    MinerRegistration,
    OutcomeIn,
    registration_dict,
)
from aitbc.poolhub.service import PoolHubService
from aitbc.protocol.errors import ConfigError, Unauthorized
from aitbc.runtime.cors import add_cors
from aitbc.runtime.http_errors import install_error_handlers

log = logging.getLogger("aitbc.poolhub")


def open_registry(settings: PoolHubSettings) -> Registry:
    """SQLite in the data dir by default; with ``redis_url``, Redis for live state over the SQL database."""
    import redis
    import sqlalchemy.exc

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    prior = settings.scoring.prior_reliability
    try:
        if settings.redis_url:
            from aitbc.poolhub.redis_registry import RedisRegistry

            return RedisRegistry(
                settings.redis_url,
                settings.sqlalchemy_url,
                live_ttl_ms=int(settings.miner_timeout_seconds * 1000) * 4,
                prior_reliability=prior,
            )
        from aitbc.poolhub.sql_registry import SqlRegistry

        return SqlRegistry(settings.sqlalchemy_url, prior)
    except redis.exceptions.RedisError as exc:
        raise ConfigError(f"cannot use Redis at {settings.redis_url}: {exc}") from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise ConfigError(f"cannot open the database {settings.sqlalchemy_url}: {exc}") from None


def create_app(settings: PoolHubSettings, registry: Registry | None = None) -> FastAPI:
    metrics = PoolHubMetrics()
    service = PoolHubService(settings, registry or open_registry(settings), metrics)
    service.load()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async def flusher() -> None:
            while True:
                await asyncio.sleep(settings.heartbeat_flush_ms / 1000)
                try:
                    await service.flush_heartbeats()
                except Exception:
                    log.exception("heartbeat flush failed")

        task = asyncio.create_task(flusher())
        log.info(
            "pool hub started",
            extra={"db": settings.sqlalchemy_url, "redis": settings.redis_url, "miners": len(service.index)},
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await service.close()

    app = FastAPI(
        title="AITBC pool hub",
        version="0.1.0",
        description="Miner registry, scoring and matching: who gets a job, and why.",
        lifespan=lifespan,
    )
    app.state.service = service

    async def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        # async: FastAPI would run a plain ``def`` dependency in a worker thread, a costly round trip
        if settings.api_token is None:
            return
        expected = f"Bearer {settings.api_token}"
        if authorization is None or not hmac.compare_digest(authorization.encode(), expected.encode()):
            raise Unauthorized("this endpoint needs Authorization: Bearer <the pool hub's API token>")

    writer = [Depends(require_token)]

    install_error_handlers(app, lambda reason: metrics.http_rejections.labels(reason).inc())

    # -- ops -----------------------------------------------------------------------
    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "backend": "redis+sql" if settings.redis_url else "sql",
            "miners": len(service.index),
            "miners_online": service.online_count(),
        }

    @app.get("/metrics", tags=["ops"])
    async def prometheus() -> Response:
        service.refresh_gauges()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- the coordinator's API -----------------------------------------------------------
    @app.post("/v1/miners", tags=["coordinator"], dependencies=writer, summary="Register or update a miner")
    async def register(body: MinerRegistration) -> dict[str, Any]:
        return await service.register(body.miner, registration_dict(body), body.stake, body.max_concurrency)

    @app.delete(
        "/v1/miners/{address}", tags=["coordinator"], dependencies=writer, summary="Remove a miner from the registry"
    )
    async def remove(address: str) -> dict[str, Any]:
        return await service.remove(address)

    @app.post(
        "/v1/heartbeat", tags=["coordinator"], dependencies=writer, summary="One miner is alive (with its current load)"
    )
    async def heartbeat(body: HeartbeatIn) -> dict[str, Any]:
        return {"miner": body.miner, "seen_at_ms": service.heartbeat(body.miner, body.load)}

    @app.post(
        "/v1/heartbeats",
        tags=["coordinator"],
        dependencies=writer,
        summary="Many miners are alive (unknown ones are listed)",
    )
    async def heartbeats(body: HeartbeatsIn) -> dict[str, Any]:
        return service.heartbeats([(b.miner, b.load) for b in body.beats])

    @app.post(
        "/v1/outcomes",
        tags=["coordinator"],
        dependencies=writer,
        summary="How a job given to a miner ended, as measured",
    )
    async def outcome(body: OutcomeIn) -> dict[str, Any]:
        return await service.record_outcome(
            body.miner, body.job_id, body.attempt, body.outcome, body.ttft_ms, body.tokens_per_s, body.detail
        )

    @app.post(
        "/v1/match", tags=["coordinator"], dependencies=writer, summary="Rank the miners for a job, with the reasons"
    )
    async def match(body: MatchRequest) -> dict[str, Any]:
        j = body.job
        requirements = JobRequirements(
            job_type=j.type,
            model=j.model,
            input_chars=j.input_chars,
            max_tokens=j.max_tokens,
            model_digest=j.model_digest,
            max_price=j.max_price,
            min_vram_gb=j.min_vram_gb,
            gpu=j.gpu,
            region=j.region,
            min_stake=j.min_stake,
        )
        return service.match(requirements, j.job_id, body.limit, body.candidates, body.explain)

    # -- reads (people, the web app) -------------------------------------------------------
    @app.get("/v1/miners", tags=["read"], summary="Miners with their measured statistics")
    async def list_miners(
        online: bool = False,
        model: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> dict[str, Any]:
        return {"miners": service.list_miners(online, model, limit)}

    @app.get("/v1/miners/{address}", tags=["read"], summary="One miner: stats, recent outcomes, audit trail")
    async def show_miner(address: str, history: Annotated[int, Query(ge=0, le=1000)] = 20) -> dict[str, Any]:
        return await service.miner_detail(address, history)

    @app.get("/v1/leaderboard", tags=["read"], summary="Miners by score (as if idle), best first")
    async def leaderboard(
        model: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    ) -> dict[str, Any]:
        return {"model": model, "leaderboard": service.leaderboard(model, limit)}

    @app.get("/v1/capacity", tags=["read"], summary="Online miners and job slots per model")
    async def capacity() -> dict[str, Any]:
        return {"models": service.capacity()}

    @app.get("/v1/prices", tags=["read"], summary="Unit prices per model among online miners")
    async def prices() -> dict[str, Any]:
        return {"models": service.prices()}

    @app.get("/v1/scoring", tags=["read"], summary="The scoring configuration in force (weights, references)")
    async def scoring() -> dict[str, Any]:
        return dataclasses.asdict(settings.scoring_config()) | {"miner_timeout_seconds": settings.miner_timeout_seconds}

    add_cors(app, settings.cors_origins)
    return app


def run_poolhub(settings: PoolHubSettings) -> None:
    from aitbc.runtime.server import bind_socket, serve
    from aitbc.runtime.tls import server_tls

    server_tls(settings)  # a missing certificate or plain HTTP off loopback fails before anything starts
    sock = bind_socket(settings.host, settings.port, "the pool hub API")
    serve("poolhub", create_app(settings), settings, sock)
