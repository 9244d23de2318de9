"""Which claiming miner gets a queued job: the coordinator's matching policy.

Miners pull work (they long-poll ``claim``), so the decision is made when a miner asks:
it may take a job if the scoring engine ranks it first among itself and the miners
long-polling right now (ready to take it) with a free slot — or once the job has waited
``match_hold_ms``, a safety net so that a job held for a waiter that went away cannot
stall. A new job wakes the best-ranked waiter first (``order_waiters``); a claimer that is
refused a job it was woken for wakes the others; the sweeper wakes them all when a hold
runs out (``is_due``).

Two implementations of ``MatchPolicy``:

* ``LocalMatchPolicy`` (default): ``aitbc.market.scoring`` in process, with statistics
  from the outcomes this coordinator observed since it started.
* ``PoolHubMatchPolicy`` (``--poolhub-url``): registrations, heartbeats and outcomes are
  forwarded to the pool hub (batched, in the background); the ranking comes from the
  hub's ``POST /v1/match``. If the hub cannot be reached, it falls back to the local policy,
  which it keeps fed with the same events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeVar

import msgspec

from aitbc.client.http import is_unreachable
from aitbc.client.poolhub import AsyncPoolHubClient, PoolHubClient
from aitbc.coordinator.config import CoordinatorSettings
from aitbc.coordinator.live import LiveMiner
from aitbc.market.matching import JobRequirements, MinerOffer
from aitbc.market.scoring import (
    MinerState,
    MinerStats,
    Outcome,
    ScoringConfig,
    apply_outcome,
    compute_factors,
    compute_score,
    explain,
    get_best,
    get_eligible_model,
    new_stats,
)
from aitbc.protocol.errors import RemoteError
from aitbc.protocol.job_messages import MinerRegistration

log = logging.getLogger("aitbc.coordinator.matching")

HUB_TIMEOUT_S = 0.5
HUB_RANKING_CACHE_MS = 200
HUB_BATCH = 500


class Waiting(Protocol):
    """A claimer long-polling for work (``aitbc.coordinator.dispatch.Waiter``)."""

    @property
    def live(self) -> LiveMiner: ...


W = TypeVar("W", bound=Waiting)


class MatchPolicy(Protocol):
    name: str

    def on_register(
        self, offer: MinerOffer, registration: MinerRegistration, max_concurrency: int, stake: int = 0
    ) -> None:
        """A miner registered, or its bond on chain (``stake``) changed."""
        ...

    def on_heartbeat(self, miner: str, load: int) -> None: ...

    def on_outcome(
        self,
        miner: str,
        job_id: str,
        attempt: int,
        outcome: Outcome,
        ttft_ms: float | None = None,
        tokens_per_s: float | None = None,
        detail: str | None = None,
    ) -> None: ...

    def allows(
        self,
        claimer: LiveMiner,
        job: JobRequirements,
        job_id: str,
        queued_since_ms: int,
        live: Iterable[LiveMiner],
        now_ms: int,
    ) -> bool:
        """May ``claimer`` take this job now, given the miners waiting for work (``live``)? (Called on the
        coordinator's database thread.)"""
        ...

    def is_due(self, now_ms: int) -> bool:
        """A job held back for a better miner may now go to anyone: wake the claimers."""
        ...

    def order_waiters(self, model: str, waiters: Sequence[W]) -> list[tuple[int, W]]:
        """The waiting claimers (with their positions) in the order to offer a new job of ``model``."""
        ...

    def explain(self, job: JobRequirements, job_id: str, live: Iterable[LiveMiner], now_ms: int) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


def _state(live: LiveMiner, registered_at_ms: int, stats: MinerStats) -> MinerState:
    return MinerState(
        offer=live.offer,
        registered_at_ms=registered_at_ms,
        last_seen_ms=live.last_seen_ms,
        max_concurrency=live.max_concurrency,
        load=len(live.active),
        stake=live.bond,
        stats=stats,
    )


class LocalMatchPolicy:
    """The scoring engine in process; statistics from the outcomes seen since the coordinator started."""

    name = "local"

    def __init__(self, config: ScoringConfig, hold_ms: int) -> None:
        self.config = config
        self.hold_ms = hold_ms
        self.stats: dict[str, MinerStats] = {}
        self.registered_at: dict[str, int] = {}
        self._due_at_ms: int | None = None
        self._lock = threading.Lock()

    def on_register(
        self, offer: MinerOffer, registration: MinerRegistration, max_concurrency: int, stake: int = 0
    ) -> None:
        self.registered_at.setdefault(offer.miner, int(time.time() * 1000))

    def on_heartbeat(self, miner: str, load: int) -> None:
        return None

    def on_outcome(
        self,
        miner: str,
        job_id: str,
        attempt: int,
        outcome: Outcome,
        ttft_ms: float | None = None,
        tokens_per_s: float | None = None,
        detail: str | None = None,
    ) -> None:
        with self._lock:
            current = self.stats.get(miner) or new_stats(self.config)
            self.stats[miner] = apply_outcome(
                current, outcome, int(time.time() * 1000), self.config, ttft_ms, tokens_per_s
            )

    def states(self, live: Iterable[LiveMiner], now_ms: int) -> list[MinerState]:
        prior = new_stats(self.config)
        return [
            _state(m, self.registered_at.get(m.offer.miner, now_ms), self.stats.get(m.offer.miner, prior)) for m in live
        ]

    def _pool(self, claimer: LiveMiner, live: Iterable[LiveMiner], now_ms: int) -> list[LiveMiner]:
        """The claimer and every other miner heard from recently with a free slot."""
        cutoff = now_ms - self.config.miner_timeout_ms
        others = [
            m for m in live if m is not claimer and m.last_seen_ms >= cutoff and len(m.active) < m.max_concurrency
        ]
        return [*others, claimer]

    def _hold(self, until_ms: int) -> bool:
        self._due_at_ms = until_ms if self._due_at_ms is None else min(self._due_at_ms, until_ms)
        return False

    def allows(
        self,
        claimer: LiveMiner,
        job: JobRequirements,
        job_id: str,
        queued_since_ms: int,
        live: Iterable[LiveMiner],
        now_ms: int,
    ) -> bool:
        pool = self._pool(claimer, live, now_ms)
        if len(pool) == 1 or now_ms - queued_since_ms >= self.hold_ms:
            return True
        best = get_best(job, self.states(pool, now_ms), now_ms, self.config, job_id)
        return best is None or best == claimer.offer.miner or self._hold(queued_since_ms + self.hold_ms)

    def order_waiters(self, model: str, waiters: Sequence[W]) -> list[tuple[int, W]]:
        """Best-ranked miner first (for a job of ``model`` with no other constraints), then longest waiting.

        Waking the miner the job will go to saves the wake-up of every other claimer that a refused
        claim causes. The ranking here ignores the job's own constraints; if it guesses wrong, the
        refused claimer wakes the others as before.
        """
        indexed = list(enumerate(waiters))
        serving = {w.live.offer.miner: w.live for w in waiters if any(m.name == model for m in w.live.offer.models)}
        if len(serving) <= 1:
            return indexed
        kind = next(m.kind for live in serving.values() for m in live.offer.models if m.name == model)
        job_type = "inference" if kind == "text" else kind  # the job type each model kind runs (compute_model_kind)
        job = JobRequirements(job_type=job_type, model=model, input_chars=0, max_tokens=0)
        now = int(time.time() * 1000)
        scores: dict[str, float] = {}
        for state in self.states(serving.values(), now):
            served = get_eligible_model(state, job, now, self.config)
            if served is not None:
                scores[state.miner] = compute_score(
                    compute_factors(state, served, now, self.config), self.config.weights
                )
        return sorted(indexed, key=lambda item: (-scores.get(item[1].live.offer.miner, -1.0), item[0]))

    def is_due(self, now_ms: int) -> bool:
        if self._due_at_ms is not None and now_ms >= self._due_at_ms:
            self._due_at_ms = None
            return True
        return False

    def explain(self, job: JobRequirements, job_id: str, live: Iterable[LiveMiner], now_ms: int) -> dict[str, Any]:
        ranking = explain(job, self.states(live, now_ms), now_ms, self.config, job_id)
        return {
            "policy": self.name,
            "job_id": job_id,
            "exploration_slot": ranking.exploration_slot,
            "candidates": [
                {
                    "rank": i + 1,
                    "miner": c.miner,
                    "score": round(c.score, 6),
                    "exploration": c.exploration,
                    "factors": {k: round(v, 6) for k, v in c.factors.items()},
                    "reasons": list(c.reasons),
                }
                for i, c in enumerate(ranking.candidates)
            ],
            "excluded": [{"miner": e.miner, "reason": e.reason} for e in ranking.excluded],
        }

    async def aclose(self) -> None:
        return None


def job_body(job: JobRequirements, job_id: str) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "type": job.job_type,
        "model": job.model,
        "model_digest": job.model_digest,
        "input_chars": job.input_chars,
        "max_tokens": job.max_tokens,
        "max_price": job.max_price,
        "min_vram_gb": job.min_vram_gb,
        "gpu": job.gpu,
        "region": job.region,
        "min_stake": job.min_stake,
    }


