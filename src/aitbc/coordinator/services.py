"""``CoordinatorService``: a job's life in the coordinator, from submission to receipt.

It composes the coordinator's parts and applies the pure rules between them:

- ``DbWriter`` (``db/writer.py``): database calls off the event loop, group commit of new jobs;
- ``MinerDispatcher`` (``dispatch.py``): live miners, long-polling claimers, claims and leases;
- ``aitbc.market.lifecycle``: every job transition; ``aitbc.market.acceptance``: whether a result may
  complete a job; ``aitbc.market.matching`` / ``coordinator.matching``: who may take a job;
- ``PaymentWorker`` (``payments.py``): escrow settlement and refunds on chain, when a node is configured;
  ``DepositBook`` (``deposits.py``) and ``DepositSettler`` (``settlement.py``): jobs paid from an API
  key's deposit, reserved at submission and settled in batches.

Jobs are ``JobRecord``s throughout (``db/records.py``); clients see ``views.job_view`` of them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import msgspec

from aitbc.coordinator.audits import stored_constraints
from aitbc.coordinator.auth import ApiKey, ApiKeyAuthenticator, MinerRequestVerifier
from aitbc.coordinator.completion import Completion, DeliveredResult, judge_results
from aitbc.coordinator.config import CoordinatorSettings
from aitbc.coordinator.db.records import JobRecord
from aitbc.coordinator.db.repo import CoordinatorRepo
from aitbc.coordinator.db.writer import DbWriter, open_intake_log
from aitbc.coordinator.deposits import DepositBook, DepositProblem, Reservation
from aitbc.coordinator.dispatch import MinerDispatcher, now_ms
from aitbc.coordinator.events import JobEventBroker
from aitbc.coordinator.intake import PaymentIntake, wire_deposits
from aitbc.coordinator.live import LiveMiner
from aitbc.coordinator.matching import MatchPolicy, create_match_policy, measured_speed
from aitbc.coordinator.metering import Metering
from aitbc.coordinator.metrics import CoordinatorMetrics
from aitbc.coordinator.payments import ChainLink, PaymentWorker
from aitbc.coordinator.views import job_view, payment_view
from aitbc.market.conduct import is_release_over_allowance
from aitbc.market.lifecycle import (
    JobLifecycle,
    JobRuleViolation,
    JobState,
    PaymentState,
    is_lease_expired,
    on_cancel,
    on_escrow_refunded,
    on_failure,
    on_lease_expired,
    on_release,
    on_ttl_expired,
)
from aitbc.market.scoring import Outcome
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import AitbcError, InvalidInput, NotFound, Unauthorized
from aitbc.protocol.job import check_job_input, compute_input_hash
from aitbc.protocol.job_messages import JobAssignment, JobRequest, MinerRegistration, SealedJobInput
from aitbc.runtime.entropy import random_bytes

log = logging.getLogger("aitbc.coordinator")
T = TypeVar("T")

_PAYMENT_WRITES: dict[str, Callable[[tuple[Any, ...], Any], list[str]]] = {
    "set_payment_states": lambda args, matched: list(matched),
    "apply_chain_events": lambda args, _: [job_id for job_id, _changes in args[2]],
    "mark_batching": lambda args, _: list(args[0]),
    "release_unpaid": lambda args, released: list(released),
}
"""Repository calls that change jobs' payment states → the ids of the jobs they changed (``_payment_write``)."""

SWEEP_RECHECK_MS = 5_000
FINAL_STATES = (JobState.FAILED, JobState.EXPIRED, JobState.CANCELLED)
JUDGE_CHUNK = 4
"""Results of a batch judged between two looks at other requests (~0.15 ms a result). The signature checks
hold the GIL (``aitbc.protocol.crypto``), so a worker thread would run them no faster and would only make the
event loop wait to take the GIL back: judged on the loop in small chunks, a submission waits for one chunk."""


