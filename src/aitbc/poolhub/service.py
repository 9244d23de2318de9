"""The pool hub's shell: registry writes off the event loop, matching from the in-memory index.

The registry is the source of truth; at start the service loads it into a ``MinerIndex``
and from then on updates both (the registry first, so a failed write changes nothing).
Heartbeats are the frequent write: they update the index at once (so a miner that stops
heartbeating drops out of matching after ``miner_timeout_seconds``) and reach the registry
in batches every ``heartbeat_flush_ms``.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar

from aitbc.market.matching import JobRequirements, ServedModel
from aitbc.market.scoring import (
    Candidate,
    MinerState,
    Outcome,
    apply_outcome,
    compute_factors,
    compute_score,
    explain,
    is_exploration_slot,
    is_online,
    rank,
)
from aitbc.market.scoring_index import MinerIndex
from aitbc.poolhub.config import PoolHubSettings
from aitbc.poolhub.metrics import PoolHubMetrics
from aitbc.poolhub.registry import (
    Heartbeat,
    MinerRecord,
    OutcomeReport,
    Registry,
    offer_from_registration,
)
from aitbc.protocol.errors import NotFound

log = logging.getLogger("aitbc.poolhub")

REKEY_AFTER_MS = 3_600_000
"""Index entries older than this are re-keyed (the age factor's growth since then loosens the match bound)."""
REKEY_BATCH = 256

P = ParamSpec("P")
T = TypeVar("T")


def now_ms() -> int:
    return int(time.time() * 1000)


def candidate_view(candidate: Candidate, position: int) -> dict[str, Any]:
    return {
        "rank": position,
        "miner": candidate.miner,
        "score": round(candidate.score, 6),
        "exploration": candidate.exploration,
        "factors": {k: round(v, 6) for k, v in candidate.factors.items()},
        "reasons": list(candidate.reasons),
    }


class PoolHubService:
    def __init__(self, settings: PoolHubSettings, registry: Registry, metrics: PoolHubMetrics) -> None:
        self.settings = settings
        self.config = settings.scoring_config()
        self.registry = registry
        self.metrics = metrics
        self.index = MinerIndex(self.config)
        self.registrations: dict[str, dict[str, Any]] = {}
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-write")
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="registry-read")
        self._beats: dict[str, Heartbeat] = {}
        self._online_count, self._online_counted_at = 0, 0

    # -- plumbing ----------------------------------------------------------------
    async def _write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, lambda: fn(*args, **kwargs))

    async def _read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, lambda: fn(*args, **kwargs))

    def load(self) -> None:
        for record in self.registry.load_miners():
            self._remember(record)
        self.metrics.miners_registered.set(len(self.index))

    def _remember(self, record: MinerRecord) -> None:
        self.index.upsert(record.state, now_ms())
        self.registrations[record.state.miner] = record.registration

    async def flush_heartbeats(self) -> None:
        """Write the heartbeats gathered since the last call; also keep the index's keys fresh (see ``MinerIndex``)."""
        self.index.refresh(now_ms(), REKEY_AFTER_MS, REKEY_BATCH)
        if self._beats:
            beats, self._beats = list(self._beats.values()), {}
            await self._write(self.registry.record_heartbeats, beats)

    async def close(self) -> None:
        try:
            await self.flush_heartbeats()
        finally:
            self._writer.shutdown(wait=True)
            self._readers.shutdown(wait=True)
            self.registry.close()

    def _state(self, address: str) -> MinerState:
        state = self.index.get(address)
        if state is None:
            raise NotFound(f"miner {address} is not registered", reason="unknown_miner")
        return state

    # -- writes (the coordinator) ----------------------------------------------------
    async def register(
        self, address: str, registration: dict[str, Any], stake: int, max_concurrency: int
    ) -> dict[str, Any]:
        offer_from_registration(address, registration)  # refuse a malformed registration before storing it
        record = await self._write(self.registry.upsert_miner, address, registration, stake, max_concurrency, now_ms())
        self._remember(record)
        self.metrics.registrations.inc()
        self.metrics.miners_registered.set(len(self.index))
        log.info("miner registered", extra={"miner": address, "models": [m.name for m in record.state.offer.models]})
        return self.miner_view(record.state)

    async def remove(self, address: str) -> dict[str, Any]:
        self._state(address)
        await self._write(self.registry.remove_miner, address, now_ms())
        self.index.remove(address)
        self.registrations.pop(address, None)
        self._beats.pop(address, None)
        self.metrics.miners_registered.set(len(self.index))
        return {"miner": address, "removed": True}

    def heartbeat(self, address: str, load: int | None) -> int:
        """Mark the miner alive (immediately for matching; in the registry at the next flush)."""
        at = now_ms()
        if not self.index.set_live(address, at, load):
            raise NotFound(f"miner {address} is not registered; register first", reason="unknown_miner")
        # with the load as known now, so the registry writes the beat without reading anything back
        self._beats[address] = Heartbeat(address, at, self.index.states[address].load)
        self.metrics.heartbeats.inc()
        return at

    def heartbeats(self, beats: list[tuple[str, int | None]]) -> dict[str, Any]:
        accepted, unknown = 0, []
        for address, load in beats:
            try:
                self.heartbeat(address, load)
                accepted += 1
            except NotFound:
                unknown.append(address)
        return {"accepted": accepted, "unknown": unknown}

    async def record_outcome(
        self,
        address: str,
        job_id: str,
        attempt: int,
        outcome: Outcome,
        ttft_ms: float | None,
        tokens_per_s: float | None,
        detail: str | None,
    ) -> dict[str, Any]:
        state = self._state(address)
        at = now_ms()
        stats = apply_outcome(state.stats, outcome, at, self.config, ttft_ms, tokens_per_s)
        report = OutcomeReport(address, job_id, attempt, outcome, at, ttft_ms, tokens_per_s, detail)
        recorded = await self._write(self.registry.record_outcome, report, stats)
        if recorded:
            current = self.index.get(address)  # re-read: a heartbeat may have changed it meanwhile
            if current is not None:
                self.index.upsert(replace(current, stats=stats), now_ms())
            self.metrics.outcomes.labels(outcome.value).inc()
        return {
            "miner": address,
            "job_id": job_id,
            "recorded": recorded,
            "stats": self.stats_view(self._state(address)),
        }

    # -- matching ------------------------------------------------------------------
    def match(
        self,
        job: JobRequirements,
        job_id: str,
        limit: int,
        candidates: list[str] | None = None,
        with_exclusions: bool = False,
    ) -> dict[str, Any]:
        started = time.perf_counter()
        at = now_ms()
        excluded: list[dict[str, str]] | None = None
        if candidates is not None or with_exclusions:
            pool = (
                self.index.miners()
                if candidates is None
                else [s for s in (self.index.get(a) for a in candidates) if s is not None]
            )
            if with_exclusions:
                ranking = explain(job, pool, at, self.config, job_id)
                ranked = ranking.candidates[:limit]
                excluded = [{"miner": e.miner, "reason": e.reason} for e in ranking.excluded]
                if candidates is not None:
                    known = {s.miner for s in pool}
                    excluded += [{"miner": a, "reason": "not registered"} for a in candidates if a not in known]
            else:
                ranked = rank(job, pool, at, self.config, job_id, limit)
        else:
            ranked = self.index.top(job, at, limit, job_id)
        elapsed = time.perf_counter() - started
        self.metrics.match_latency.observe(elapsed)
        self.metrics.matches.labels("matched" if ranked else "no_candidate").inc()
        reply: dict[str, Any] = {
            "job_id": job_id,
            "exploration_slot": is_exploration_slot(job_id, self.config.exploration_share),
            "candidates": [candidate_view(c, i + 1) for i, c in enumerate(ranked)],
            "took_ms": round(elapsed * 1000, 3),
        }
        if excluded is not None:
            reply["excluded"] = excluded
        return reply

    # -- reads ---------------------------------------------------------------------
    def stats_view(self, state: MinerState) -> dict[str, Any]:
        s = state.stats
        return {
            "reliability": round(s.reliability, 6),
            "ttft_ms": None if s.ttft_ms is None else round(s.ttft_ms, 3),
            "tokens_per_s": None if s.tokens_per_s is None else round(s.tokens_per_s, 3),
            "jobs": s.jobs,
            "completed": s.completed,
            "failed": s.failed,
            "timed_out": s.timed_out,
            "receipt_rejected": s.receipt_rejected,
            "last_outcome_ms": s.last_outcome_ms or None,
        }

    def miner_view(self, state: MinerState, at: int | None = None) -> dict[str, Any]:
        at = at or now_ms()
        return {
            "miner": state.miner,
            "online": is_online(state, at, self.config),
            "last_seen_ms": state.last_seen_ms or None,
            "registered_at_ms": state.registered_at_ms,
            "load": state.load,
            "max_concurrency": state.max_concurrency,
            "stake": state.stake,
            "region": state.offer.region,
            "gpu_name": state.offer.gpu_name,
            "vram_gb": state.offer.vram_gb,
            "models": [
                {"name": m.name, "kind": m.kind, "digest": m.digest, "unit_price": m.unit_price}
                for m in state.offer.models
            ],
            "new": state.stats.jobs < self.config.exploration_jobs,
            "stats": self.stats_view(state),
        }

    def list_miners(self, online_only: bool, model: str | None, limit: int) -> list[dict[str, Any]]:
        at = now_ms()
        states = sorted(self.index.miners(), key=lambda s: s.miner)
        if online_only:
            states = [s for s in states if is_online(s, at, self.config)]
        if model is not None:
            states = [s for s in states if any(m.name == model for m in s.offer.models)]
        return [self.miner_view(s, at) for s in states[:limit]]

    async def miner_detail(self, address: str, history: int) -> dict[str, Any]:
        state = self._state(address)
        outcomes = await self._read(self.registry.get_outcomes, address, history)
        audit = await self._read(self.registry.get_audit, address, history)
        return {**self.miner_view(state), "recent_outcomes": outcomes, "audit": audit}

    def _quality(self, state: MinerState, model: ServedModel, at: int) -> float:
        """A job-independent score for the leaderboard: the match score as if the miner were idle."""
        return compute_score(compute_factors(replace(state, load=0), model, at, self.config), self.config.weights)

    def leaderboard(self, model: str | None, limit: int) -> list[dict[str, Any]]:
        at = now_ms()
        rows = []
        for state in self.index.miners():
            served = [m for m in state.offer.models if model is None or m.name == model]
            if not served:
                continue
            best = max(served, key=lambda m: self._quality(state, m, at))
            rows.append((self._quality(state, best, at), state, best))
        rows.sort(key=lambda r: (-r[0], r[1].miner))
        return [
            {
                "rank": i + 1,
                "miner": state.miner,
                "score": round(score, 6),
                "model": served.name,
                "unit_price": served.unit_price,
                "online": is_online(state, at, self.config),
                "stats": self.stats_view(state),
            }
            for i, (score, state, served) in enumerate(rows[:limit])
        ]

    def _online(self, at: int) -> list[MinerState]:
        return [s for s in self.index.miners() if is_online(s, at, self.config)]

    def capacity(self) -> list[dict[str, Any]]:
        at = now_ms()
        per: dict[tuple[str, str], dict[str, Any]] = {}
        for state in self._online(at):
            for name, kind in {(m.name, m.kind) for m in state.offer.models}:
                entry = per.setdefault((name, kind), {"model": name, "kind": kind, "miners": 0, "slots": 0, "free": 0})
                entry["miners"] += 1
                entry["slots"] += state.max_concurrency
                entry["free"] += max(0, state.max_concurrency - state.load)
        return sorted(per.values(), key=lambda e: (e["kind"], e["model"]))

    def prices(self) -> list[dict[str, Any]]:
        at = now_ms()
        per: dict[tuple[str, str, str], list[int]] = {}
        for state in self._online(at):
            for m in state.offer.models:
                per.setdefault((m.name, m.kind, m.digest), []).append(m.unit_price)
        return [
            {
                "model": name,
                "kind": kind,
                "digest": digest,
                "miners": len(prices),
                "min_unit_price": min(prices),
                "median_unit_price": statistics.median(prices),
                "max_unit_price": max(prices),
            }
            for (name, kind, digest), prices in sorted(per.items())
        ]

    def online_count(self, max_age_ms: int = 1_000) -> int:
        """Miners online now, counted at most ``max_age_ms`` ago (a count is a scan of every miner)."""
        at = now_ms()
        if at - self._online_counted_at >= max_age_ms:
            self._online_count, self._online_counted_at = len(self._online(at)), at
        return self._online_count

    def refresh_gauges(self) -> None:
        self.metrics.miners_registered.set(len(self.index))
        self.metrics.miners_online.set(self.online_count(max_age_ms=0))
        self.metrics.capacity.clear()
        self.metrics.free_capacity.clear()
        for entry in self.capacity():
            self.metrics.capacity.labels(entry["model"], entry["kind"]).set(entry["slots"])
            self.metrics.free_capacity.labels(entry["model"], entry["kind"]).set(entry["free"])