def registration_body(
    offer: MinerOffer, registration: MinerRegistration, max_concurrency: int, stake: int = 0
) -> dict[str, Any]:
    hardware = msgspec.to_builtins(registration.hardware)
    return {
        "miner": offer.miner,
        "models": [
            {"name": m.name, "digest": m.digest, "kind": m.kind, "unit_price": m.unit_price} for m in offer.models
        ],
        "region": offer.region or None,
        "hardware": {k: v for k, v in hardware.items() if v is not None} or None,
        "max_concurrency": max_concurrency,
        "stake": stake,
    }


class PoolHubMatchPolicy:
    """Matching by the pool hub, with the local policy as the fallback when the hub cannot answer."""

    name = "poolhub"

    def __init__(self, url: str, token: str | None, fallback: LocalMatchPolicy) -> None:
        self.url = url.rstrip("/")
        self.fallback = fallback
        self._sync = PoolHubClient(self.url, token, timeout=HUB_TIMEOUT_S)
        self._async = AsyncPoolHubClient(self.url, token, timeout=5.0)
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._heartbeats: dict[str, int] = {}
        self._wake: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self._rankings: dict[str, tuple[int, str | None]] = {}  # job id → (fetched at, best miner)
        self.hub_errors = 0

    # -- forwarding (event loop) -------------------------------------------------------
    def _enqueue(self, path: str, body: dict[str, Any]) -> None:
        self._events.append((path, body))
        self._kick()

    def _kick(self) -> None:
        if self._sender is None or self._sender.done():
            self._wake = asyncio.Event()
            self._sender = asyncio.get_running_loop().create_task(self._send_loop())
        assert self._wake is not None
        self._wake.set()

    async def _send_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        events, self._events = self._events, []
        beats, self._heartbeats = self._heartbeats, {}
        for path, body in events:  # registrations and outcomes, in order
            await self._post(path, body)
        items = [{"miner": m, "load": load} for m, load in beats.items()]
        for i in range(0, len(items), HUB_BATCH):
            await self._post("/v1/heartbeats", {"beats": items[i : i + HUB_BATCH]})

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        try:
            await self._async.post(path, body)
        except RemoteError as exc:
            self.hub_errors += 1
            if is_unreachable(exc):
                log.warning("pool hub unreachable (%s): %s", path, exc)
            else:
                log.warning("pool hub refused %s: %s %s", path, exc.code, exc.message[:300])

    def on_register(
        self, offer: MinerOffer, registration: MinerRegistration, max_concurrency: int, stake: int = 0
    ) -> None:
        self.fallback.on_register(offer, registration, max_concurrency, stake)
        self._enqueue("/v1/miners", registration_body(offer, registration, max_concurrency, stake))

    def on_heartbeat(self, miner: str, load: int) -> None:
        self._heartbeats[miner] = load
        self._kick()

    def on_outcome(
        self,
        miner: str,
        job_id: str,
        attempt: int,
        outcome: Outcome,
        ttft_ms: float | None = None,
        tokens_per_s: float | None = None,
        detail: str | None = None,
    ) -> None:
        self.fallback.on_outcome(miner, job_id, attempt, outcome, ttft_ms, tokens_per_s, detail)
        self._enqueue(
            "/v1/outcomes",
            {
                "miner": miner,
                "job_id": job_id,
                "attempt": max(1, attempt),
                "outcome": outcome.value,
                "ttft_ms": ttft_ms,
                "tokens_per_s": tokens_per_s,
                "detail": detail[:2000] if detail else None,
            },
        )

    # -- matching (database thread) -------------------------------------------------------
    def _hub_best(self, job: JobRequirements, job_id: str, pool: list[LiveMiner], now_ms: int) -> str | None:
        cached = self._rankings.get(job_id)
        if cached is not None and now_ms - cached[0] < HUB_RANKING_CACHE_MS:
            return cached[1]
        candidates = self._sync.match(job_body(job, job_id), 1, [m.offer.miner for m in pool])["candidates"]
        best = candidates[0]["miner"] if candidates else None
        if len(self._rankings) > 10_000:
            self._rankings.clear()
        self._rankings[job_id] = (now_ms, best)
        return best

    def allows(
        self,
        claimer: LiveMiner,
        job: JobRequirements,
        job_id: str,
        queued_since_ms: int,
        live: Iterable[LiveMiner],
        now_ms: int,
    ) -> bool:
        pool = self.fallback._pool(claimer, live, now_ms)
        if len(pool) == 1 or now_ms - queued_since_ms >= self.fallback.hold_ms:
            return True
        try:
            best = self._hub_best(job, job_id, pool, now_ms)
        except (RemoteError, KeyError, ValueError) as exc:
            self.hub_errors += 1
            log.warning("pool hub match failed, ranking locally: %s", exc)
            return self.fallback.allows(claimer, job, job_id, queued_since_ms, pool, now_ms)
        if best is None or best == claimer.offer.miner:
            return True
        return self.fallback._hold(queued_since_ms + self.fallback.hold_ms)

    def is_due(self, now_ms: int) -> bool:
        return self.fallback.is_due(now_ms)

    def order_waiters(self, model: str, waiters: Sequence[W]) -> list[tuple[int, W]]:
        return self.fallback.order_waiters(model, waiters)  # no network call on the event loop

    def explain(self, job: JobRequirements, job_id: str, live: Iterable[LiveMiner], now_ms: int) -> dict[str, Any]:
        pool = list(live)
        try:
            ranking = self._sync.match(
                job_body(job, job_id), 1000, [m.offer.miner for m in pool], explain=True, timeout=5.0
            )
            return {"policy": self.name, "poolhub": self.url, **ranking}
        except (RemoteError, ValueError) as exc:
            local = self.fallback.explain(job, job_id, pool, now_ms)
            return {**local, "policy": "local (pool hub unreachable)", "poolhub_error": str(exc)}

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._flush()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        await self._async.aclose()
        self._sync.close()


def create_match_policy(settings: CoordinatorSettings) -> MatchPolicy:
    """The pool hub's policy when ``poolhub_url`` is set, else the in-process one."""
    local = LocalMatchPolicy(
        ScoringConfig(miner_timeout_ms=int(settings.miner_timeout_seconds * 1000)), settings.match_hold_ms
    )
    if settings.poolhub_url:
        return PoolHubMatchPolicy(settings.poolhub_url, settings.poolhub_token, local)
    return local


def measured_speed(
    assigned: int | None, started: int | None, completion_tokens: int, now_ms: int
) -> tuple[float | None, float | None]:
    """Time to first token and tokens/s of a completed job, from the coordinator's own clock.

    The first token is the first progress report (or, for a miner that reports none, the result);
    tokens per second divide the receipt's completion tokens (what the client pays for) by the
    coordinator-measured time from first token to result.
    """
    if assigned is None:
        return None, None
    first = started if started is not None and started > assigned else now_ms
    ttft = float(max(0, first - assigned))
    tps = completion_tokens * 1000 / max(1, now_ms - first) if completion_tokens and now_ms > first else None
    return ttft, tps