class CoordinatorService:
    def __init__(
        self,
        settings: CoordinatorSettings,
        repo: CoordinatorRepo,
        key: KeyPair,
        metrics: CoordinatorMetrics,
        chain: ChainLink | None = None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.key = key
        self.metrics = metrics
        self.api_keys = ApiKeyAuthenticator(repo)
        self.miner_auth = MinerRequestVerifier(settings.chain_id, now_ms())
        self.events = JobEventBroker()
        self.metering = Metering()
        self.db = DbWriter(repo, intake_log=open_intake_log(settings, repo), thread_nice=settings.background_nice)
        self._next_sweep_ms = 0  # the sweeper reads the database from then on (see ``sweep``)
        self._creation_order = itertools.count()  # JobRecord.created_seq
        self.match_policy: MatchPolicy = create_match_policy(settings)
        self.dispatcher = MinerDispatcher(
            settings, self.db, key.address, metrics, self.events, self.match_policy, self._due_by
        )
        self.chain = chain
        """The node jobs are paid through; None: jobs run unpaid."""
        self.payments = (
            None
            if chain is None
            else PaymentWorker(
                chain,
                repo,
                key,
                metrics,
                self.db.read,
                self._payment_write,
                self._on_escrows_refunded,
                retry_seconds=settings.payment_retry_seconds,
            )
        )
        self.deposits: DepositBook | None = None
        """Jobs paid from API keys' deposits (``aitbc.coordinator.deposits``); only with a node."""
        self.intake: PaymentIntake | None = None
        """How a submitted job is paid (deposit or escrow); None: jobs run unpaid."""
        if chain is not None and self.payments is not None:
            self.deposits, self.intake = wire_deposits(
                settings, repo, key, metrics, chain, self.db, self.payments, self._payment_write, self.served_models
            )

    async def account_view(self, api_key: ApiKey) -> dict[str, Any]:
        """The key's deposit as this coordinator counts it (``GET /api/v1/account``)."""
        if self.intake is None:
            raise DepositProblem("this coordinator runs jobs unpaid: no deposits", reason="no_deposit")
        return await self.intake.account_view(api_key)

    def load(self) -> None:
        self.db.recover()
        self.dispatcher.load()
        if self.deposits is not None:
            self.deposits.load()

    def close(self) -> None:
        self.db.close()
        if self.chain is not None:
            self.chain.close()

    def stop_claims(self) -> None:
        self.dispatcher.stop_claims()

    def live_miners(self, at_ms: int | None = None) -> list[LiveMiner]:
        return self.dispatcher.live_miners(at_ms)

    def quote(self, job_type: str, model: str, model_digest: str | None) -> dict[str, Any]:
        return self.dispatcher.quote(job_type, model, model_digest)

    def served_models(self) -> list[dict[str, Any]]:
        return self.dispatcher.served_models()

    # -- clients -------------------------------------------------------------------
    def authenticate_client(self, token: str | None) -> ApiKey:
        return self.api_keys.authenticate(token, time.monotonic())

    async def authenticate_client_async(self, token: str | None) -> ApiKey:
        """``authenticate_client`` for the event loop: a key not cached yet is read on the reader pool."""
        key_id = self.api_keys.uncached_key_id(token)
        if key_id is not None and await self.db.read(self.api_keys.lookup, key_id) is None:
            raise Unauthorized("invalid API key")
        return self.api_keys.authenticate(token, time.monotonic())

    async def submit_job(self, api_key: ApiKey, request: JobRequest) -> dict[str, Any]:
        job_input = request.to_job_input()
        sealed = request.sealed
        constraints = stored_constraints(request.constraints, job_input, sealed is not None, self.chain is not None)
        if sealed is not None:
            # A private job: the coordinator sees only ciphertext, the plaintext's hash, and the miner it is for.
            if job_input.type != "inference" or job_input.prompt or job_input.messages or job_input.texts:
                raise InvalidInput("a sealed job is an inference job with its whole input in `sealed`")
            constraints = msgspec.structs.replace(constraints, miner=sealed.miner)
        else:
            check_job_input(job_input)
        self.dispatcher.check_served(job_input.type, job_input.model, request.model_digest)
        ttl = min(request.ttl_seconds or self.settings.default_ttl_seconds, self.settings.max_ttl_seconds)
        created = now_ms()
        job = JobRecord(
            id=request.job_id or "job_" + random_bytes(10).hex(),
            api_key_id=api_key.id,
            client=api_key.client,
            type=request.type,
            model=job_input.model,
            model_digest=request.model_digest,
            input=job_input
            if sealed is None
            else SealedJobInput(sealed=sealed.ciphertext, reply_to=sealed.reply_to, params=job_input.params),
            input_hash=compute_input_hash(job_input) if sealed is None else sealed.input_hash,
            max_price=request.max_price,
            constraints=constraints,
            state=JobState.QUEUED.value,
            attempts=0,
            max_attempts=self.settings.max_attempts,
            expires_at_ms=created + ttl * 1000,
            created_at_ms=created,
            created_seq=next(self._creation_order),
        )
        reservation: Reservation | None = None
        if self.intake is not None:
            job, reservation = await self.intake.pay(
                api_key, job, ttl, job_input, request.job_id, request.client_signature
            )
        elif request.job_id is not None or request.client_signature is not None:
            raise InvalidInput("this coordinator runs jobs unpaid (no node): leave job_id and client_signature out")
        try:
            self.dispatcher.check_affordable(job)
            row = await self.db.accept_job(job, id_drawn_here=request.job_id is None)
        except BaseException:
            if reservation is not None and self.deposits is not None:
                self.deposits.cancel_reservation(reservation.job_id)
            raise
        self._due_by(job.expires_at_ms)
        self.metrics.jobs_submitted.inc()
        view = job_view(job)
        self.events.publish(job.id, "status", view, owner=api_key.id)
        model = job.model
        row.add_done_callback(lambda _: self.dispatcher.announce_work(model))  # claimers read the row
        return view

    async def get_job(self, api_key: ApiKey | None, job_id: str) -> JobRecord:
        job = await self.db.get_job(job_id)
        if job is None or (api_key is not None and job.api_key_id != api_key.id):
            raise NotFound(f"no job {job_id}")
        return job

    async def list_jobs(
        self, api_key: ApiKey, state: str | None, model: str | None, limit: int, before: tuple[int, int, str] | None
    ) -> list[JobRecord]:
        await self.db.all_stored()
        return await self.db.read(self.repo.list_jobs, api_key.id, state, model, limit, before)

    async def cancel_job(self, api_key: ApiKey, job_id: str) -> dict[str, Any]:
        job = await self.get_job(api_key, job_id)
        before = job.lifecycle()
        cancelled = on_cancel(before, now_ms())
        if not await self.db.write(self.repo.transition_job, job_id, (before.state.value,), before.lease_id, cancelled):
            raise JobRuleViolation("job changed state while cancelling; retry", reason="conflict")
        self.dispatcher.release_active(before.miner, job_id)
        job = job.with_lifecycle(cancelled)
        view = job_view(job)
        self.events.publish(job_id, "status", view, final=True)
        self.metrics.jobs_finished.labels("cancelled").inc()
        self._wake_payments(job)
        return view

    async def get_receipt(self, api_key: ApiKey | None, job_id: str, job: JobRecord | None = None) -> dict[str, Any]:
        """The job's receipt; ``job``: the job as the caller already read it for ``api_key`` (saves a read)."""
        if job is None:
            job = await self.get_job(api_key, job_id)
        receipt = await self.db.read(self.repo.get_receipt, job_id)
        if receipt is None:
            raise NotFound(f"job {job_id} has no receipt (state: {job.state})")
        found = {"job_id": job_id, "receipt_hash": receipt.receipt_hash, "receipt": receipt.receipt}
        if receipt.zk_proof is not None:  # so a saved receipt file carries its proof (docs/zk.md)
            found["zk_proof"] = receipt.zk_proof
        return found

    # -- miners --------------------------------------------------------------------
    def authenticate_miner(self, headers: dict[str, str | None], method: str, path: str, body: bytes) -> str:
        return self.miner_auth.verify(
            headers.get("miner"),
            headers.get("timestamp"),
            headers.get("nonce"),
            headers.get("signature"),
            method,
            path,
            body,
            now_ms(),
        )

    async def register_miner(self, miner: str, registration: MinerRegistration) -> dict[str, Any]:
        await self.dispatcher.register(miner, registration)
        return {
            "miner": miner,
            "coordinator": self.key.address,
            "chain_id": self.settings.chain_id,
            "lease_seconds": self.settings.lease_seconds,
            "heartbeat_seconds": self.settings.miner_timeout_seconds / 3,
        }

    async def heartbeat(self, miner: str, leases: dict[str, str]) -> dict[str, Any]:
        return await self.dispatcher.heartbeat(miner, leases)

    async def claim(
        self, miner: str, wait_seconds: float, gone: asyncio.Future[None] | None = None
    ) -> JobAssignment | None:
        claimed = await self.claim_many(miner, wait_seconds, 1, gone)
        return claimed[0] if claimed else None

    async def claim_many(
        self, miner: str, wait_seconds: float, max_jobs: int, gone: asyncio.Future[None] | None = None
    ) -> list[JobAssignment]:
        """A miner's long poll for work. ``gone``: done once its connection closed (``aitbc.runtime.disconnect``):
        the poll ends, and jobs taken by then go back to the queue at once instead of waiting out a lease
        that no one holds (a miner killed mid-poll used to strand a whole claimed batch for ``lease_seconds``)."""
        claimed = await self.dispatcher.claim_many(miner, wait_seconds, max_jobs, gone)
        if claimed and gone is not None and gone.done():
            await self._hand_back_unsent(miner, claimed)
            return []
        return claimed

    async def _hand_back_unsent(self, miner: str, claimed: list[JobAssignment]) -> None:
        """Requeue jobs whose claim could not be answered: the attempt does not count, nor against the miner."""
        for assignment in claimed:
            job_id, lease_id = assignment.job.job_id, assignment.lease.lease_id
            try:
                await self._release(miner, job_id, lease_id)
            except AitbcError as exc:  # cancelled or expired meanwhile: nothing to hand back
                log.info("unsent claim not handed back", extra={"job_id": job_id, "reason": str(exc)})
        log.warning(
            "claimed jobs handed back: the miner's connection closed", extra={"miner": miner, "jobs": len(claimed)}
        )

    async def progress(
        self, miner: str, job_id: str, lease_id: str, tokens: list[str], first_index: int
    ) -> dict[str, Any]:
        await self.dispatcher.live_async(miner)
        expires = await self.dispatcher.extend_lease(miner, job_id, lease_id)
        for offset, text in enumerate(tokens):
            self.events.publish(job_id, "token", {"index": first_index + offset, "text": text})
        return {"lease_expires_at_ms": expires}

    async def submit_results(
        self, miner: str, delivered: Sequence[DeliveredResult]
    ) -> list[dict[str, Any] | AitbcError]:
        """Judge each result on its own, then store the accepted ones in one transaction (one read, one
        commit for a miner's batch); per result, its receipt or the error refusing it."""
        self.metrics.result_requests.inc()
        await self.dispatcher.live_async(miner)
        found = await self.db.read(self.repo.get_jobs, [d.job_id for d in delivered])
        now = now_ms()
        bounds = {d.job_id: await self.metering.bounds_for(job) for d in delivered if (job := found.get(d.job_id))}
        judge = partial(judge_results, self.settings.chain_id, self.key, found, bounds, miner)
        judged: list[Completion | AitbcError] = []
        for start in range(0, len(delivered), JUDGE_CHUNK):
            if start:
                await asyncio.sleep(0)  # let the requests waiting meanwhile in
            judged += judge(delivered[start : start + JUDGE_CHUNK], now)
        answers: list[dict[str, Any] | AitbcError] = []
        ready: list[Completion] = []
        for outcome in judged:
            if isinstance(outcome, AitbcError):
                answers.append(outcome)
            else:
                ready.append(outcome)
                answers.append({})
        won = (
            await self.db.write(self.repo.complete_jobs, [(c.job, c.lease_id, c.stored) for c in ready])
            if ready
            else []
        )
        outcomes = iter(zip(ready, won, strict=True))
        for i, answer in enumerate(answers):
            if isinstance(answer, AitbcError):
                continue
            done, ok = next(outcomes)
            if not ok:
                answers[i] = JobRuleViolation("lease is no longer valid (the job was reassigned)", reason="lease_lost")
                continue
            self._on_completed(miner, done, now)
            answers[i] = done.answer()
        return answers

    def _on_completed(self, miner: str, done: Completion, now: int) -> None:
        job, receipt = done.job, done.receipt
        self.dispatcher.release_active(miner, job.id)
        self.metrics.jobs_finished.labels("completed").inc()
        self.metrics.tokens_served.inc(receipt.units.completion_tokens)
        speed = measured_speed(job.assigned_at_ms, job.started_at_ms, receipt.units.completion_tokens, now)
        self.match_policy.on_outcome(miner, job.id, job.attempts, Outcome.COMPLETED, *speed)
        if job.assigned_at_ms is not None:
            self.metrics.job_duration.observe((now - job.assigned_at_ms) / 1000)
        if receipt.units.compute_ms > 0 and receipt.units.completion_tokens:
            self.metrics.tokens_per_second.observe(receipt.units.completion_tokens * 1000 / receipt.units.compute_ms)
        self._wake_payments(job)
        self.events.publish(
            job.id, "receipt", {"receipt_hash": done.stored.receipt_hash, "receipt": done.stored.receipt}
        )
        self.events.publish(job.id, "status", job_view(job), final=True)

    async def fail(self, miner: str, job_id: str, lease_id: str, error: str, retryable: bool) -> dict[str, Any]:
        await self.dispatcher.live_async(miner)
        job = await self.get_job(None, job_id)
        before = job.lifecycle()
        failed = on_failure(before, miner, lease_id, now_ms(), error[:2000], retryable)
        job = await self._apply_transition(job, before, failed, expect_lease=lease_id)
        self.match_policy.on_outcome(miner, job_id, before.attempts, Outcome.FAILED, detail=error[:500])
        return job_view(job)

    async def release(self, miner: str, job_id: str, lease_id: str) -> dict[str, Any]:
        await self.dispatcher.live_async(miner)
        before, job = await self._release(miner, job_id, lease_id)
        view = job_view(job)
        now = now_ms()
        recent = self.dispatcher.on_released(miner, job_id, now)
        if is_release_over_allowance(recent, self.dispatcher.release_allowance):
            detail = f"released {recent} jobs within {self.dispatcher.release_allowance.window_ms // 1000} s"
            self.match_policy.on_outcome(miner, job_id, before.attempts, Outcome.FAILED, detail=detail)
            log.warning("miner releases too often", extra={"miner": miner, "job_id": job_id, "releases": recent})
        return view

    async def _release(self, miner: str, job_id: str, lease_id: str) -> tuple[JobLifecycle, JobRecord]:
        """The miner's job back to the queue, its attempt not counted (``on_release``): (before, after)."""
        job = await self.get_job(None, job_id)
        before = job.lifecycle()
        released = on_release(before, miner, lease_id, now_ms())
        return before, await self._apply_transition(job, before, released, expect_lease=lease_id)

    async def _apply_transition(
        self, job: JobRecord, before: JobLifecycle, after: JobLifecycle, expect_lease: str | None
    ) -> JobRecord:
        if not await self.db.write(self.repo.transition_job, job.id, (before.state.value,), expect_lease, after):
            raise JobRuleViolation("job changed state concurrently", reason="conflict")
        self.dispatcher.release_active(before.miner, job.id)
        job = job.with_lifecycle(after)
        final = after.state in FINAL_STATES
        self.events.publish(job.id, "status", job_view(job), final=final)
        if final:
            self.metrics.jobs_finished.labels(after.state.value).inc()
            self._wake_payments(job)
        if after.state == JobState.QUEUED:
            self.metrics.jobs_requeued.inc()
            self._due_by(job.expires_at_ms)
            self.dispatcher.announce_work()
        return job

    # -- payments -----------------------------------------------------------------
    async def _payment_write(self, fn: Callable[..., T], *args: Any) -> T:
        """The payment workers' database writes; each job whose payment changed gets a ``payment`` event.

        The payment state lives in the job's row and only the repository calls in ``_PAYMENT_WRITES`` change
        it (escrow or deposit: batching, settled, refunded, released, refused), so the events follow every
        change without the workers knowing. (A batch that could not be sent puts its jobs back to
        ``reserved`` by tx hash, ``unmark_batching``: that step is not announced; the next batch is.)"""
        result = await self.db.write(fn, *args)
        pick = _PAYMENT_WRITES.get(getattr(fn, "__name__", ""))
        changed = [] if pick is None else pick(args, result)
        found = await self.db.read(self.repo.get_payments, changed) if changed else {}  # one read for a batch
        for i, job_id in enumerate(changed):
            if i % 128 == 127:
                await asyncio.sleep(0)  # a batch's hundreds of events must not hold submissions up
            job = found.get(job_id)
            view = None if job is None else payment_view(job)
            if job is not None and view is not None:
                self.events.publish(job_id, "payment", view, owner=job.api_key_id)
        return result

    def _wake_payments(self, job: JobRecord) -> None:
        if self.payments is not None and job.payment_state is not None:
            if self.deposits is not None and job.payment_state == PaymentState.RESERVED:
                # The books change now; the batch goes with the settler's next round (at most one per block),
                # so a finished deposit job does not wake the payment worker (that was a round per job).
                self.deposits.on_finished(job.id, completed=job.state == JobState.COMPLETED)
                return
            self.payments.wake()

    async def _on_escrows_refunded(self, job_ids: list[str]) -> None:
        """The chain refunded these jobs' escrows (their deadline passed): stop any that still run."""
        for job_id in job_ids:
            job = await self.db.get_job(job_id)
            if job is None:
                continue
            before = job.lifecycle()
            if before.state in (JobState.COMPLETED, *FINAL_STATES):
                continue
            try:
                after = on_escrow_refunded(before, now_ms())
                await self._apply_transition(job, before, after, expect_lease=before.lease_id)
                log.warning("escrow refunded before the job finished", extra={"job_id": job_id})
            except JobRuleViolation:
                continue

    # -- housekeeping --------------------------------------------------------------
    def _due_by(self, at_ms: int | None) -> None:
        """Something may expire at ``at_ms`` (a new job's ttl, a new lease, a requeued job): sweep by then."""
        if at_ms is not None:
            self._next_sweep_ms = min(self._next_sweep_ms, at_ms)

    async def sweep(self) -> None:
        """Requeue or fail jobs whose lease ran out; expire jobs nobody took in time.

        It is called four times a second but reads the database only when something can be due: each read
        also returns the earliest lease end or queued job's expiry ahead, and every change that brings
        one nearer (a submission, a claim, a requeue) lowers that mark through ``_due_by``; it reads at
        least every ``SWEEP_RECHECK_MS`` anyway. The per-state gauges are counted when ``/metrics`` is
        scraped (``refresh_gauges``), not here.
        """
        now = now_ms()
        self.events.prune()
        self.dispatcher.prune_releases(now)
        self.metrics.miners_online.set(len(self.live_miners(now)))
        if self.match_policy.is_due(now):
            self.dispatcher.notify_work()  # a job held for a better-ranked miner is now open to any claimer
        if now < self._next_sweep_ms:
            return
        # Set before reading, so that marks lowered while the read runs are kept.
        self._next_sweep_ms = now + SWEEP_RECHECK_MS
        expired_leases, past_ttl, next_end = await self.db.read(self.repo.sweep_candidates, now)
        self._due_by(next_end)
        for job in expired_leases:
            before = job.lifecycle()
            if not is_lease_expired(before, now):
                continue
            try:
                await self._apply_transition(job, before, on_lease_expired(before, now), expect_lease=before.lease_id)
                self.match_policy.on_outcome(before.miner or "", job.id, before.attempts, Outcome.TIMED_OUT)
                log.warning("lease expired", extra={"job_id": job.id, "miner": before.miner, "state": job.state})
            except JobRuleViolation:
                continue
        for job in past_ttl:
            before = job.lifecycle()
            try:
                await self._apply_transition(job, before, on_ttl_expired(before, now), expect_lease=None)
            except JobRuleViolation:
                continue

    async def refresh_gauges(self) -> None:
        """Jobs by state and queue depth, counted now (called when ``/metrics`` is scraped)."""
        counts = await self.db.read(self.repo.count_by_state)
        for state in JobState:
            self.metrics.jobs_by_state.labels(state.value).set(counts.get(state.value, 0))
        self.metrics.queue_depth.set(counts.get(JobState.QUEUED.value, 0))
        self.metrics.miners_online.set(len(self.live_miners()))
