"""``MinerDispatcher``: the live miners, the claimers waiting for work, their claims and leases.

A miner waiting for work long-polls ``claim`` on an in-process event that every new or requeued
job fires, so a claim follows a submission within milliseconds. Who of several waiting claimers
gets a job is the matching policy's call (``aitbc.coordinator.matching``); what a claim may take is
the job lifecycle's (``aitbc.market.lifecycle``) and the market's eligibility rules
(``aitbc.market.matching``). Everything here runs on the event loop, except a claim's scan
(``_claim_terms``' choice: on a reader, or with its take on the writer) and ``_extend_lease_sync``, which
runs on the database writer thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aitbc.coordinator.config import CoordinatorSettings
from aitbc.coordinator.db.records import JobRecord, registration_from_json
from aitbc.coordinator.db.repo import ClaimChoice
from aitbc.coordinator.db.writer import DbWriter
from aitbc.coordinator.events import JobEventBroker
from aitbc.coordinator.live import LiveMiner, LiveMiners, compute_min_affordable_from_view, offer_from_registration
from aitbc.coordinator.matching import MatchPolicy
from aitbc.coordinator.metrics import CoordinatorMetrics
from aitbc.coordinator.payments import PriceTooLow
from aitbc.coordinator.views import job_view
from aitbc.market.conduct import (
    ReleaseAllowance,
    compute_recent_releases,
    is_heartbeat_within_slots,
    is_reclaim_allowed,
)
from aitbc.market.lifecycle import JobLifecycle, JobRuleViolation, on_claim, on_progress
from aitbc.market.matching import find_served_model, get_ineligibility
from aitbc.protocol.errors import InvalidInput, NotFound, UnknownMiner, UnknownModel
from aitbc.protocol.job import JobInput, compute_model_kind
from aitbc.protocol.job_messages import AssignedJob, JobAssignment, Lease, MinerRegistration
from aitbc.runtime.entropy import random_bytes

log = logging.getLogger("aitbc.coordinator")

CLAIM_SCAN_LIMIT = 50
LEASE_REWRITE_BELOW = 0.9


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True, frozen=True)
class LeaseMark:
    miner: str
    lease_id: str
    expires_at_ms: int


@dataclass(slots=True, eq=False)
class Waiter:
    live: LiveMiner
    future: asyncio.Future[bool]
    """Resolves True when woken for one new job, False when woken with everyone."""


class MinerDispatcher:
    def __init__(
        self,
        settings: CoordinatorSettings,
        db: DbWriter,
        coordinator: str,
        metrics: CoordinatorMetrics,
        events: JobEventBroker,
        match_policy: MatchPolicy,
        due_by: Callable[[int | None], None],
    ) -> None:
        self.settings = settings
        self.db = db
        self.repo = db.repo
        self.coordinator = coordinator
        self.metrics = metrics
        self.events = events
        self.match_policy = match_policy
        self.due_by = due_by
        """Tell the sweeper something (a lease) may expire then."""
        self.miners: dict[str, LiveMiner] = {}
        self._live = LiveMiners(self.miners, int(settings.miner_timeout_seconds * 1000))
        self._claim_lock = asyncio.Lock()
        self._waiters: list[Waiter] = []  # claimers long-polling for work, longest-waiting first
        self.metrics.claims_waiting.set_function(lambda: len(self._waiters))
        self._work_generation = 0
        self._leases: dict[str, LeaseMark] = {}  # job id → the running job's lease as last written
        self._lease_ms = int(settings.lease_seconds * 1000)
        self._stopping = False
        self.release_allowance = ReleaseAllowance(
            free_releases=settings.free_releases,
            window_ms=int(settings.release_window_seconds * 1000),
            cooldown_ms=int(settings.release_cooldown_seconds * 1000),
        )
        self._releases: dict[str, list[int]] = {}  # miner → its recent release times
        self._released: dict[str, tuple[str, int]] = {}  # job id → (the miner that released it, when)
        self.min_bond: int | None = None
        """The chain's ``min_miner_bond`` as last read; None until read (audited jobs wait for it)."""
        self.broadcast: Callable[[str | None], None] | None = None
        """Set on a replica (``aitbc.coordinator.replication``): tells the other replicas that work arrived."""
        self.announce_miner: Callable[[str], None] | None = None
        """Set on a replica: tells the other replicas that a miner registered here."""
        self._registrations: dict[str, Any] = {}  # miner → its registration as stored, as last synced
        self._touched_ms = 0  # miners heard from since then are written back (``sync_miners``)

    # -- miners ----------------------------------------------------------------------
    def load(self) -> None:
        """Know previously registered miners (offline until they call again)."""
        for address, registration in self.repo.load_miners():
            self.miners[address] = LiveMiner(
                offer_from_registration(address, registration),
                registration,
                registration.max_concurrency,
                last_seen_ms=0,
            )
        self._live.changed()

    def live_miners(self, at_ms: int | None = None) -> list[LiveMiner]:
        return list(self._live.view(at_ms or now_ms(), self.min_bond).live)

    def miners_changed(self) -> None:
        """A miner's bond changed (or anything else ``served_models`` reports, other than through this class)."""
        self._live.changed()

    def live(self, miner: str) -> LiveMiner:
        """The registered miner, marked as heard from now."""
        live = self.miners.get(miner)
        if live is None:
            raise UnknownMiner(f"miner {miner} is not registered; register first")
        self._live.heard(live, now_ms())
        return live

    async def live_async(self, miner: str) -> LiveMiner:
        """``live``; on a replica, a miner that registered through another replica is read from the database."""
        if miner not in self.miners and self.broadcast is not None:
            found = await self.db.read(self.repo.get_miner, miner)
            if found is not None and miner not in self.miners:
                self._adopt(miner, found[0], found[1])
        return self.live(miner)

    def _adopt(self, miner: str, registration: MinerRegistration, last_seen_ms: int) -> LiveMiner:
        previous = self.miners.get(miner)
        live = LiveMiner(
            offer_from_registration(miner, registration),
            registration,
            registration.max_concurrency,
            last_seen_ms,
            active=previous.active if previous else set(),
            bond=previous.bond if previous else 0,
        )
        self.miners[miner] = live
        self._live.changed()
        self.match_policy.on_register(live.offer, registration, live.max_concurrency, live.bond)
        return live

    async def load_miner(self, miner: str) -> None:
        """A miner registered through another replica: know it (and its registration) now."""
        found = await self.db.read(self.repo.get_miner, miner)
        if found is not None:
            live = self._adopt(miner, found[0], found[1])
            self._live.heard(live, max(live.last_seen_ms, found[1]))
            self.notify_work()

    async def sync_miners(self) -> None:
        """On a replica: write when this replica last heard from its miners, and learn the miners (and their
        registrations) the other replicas heard from, so that every replica knows every live miner."""
        now = now_ms()
        since, self._touched_ms = self._touched_ms, now
        heard = [(m.offer.miner, m.last_seen_ms) for m in self.miners.values() if m.last_seen_ms >= since]
        await self.db.write(self.repo.touch_miners, heard)
        cutoff = now - int(self.settings.miner_timeout_seconds * 1000)
        for address, stored, last_seen in await self.db.read(self.repo.miners_seen_since, cutoff):
            live = self.miners.get(address)
            if live is None or self._registrations.get(address) != stored:
                live = self._adopt(address, registration_from_json(stored), last_seen)
                self._registrations[address] = stored
            self._live.heard(live, max(live.last_seen_ms, last_seen))
        self.metrics.miners_online.set(len(self.live_miners(now)))

    async def register(self, miner: str, registration: MinerRegistration) -> LiveMiner:
        offer = offer_from_registration(miner, registration)
        previous = self.miners.get(miner)
        live = LiveMiner(
            offer,
            registration,
            registration.max_concurrency,
            now_ms(),
            active=previous.active if previous else set(),
            bond=previous.bond if previous else 0,
        )
        await self.db.write(self.repo.upsert_miner, miner, registration, live.last_seen_ms)
        self.miners[miner] = live
        self._live.changed()
        self.match_policy.on_register(offer, registration, live.max_concurrency, live.bond)
        self.metrics.miners_online.set(len(self.live_miners()))
        self.notify_work()
        if self.announce_miner is not None:
            self.announce_miner(miner)
        log.info("miner registered", extra={"miner": miner, "models": [m.name for m in offer.models]})
        return live

    def quote(self, job_type: str, model: str, model_digest: str | None) -> dict[str, Any]:
        """The live miner with spare capacity that serves ``model`` cheapest (a private job is sealed to it)."""
        kind = compute_model_kind(job_type)
        offers = [
            (served.unit_price, len(live.active) / live.max_concurrency, live.offer.miner, served)
            for live in self.live_miners()
            for served in live.offer.models
            if served.name == model and served.kind == kind and model_digest in (None, served.digest)
        ]
        if not offers:
            raise UnknownModel(f"no live miner serves {kind} model {model!r}")
        price, _, miner, served = min(offers, key=lambda o: (o[0], o[1], o[2]))
        return {"miner": miner, "unit_price": price, "model": model, "model_digest": served.digest}

    def served_models(self) -> list[dict[str, Any]]:
        return list(self._live.view(now_ms(), self.min_bond).served)

    def check_affordable(self, job: JobRecord) -> None:
        """Refuse (402, with the amount needed) a job no live miner that fits it would take at its price: it
        would otherwise sit queued until its ttl, and only ``/match`` would say why."""
        if job.max_price is None:
            return
        needed = compute_min_affordable_from_view(self._live.view(now_ms(), self.min_bond), job.requirements())
        if needed is not None and job.max_price < needed:
            raise PriceTooLow(job.max_price, needed)

    def check_served(self, job_type: str, model: str, model_digest: str | None) -> None:
        """Refuse (422) a job for a model no live miner serves (of that kind, with that digest)."""
        kind = compute_model_kind(job_type)
        served = self.served_models()
        if not any(m["name"] == model and m["kind"] == kind and model_digest in (None, m["digest"]) for m in served):
            available = sorted({m["name"] for m in served if m["kind"] == kind})
            raise UnknownModel(
                f"no live miner serves {kind} model {model!r}"
                + (f" with digest {model_digest}" if model_digest else "")
                + f"; available: {', '.join(available) or 'none'}"
            )

    # -- waking claimers ---------------------------------------------------------------
    def announce_work(self, model: str | None = None) -> None:
        """Work arrived (a new job of ``model``; None: a requeued one): wake claimers here and on the other
        replicas."""
        self.notify_work(model)
        if self.broadcast is not None:
            self.broadcast(model)

    def notify_work(self, model: str | None = None, remote: bool = False) -> None:
        """Wake long-polling claimers: for one new job of ``model``, the claimer that serves it and has room that
        the match policy ranks first (then the longest-waiting); otherwise (requeued jobs, new miners) all of them.

        Waking one claimer per new job instead of all keeps N waiting workers from racing N database
        round trips for every submission; a claimer woken for a job it then does not get wakes the rest —
        unless the job was submitted through another replica (``remote``): each replica wakes one claimer
        for it, and all but one of them find it taken.
        """
        self._work_generation += 1
        if model is not None:
            for i, waiter in self.match_policy.order_waiters(model, self._waiters):
                live = waiter.live
                if waiter.future.done():  # timed out or cancelled, not yet off the list (``claim_many``'s finally)
                    continue
                if len(live.active) < live.max_concurrency and any(m.name == model for m in live.offer.models):
                    del self._waiters[i]
                    waiter.future.set_result(not remote)
                    return
            return
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_result(False)

    def stop_claims(self) -> None:
        """The coordinator is stopping: long-polling claims end now, empty, and no new job is handed out."""
        self._stopping = True
        self.notify_work()

    # -- claims ------------------------------------------------------------------------
    async def claim_many(
        self, miner: str, wait_seconds: float, max_jobs: int, gone: asyncio.Future[None] | None = None
    ) -> list[JobAssignment]:
        """Long-poll until at least one job is claimable, then take up to ``max_jobs`` (within the miner's free
        slots) from one scan of the queue: one request and one signature check for many jobs.

        ``gone``: done once the miner's connection closed; the long poll then ends without taking a job (a
        take already under way completes: the caller hands its jobs back, ``CoordinatorService.claim_many``)."""
        claimed = await self._wait_and_claim(miner, wait_seconds, max_jobs, gone)
        self.metrics.claims.labels("jobs" if claimed else "empty").inc()
        return claimed

    async def _wait_and_claim(
        self, miner: str, wait_seconds: float, max_jobs: int, gone: asyncio.Future[None] | None
    ) -> list[JobAssignment]:
        live = await self.live_async(miner)
        deadline = time.monotonic() + min(wait_seconds, self.settings.max_claim_wait_seconds)
        woken_for_a_job = False
        while True:
            if self._stopping or (gone is not None and gone.done()):
                if woken_for_a_job:
                    self.notify_work()  # the job this claimer was woken for goes to someone else
                return []
            # jobs accepted before this look are offered in it: wait for rows still on their way (the intake log)
            await self.db.all_stored()
            generation = self._work_generation
            if self.broadcast is not None:  # its jobs may have ended (or been claimed) through another replica
                live.active = await self.db.read(self.repo.active_job_ids, miner)
            # Jobs become claimable only through ``notify_work`` (a submission, a requeue, a registration),
            # so if none happened since this miner's last empty look, the database has nothing for it either.
            if len(live.active) < live.max_concurrency and live.idle_generation != generation:
                room = min(max_jobs, live.max_concurrency - len(live.active))
                async with self._claim_lock:
                    claimed = await self._claim_queued(live, now_ms(), room)
                if claimed:
                    return [self._on_claimed(live, job) for job in claimed]
                live.idle_generation = generation
            work_arrived = generation != self._work_generation
            if woken_for_a_job:  # the job went to someone else, or does not suit this miner
                self.notify_work()
                woken_for_a_job = False
            if work_arrived:
                continue  # work arrived while this claimer was looking: look again before sleeping
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            waiter = Waiter(live, asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
            try:
                if gone is None:
                    woken_for_a_job = await asyncio.wait_for(waiter.future, timeout=remaining)
                else:
                    await asyncio.wait((waiter.future, gone), timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                    woken_for_a_job = waiter.future.done() and waiter.future.result()
                    if not waiter.future.done() and not gone.done():
                        return []  # no work in time
            except TimeoutError:
                return []
            except asyncio.CancelledError:  # the miner went away: pass on a job it was woken for
                if waiter.future.done() and not waiter.future.cancelled() and waiter.future.result():
                    self.notify_work()
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            self._live.heard(live, now_ms())

    async def _claim_queued(self, live: LiveMiner, now: int, count: int) -> list[JobRecord]:
        """Up to ``count`` jobs from one scan of the queue (not one scan per job).

        With row locks (PostgreSQL) the scan and the take are one transaction on the writer. On SQLite the
        scan and the choice run on a reader and only the take on the writer, which job submissions wait
        for: a claim holds it for its update alone (claims are serialized by ``_claim_lock``, and the take
        is conditional, so a job that left the queue meanwhile is not taken)."""
        scan = CLAIM_SCAN_LIMIT + count - 1
        if self.repo.row_locks:
            return await self.db.write(self._claim_from_scan, live, now, count, scan)
        chosen = await self.db.read(self.repo.choose_claims, *self._claim_terms(live, now, count, scan))
        return await self.db.write(self.repo.take_claims, chosen) if chosen else []

    def _claim_from_scan(self, live: LiveMiner, now: int, count: int, scan: int) -> list[JobRecord]:
        return self.repo.claim_queued(*self._claim_terms(live, now, count, scan))

    def _claim_terms(
        self, live: LiveMiner, now: int, count: int, scan: int
    ) -> tuple[list[str], int, int, int, ClaimChoice]:
        """The arguments of a claim's scan for ``live``: its models, the time, how many, and its choice."""
        models = sorted({m.name for m in live.offer.models})
        ready = [w.live for w in list(self._waiters)]  # miners long-polling right now (a snapshot: DB thread)

        def choose(job: JobRecord) -> tuple[JobLifecycle, str, int] | None:
            if job.constraints.miner not in (None, live.offer.miner):
                return None  # a private job, sealed to another miner
            requirements = job.requirements()
            if job.constraints.audited:  # only for a bonded miner (docs/verification.md)
                if self.min_bond is None or live.bond < self.min_bond:
                    return None
                requirements = replace(requirements, min_stake=self.min_bond)
            if get_ineligibility(live.offer, requirements) is not None:
                return None
            released_by, released_at = self._released.get(job.id, (None, None))
            if not is_reclaim_allowed(released_by, released_at, live.offer.miner, now, self.release_allowance):
                return None  # it handed this job back just now: someone else first (aitbc.market.conduct)
            if not self.match_policy.allows(live, requirements, job.id, job.created_at_ms, ready, now):
                return None  # a better-ranked miner waiting right now gets it (see aitbc.coordinator.matching)
            served = find_served_model(live.offer, requirements)
            assert served is not None
            lifecycle = on_claim(job.lifecycle(), live.offer.miner, random_bytes(8).hex(), now, self._lease_ms)
            return lifecycle, served.digest, served.unit_price

        return models, now, count, scan, choose

    def _on_claimed(self, live: LiveMiner, job: JobRecord) -> JobAssignment:
        assert job.assigned_at_ms is not None and job.lease_id is not None and job.lease_expires_at_ms is not None
        assert job.served_digest is not None
        live.active.add(job.id)
        self.due_by(job.lease_expires_at_ms)
        self.metrics.assignment_latency.observe((job.assigned_at_ms - job.created_at_ms) / 1000)
        self.events.publish(job.id, "status", job_view(job))
        served = next(m for m in live.offer.models if m.name == job.model and m.digest == job.served_digest)
        sealed = job.sealed
        return JobAssignment(
            job=AssignedJob(
                job_id=job.id,
                type=job.type,
                model=job.model,
                model_digest=job.served_digest,
                input=job.input if isinstance(job.input, JobInput) else None,
                sealed=sealed,
                input_hash=job.input_hash,
                client=job.client,
                max_price=job.max_price,
                unit_price=served.unit_price,
                attempt=job.attempts,
                chain_id=self.settings.chain_id,
                coordinator=self.coordinator,
                assigned_at_ms=job.assigned_at_ms,
                escrow_amount=job.escrow_amount,
                zk_proof_required=job.constraints.zk_proof_required,
            ),
            lease=Lease(
                lease_id=job.lease_id,
                expires_at_ms=job.lease_expires_at_ms,
                lease_seconds=self.settings.lease_seconds,
            ),
        )

    # -- releases (aitbc.market.conduct) ---------------------------------------------------
    def on_released(self, miner: str, job_id: str, now: int) -> int:
        """The miner handed ``job_id`` back: keep it from that miner for the cooldown; returns how many
        jobs the miner released within the window, this one included."""
        self._released[job_id] = (miner, now)
        recent = [*compute_recent_releases(self._releases.get(miner, []), now, self.release_allowance), now]
        self._releases[miner] = recent
        return len(recent)

    def prune_releases(self, now: int) -> None:
        cooldown, window = self.release_allowance.cooldown_ms, self.release_allowance.window_ms
        for job_id in [j for j, (_, at) in self._released.items() if now - at >= cooldown]:
            del self._released[job_id]
        for miner in [m for m, times in self._releases.items() if not times or now - times[-1] >= window]:
            del self._releases[miner]

    def release_active(self, miner: str | None, job_id: str) -> None:
        """The job's lease ended (completed, failed, requeued, cancelled): the miner has that slot back."""
        self._leases.pop(job_id, None)
        if miner is not None and miner in self.miners:
            self.miners[miner].active.discard(job_id)

    # -- leases ------------------------------------------------------------------------
    async def heartbeat(self, miner: str, leases: dict[str, str]) -> dict[str, Any]:
        """Mark the miner alive and extend the leases of the jobs it says it is still running."""
        live = await self.live_async(miner)
        if not is_heartbeat_within_slots(len(leases), live.max_concurrency):
            raise InvalidInput(
                f"a heartbeat carries at most {live.max_concurrency} leases (the miner's max_concurrency), "
                f"not {len(leases)}"
            )
        self.match_policy.on_heartbeat(miner, len(live.active))
        extended: dict[str, int] = {}
        lost: list[str] = []
        for job_id, lease_id in leases.items():
            try:
                extended[job_id] = await self.extend_lease(miner, job_id, lease_id)
            except (JobRuleViolation, NotFound):
                lost.append(job_id)
        self.metrics.miners_online.set(len(self.live_miners()))
        return {"extended": extended, "lost": lost}

    async def extend_lease(self, miner: str, job_id: str, lease_id: str) -> int:
        """Extend the lease of a job the miner is running; returns the lease's end as stored.

        Progress reports come ~10 times a second per job. A running job's lease is written to the
        database only when less than ``LEASE_REWRITE_BELOW`` of it is left (at most every 1.5 s with the
        default 15 s lease); reports in between are checked against what this process last wrote
        (``LeaseMark``), which every transition that ends the lease drops (``release_active``).
        So the stored lease never falls below 90 % of a full lease while reports flow.
        """
        now = now_ms()
        mark = self._leases.get(job_id)
        if (
            mark is not None
            and mark.miner == miner
            and mark.lease_id == lease_id
            and mark.expires_at_ms - now >= self._lease_ms * LEASE_REWRITE_BELOW
        ):
            return mark.expires_at_ms
        # Read and conditional update in one trip to the writer thread.
        job, progressed = await self.db.write(self._extend_lease_sync, miner, job_id, lease_id, now)
        assert progressed.lease_expires_at_ms is not None
        live = self.miners.get(miner)
        if live is not None and self.broadcast is not None:
            live.active.add(job_id)  # it may have been claimed through another replica: it runs (its lease says so)
        if live is not None and job_id in live.active:  # not ended meanwhile (see ``release_active``)
            self._leases[job_id] = LeaseMark(miner, lease_id, progressed.lease_expires_at_ms)
        if job.state != progressed.state.value:
            self.events.publish(job_id, "status", job_view(job.with_lifecycle(progressed)))
        return progressed.lease_expires_at_ms

    def _extend_lease_sync(self, miner: str, job_id: str, lease_id: str, now: int) -> tuple[JobRecord, JobLifecycle]:
        job = self.repo.get_job(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        before = job.lifecycle()
        progressed = on_progress(before, miner, lease_id, now, self._lease_ms)
        if not self.repo.transition_job(job_id, (before.state.value,), lease_id, progressed):
            raise JobRuleViolation("lease is no longer valid", reason="lease_lost")
        return job, progressed
