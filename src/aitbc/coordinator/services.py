"""The coordinator's shell around the pure lifecycle and matching rules.

Database calls run off the event loop: writes on one thread (SQLite has one
writer anyway, and it keeps commits ordered), reads on a small pool. A miner
waiting for work long-polls on an in-process event that every new or
requeued job fires, so a claim follows a submission within milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import msgspec

from aitbc.coordinator.auth import ApiKey, ApiKeyAuthenticator, AuthError, MinerRequestVerifier
from aitbc.coordinator.config import CoordinatorSettings
from aitbc.coordinator.db.repo import CoordinatorRepo, Row
from aitbc.coordinator.events import JobEventBroker
from aitbc.coordinator.matching import MatchPolicy, create_match_policy, measured_speed
from aitbc.coordinator.metering import Metering
from aitbc.coordinator.metrics import CoordinatorMetrics
from aitbc.coordinator.payments import ChainLink, EscrowProblem, PaymentWorker, check_escrow, payment_view
from aitbc.market.conduct import (
    ReleaseAllowance,
    compute_recent_releases,
    is_heartbeat_within_slots,
    is_reclaim_allowed,
    is_release_over_allowance,
)
from aitbc.market.lifecycle import (
    JobLifecycle,
    JobRuleViolation,
    JobState,
    PaymentState,
    is_lease_expired,
    on_cancel,
    on_claim,
    on_escrow_refunded,
    on_failure,
    on_lease_expired,
    on_progress,
    on_release,
    on_result,
    on_ttl_expired,
)
from aitbc.market.matching import JobRequirements, MinerOffer, ServedModel, find_served_model, get_ineligibility
from aitbc.market.metering import verify_receipt_metering
from aitbc.market.scoring import Outcome
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import AitbcError, NotFound
from aitbc.protocol.job import JobInput, JobOutput, check_job_input, compute_input_hash, compute_model_kind
from aitbc.protocol.job_messages import (
    AssignedJob,
    JobAssignment,
    JobRequest,
    Lease,
    MinerRegistration,
    SealedInput,
    SealedJobInput,
)
from aitbc.protocol.receipt import (
    Receipt,
    ReceiptExpectation,
    compute_receipt_hash,
    countersign_receipt,
    verify_receipt,
)
from aitbc.protocol.zk import ZkReceiptProof, compute_proof_escrow, get_receipt_proof_problem
from aitbc.protocol.zkml import (
    ZK_INFERENCE,
    ZKML_OUTPUTS,
    ZKML_SCALE,
    compute_job_output_hash,
    get_zk_inference_problem,
    parse_zk_inference_proofs,
)

log = logging.getLogger("aitbc.coordinator")

P = ParamSpec("P")
T = TypeVar("T")

PAYMENT_COLUMNS = (
    "escrow_amount",
    "escrow_deadline",
    "payment_state",
    "payment_tx",
    "payment_height",
    "payment_updated_ms",
    "payment_error",
    "paid_to_miner",
    "protocol_fee",
    "refunded",
)
CLAIM_SCAN_LIMIT = 50
JOB_INSERT_BATCH = 256
LEASE_REWRITE_BELOW = 0.9
SWEEP_RECHECK_MS = 5_000


class UnknownModel(AitbcError):
    reason = "unknown_model"


class InputTooLarge(AitbcError):
    reason = "input_too_large"


class InvalidInput(AitbcError):
    """A request that parses but breaks a job's shape rules (HTTP 422, like any other invalid field)."""

    reason = "invalid_input"


class UnknownMiner(AitbcError):
    reason = "unknown_miner"


class BadResult(AitbcError):
    reason = "bad_result"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class LiveMiner:
    offer: MinerOffer
    registration: dict[str, Any]
    max_concurrency: int
    last_seen_ms: int
    active: set[str] = field(default_factory=set)
    idle_generation: int = -1
    """The work generation at which a claim for this miner last found nothing (see ``claim``)."""


@dataclass(slots=True, frozen=True)
class _LeaseMark:
    miner: str
    lease_id: str
    expires_at_ms: int


@dataclass(slots=True, eq=False)
class _Waiter:
    live: LiveMiner
    future: asyncio.Future[bool]
    """Resolves True when woken for one new job, False when woken with everyone."""


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the request was cancelled meanwhile
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def lifecycle_from_row(row: Row) -> JobLifecycle:
    return JobLifecycle(
        state=JobState(row["state"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        created_at_ms=row["created_at_ms"],
        expires_at_ms=row["expires_at_ms"],
        miner=row["miner"],
        lease_id=row["lease_id"],
        lease_expires_at_ms=row["lease_expires_at_ms"],
        assigned_at_ms=row["assigned_at_ms"],
        started_at_ms=row["started_at_ms"],
        finished_at_ms=row["finished_at_ms"],
        error=row["error"],
    )


def lifecycle_changes(job: JobLifecycle) -> Row:
    return {
        "state": job.state.value,
        "attempts": job.attempts,
        "miner": job.miner,
        "lease_id": job.lease_id,
        "lease_expires_at_ms": job.lease_expires_at_ms,
        "assigned_at_ms": job.assigned_at_ms,
        "started_at_ms": job.started_at_ms,
        "finished_at_ms": job.finished_at_ms,
        "error": job.error,
    }


def sealed_row_input(job_input: JobInput, sealed: SealedInput) -> dict[str, Any]:
    """What the coordinator keeps of a private job's input: ciphertext, reply key, and the params."""
    kept = SealedJobInput(sealed=sealed.ciphertext, reply_to=sealed.reply_to, params=job_input.params)
    result: dict[str, Any] = msgspec.to_builtins(kept)
    return result


def is_sealed_row(row: Row) -> bool:
    return "sealed" in (row["input"] or {})


def requirements_from_row(row: Row) -> JobRequirements:
    job_input = row["input"]
    chars = (
        len(job_input.get("prompt") or "")
        + sum(len(m["content"]) for m in job_input.get("messages") or [])
        + sum(len(t) for t in job_input.get("texts") or [])
    )
    constraints = row["constraints"] or {}
    return JobRequirements(
        job_type=row["type"],
        model=row["model"],
        input_chars=chars,
        max_tokens=int(job_input.get("params", {}).get("max_tokens", 128)),
        model_digest=row["model_digest"],
        max_price=row["max_price"],
        min_vram_gb=constraints.get("min_vram_gb"),
        gpu=constraints.get("gpu"),
        region=constraints.get("region"),
    )


def job_view(row: Row) -> dict[str, Any]:
    """What clients see of a job (never the miner's lease id)."""
    return {
        "job_id": row["id"],
        "type": row["type"],
        "model": row["model"],
        "state": row["state"],
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"],
        "client": row["client"],
        "miner": row["miner"],
        "model_digest": row["served_digest"] or row["model_digest"],
        "input_hash": row["input_hash"],
        "max_price": row["max_price"],
        "constraints": row["constraints"],
        "created_at_ms": row["created_at_ms"],
        "assigned_at_ms": row["assigned_at_ms"],
        "started_at_ms": row["started_at_ms"],
        "finished_at_ms": row["finished_at_ms"],
        "expires_at_ms": row["expires_at_ms"],
        "error": row["error"],
        "payment": payment_view(row),
    }


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def registration_dict(body: MinerRegistration) -> dict[str, Any]:
    """The registration as stored and forwarded to the pool hub (unset optional fields left out)."""
    result: dict[str, Any] = _drop_none(msgspec.to_builtins(body))
    return result


def offer_from_registration(address: str, registration: dict[str, Any]) -> MinerOffer:
    hardware = registration.get("hardware") or {}
    return MinerOffer(
        miner=address,
        models=tuple(
            ServedModel(m["name"], m["digest"], m["kind"], int(m["unit_price"])) for m in registration.get("models", [])
        ),
        region=registration.get("region") or "",
        gpu_name=hardware.get("gpu_name"),
        vram_gb=float(hardware.get("vram_gb") or 0.0),
    )


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
        self.miners: dict[str, LiveMiner] = {}
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-write")
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="db-read")
        self._claim_lock = asyncio.Lock()
        self._pending_jobs: list[tuple[Row, asyncio.Future[None]]] = []
        self._job_flusher: asyncio.Task[None] | None = None
        self._waiters: list[_Waiter] = []  # claimers long-polling for work, longest-waiting first
        self._work_generation = 0
        self._next_sweep_ms = 0  # the sweeper reads the database from then on (see ``sweep``)
        self._leases: dict[str, _LeaseMark] = {}  # job id → the running job's lease as last written
        self.release_allowance = ReleaseAllowance(
            free_releases=settings.free_releases,
            window_ms=int(settings.release_window_seconds * 1000),
            cooldown_ms=int(settings.release_cooldown_seconds * 1000),
        )
        self._releases: dict[str, list[int]] = {}  # miner → its recent release times (aitbc.market.conduct)
        self._released: dict[str, tuple[str, int]] = {}  # job id → (miner that released it, when)
        self._lease_ms = int(settings.lease_seconds * 1000)
        self._stopping = False
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
                self._read,
                self._write,
                self._on_escrows_refunded,
                retry_seconds=settings.payment_retry_seconds,
            )
        )
        self.match_policy: MatchPolicy = create_match_policy(settings)

    # -- plumbing ----------------------------------------------------------------
    async def _write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, lambda: fn(*args, **kwargs))

    async def _read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, lambda: fn(*args, **kwargs))

    async def _insert_job(self, row: Row) -> None:
        """Insert a job durably: returns once its transaction committed (group commit).

        Submissions that arrive while a batch is being written wait for the next batch, so under
        load one transaction carries many jobs, and with no load a job goes alone at once.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_jobs.append((row, future))
        if self._job_flusher is None:
            self._job_flusher = asyncio.create_task(self._flush_jobs())
        await future

    async def _flush_jobs(self) -> None:
        try:
            while self._pending_jobs:
                batch = self._pending_jobs[:JOB_INSERT_BATCH]
                del self._pending_jobs[:JOB_INSERT_BATCH]
                try:
                    await self._write(self.repo.insert_jobs, [row for row, _ in batch])
                except Exception as exc:
                    if len(batch) == 1:
                        _settle(batch[0][1], exc)
                        continue
                    # One bad row must not fail its neighbours: retry them one by one.
                    for row, future in batch:
                        try:
                            await self._write(self.repo.insert_jobs, [row])
                        except Exception as row_exc:
                            _settle(future, row_exc)
                        else:
                            _settle(future, None)
                    continue
                for _, future in batch:
                    _settle(future, None)
        finally:
            self._job_flusher = None

    def _notify_work(self, model: str | None = None) -> None:
        """Wake long-polling claimers: for one new job of ``model``, the claimer that serves it and has room that
        the match policy ranks first (then the longest-waiting); otherwise (requeued jobs, new miners) all of them.

        Waking one claimer per new job instead of all keeps N waiting workers from racing N database
        round trips for every submission; a claimer woken for a job it then does not get wakes the rest.
        """
        self._work_generation += 1
        if model is not None:
            for i, waiter in self.match_policy.order_waiters(model, self._waiters):
                live = waiter.live
                if len(live.active) < live.max_concurrency and any(m.name == model for m in live.offer.models):
                    del self._waiters[i]
                    waiter.future.set_result(True)
                    return
            return
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.future.set_result(False)

    def load(self) -> None:
        """Know previously registered miners (offline until they call again)."""
        for row in self.repo.load_miners():
            registration = row["registration"]
            self.miners[row["address"]] = LiveMiner(
                offer_from_registration(row["address"], registration),
                registration,
                int(registration.get("max_concurrency", 1)),
                last_seen_ms=0,
            )

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        if self.chain is not None:
            self.chain.close()

    # -- clients -------------------------------------------------------------------
    def authenticate_client(self, token: str | None) -> ApiKey:
        return self.api_keys.authenticate(token, time.monotonic())

    async def authenticate_client_async(self, token: str | None) -> ApiKey:
        """``authenticate_client`` for the event loop: a key not cached yet is read on the reader pool."""
        key_id = self.api_keys.uncached_key_id(token)
        if key_id is not None and await self._read(self.api_keys.lookup, key_id) is None:
            raise AuthError("invalid API key")
        return self.api_keys.authenticate(token, time.monotonic())

    def live_miners(self, at_ms: int | None = None) -> list[LiveMiner]:
        cutoff = (at_ms or now_ms()) - int(self.settings.miner_timeout_seconds * 1000)
        return [m for m in self.miners.values() if m.last_seen_ms >= cutoff]

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
        models: dict[tuple[str, str, str], dict[str, Any]] = {}
        for miner in self.live_miners():
            for model in miner.offer.models:
                entry = models.setdefault(
                    (model.name, model.kind, model.digest),
                    {
                        "name": model.name,
                        "kind": model.kind,
                        "digest": model.digest,
                        "miners": 0,
                        "min_unit_price": model.unit_price,
                        "max_unit_price": model.unit_price,
                    },
                )
                entry["miners"] += 1
                entry["min_unit_price"] = min(entry["min_unit_price"], model.unit_price)
                entry["max_unit_price"] = max(entry["max_unit_price"], model.unit_price)
        return sorted(models.values(), key=lambda m: (m["kind"], m["name"], m["digest"]))

    async def submit_job(self, api_key: ApiKey, request: JobRequest) -> dict[str, Any]:
        job_input = request.to_job_input()
        model_digest, max_price, job_id = request.model_digest, request.max_price, request.job_id
        sealed = request.sealed
        constraints = {k: v for k, v in msgspec.to_builtins(request.constraints).items() if v is not None}
        if sealed is not None:
            # A private job: the coordinator sees only ciphertext, the plaintext's hash, and the miner it is for.
            if job_input.type != "inference" or job_input.prompt or job_input.messages or job_input.texts:
                raise InvalidInput("a sealed job is an inference job with its whole input in `sealed`")
            constraints = {**constraints, "miner": sealed.miner}
        else:
            try:
                check_job_input(job_input)
            except OverflowError as exc:
                raise InputTooLarge(str(exc)) from None
            except ValueError as exc:
                raise InvalidInput(str(exc)) from None
        kind = compute_model_kind(job_input.type)
        served = [
            m
            for m in self.served_models()
            if m["name"] == job_input.model
            and m["kind"] == kind
            and (model_digest is None or m["digest"] == model_digest)
        ]
        if not served:
            available = sorted({m["name"] for m in self.served_models() if m["kind"] == kind})
            raise UnknownModel(
                f"no live miner serves {kind} model {job_input.model!r}"
                + (f" with digest {model_digest}" if model_digest else "")
                + f"; available: {', '.join(available) or 'none'}"
            )
        ttl = min(request.ttl_seconds or self.settings.default_ttl_seconds, self.settings.max_ttl_seconds)
        payment: Row = dict.fromkeys(PAYMENT_COLUMNS)
        if self.chain is not None:
            if job_id is None:
                raise EscrowProblem(
                    "this coordinator takes paid jobs only: send the job_id of an escrow you opened on chain "
                    f"naming coordinator {self.key.address} (`aitbc job submit` does it for you)",
                    reason="escrow_missing",
                )
            if await self._read(self.repo.get_job, job_id) is not None:
                raise JobRuleViolation(f"job {job_id} was already submitted", reason="duplicate_job")
            terms = await check_escrow(
                self.chain, self.key.address, api_key.client, job_id, max_price, self.settings.escrow_min_blocks
            )
            info = await self.chain.get_info()
            # A job nobody took must give up while its escrow can still be settled.
            blocks_left = terms.deadline_height - terms.head_height - self.settings.escrow_min_blocks // 2
            ttl = max(1, min(ttl, blocks_left * info.block_time_ms // 1000))
            max_price = terms.max_price
            payment.update(
                escrow_amount=terms.amount,
                escrow_deadline=terms.deadline_height,
                payment_state=PaymentState.ESCROWED.value,
            )
        elif job_id is not None:
            raise InvalidInput("this coordinator runs jobs unpaid (no node configured): leave job_id out")
        created = now_ms()
        row: Row = {
            "id": job_id or "job_" + os.urandom(10).hex(),
            "api_key_id": api_key.id,
            "client": api_key.client,
            "type": job_input.type,
            "model": job_input.model,
            "model_digest": model_digest,
            "input": msgspec.to_builtins(job_input) if sealed is None else sealed_row_input(job_input, sealed),
            "input_hash": compute_input_hash(job_input) if sealed is None else sealed.input_hash,
            "max_price": max_price,
            "constraints": constraints,
            "state": JobState.QUEUED.value,
            "attempts": 0,
            "max_attempts": self.settings.max_attempts,
            "miner": None,
            "lease_id": None,
            "lease_expires_at_ms": None,
            "expires_at_ms": created + ttl * 1000,
            "created_at_ms": created,
            "assigned_at_ms": None,
            "started_at_ms": None,
            "finished_at_ms": None,
            "error": None,
            "served_digest": None,
            "assigned_unit_price": None,
            "result": None,
            **payment,
        }
        await self._insert_job(row)
        self._due_by(row["expires_at_ms"])
        self.metrics.jobs_submitted.inc()
        view = job_view(row)
        self.events.publish(row["id"], "status", view)
        self._notify_work(row["model"])
        return view

    async def get_job_row(self, api_key: ApiKey | None, job_id: str) -> Row:
        row = await self._read(self.repo.get_job, job_id)
        if row is None or (api_key is not None and row["api_key_id"] != api_key.id):
            raise NotFound(f"no job {job_id}")
        return row

    async def list_jobs(
        self, api_key: ApiKey, state: str | None, model: str | None, limit: int, before: tuple[int, str] | None
    ) -> list[Row]:
        return await self._read(self.repo.list_jobs, api_key.id, state, model, limit, before)

    async def cancel_job(self, api_key: ApiKey, job_id: str) -> dict[str, Any]:
        row = await self.get_job_row(api_key, job_id)
        job = lifecycle_from_row(row)
        cancelled = on_cancel(job, now_ms())
        ok = await self._write(
            self.repo.update_job_if, job_id, (job.state.value,), job.lease_id, lifecycle_changes(cancelled)
        )
        if not ok:
            raise JobRuleViolation("job changed state while cancelling; retry", reason="conflict")
        self._release_active(job.miner, job_id)
        row.update(lifecycle_changes(cancelled))
        view = job_view(row)
        self.events.publish(job_id, "status", view, final=True)
        self.metrics.jobs_finished.labels("cancelled").inc()
        self._wake_payments(row)
        return view

    async def get_receipt(self, api_key: ApiKey | None, job_id: str, row: Row | None = None) -> dict[str, Any]:
        """The job's receipt; ``row``: the job as the caller already read it for ``api_key`` (saves a read)."""
        if row is None:
            row = await self.get_job_row(api_key, job_id)
        receipt = await self._read(self.repo.get_receipt, job_id)
        if receipt is None:
            raise NotFound(f"job {job_id} has no receipt (state: {row['state']})")
        found = {"job_id": job_id, "receipt_hash": receipt["receipt_hash"], "receipt": receipt["receipt"]}
        if receipt.get("zk_proof") is not None:  # so a saved receipt file carries its proof (docs/zk.md)
            found["zk_proof"] = receipt["zk_proof"]
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

    def _live(self, miner: str) -> LiveMiner:
        live = self.miners.get(miner)
        if live is None:
            raise UnknownMiner(f"miner {miner} is not registered; register first")
        live.last_seen_ms = now_ms()
        return live

    async def register_miner(self, miner: str, body: MinerRegistration) -> dict[str, Any]:
        registration = registration_dict(body)
        offer = offer_from_registration(miner, registration)
        previous = self.miners.get(miner)
        live = LiveMiner(
            offer,
            registration,
            int(registration.get("max_concurrency", 1)),
            now_ms(),
            active=previous.active if previous else set(),
        )
        await self._write(self.repo.upsert_miner, miner, registration, live.last_seen_ms)
        self.miners[miner] = live
        self.match_policy.on_register(offer, registration, live.max_concurrency)
        self.metrics.miners_online.set(len(self.live_miners()))
        self._notify_work()
        log.info("miner registered", extra={"miner": miner, "models": [m.name for m in offer.models]})
        return {
            "miner": miner,
            "coordinator": self.key.address,
            "chain_id": self.settings.chain_id,
            "lease_seconds": self.settings.lease_seconds,
            "heartbeat_seconds": self.settings.miner_timeout_seconds / 3,
        }

    async def heartbeat(self, miner: str, leases: dict[str, str]) -> dict[str, Any]:
        """Mark the miner alive and extend the leases of the jobs it says it is still running."""
        live = self._live(miner)
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
                extended[job_id] = await self._extend_lease(miner, job_id, lease_id)
            except (JobRuleViolation, NotFound):
                lost.append(job_id)
        self.metrics.miners_online.set(len(self.live_miners()))
        return {"extended": extended, "lost": lost}

    async def _extend_lease(self, miner: str, job_id: str, lease_id: str) -> int:
        """Extend the lease of a job the miner is running; returns the lease's end as stored.

        Progress reports come ~10 times a second per job. A running job's lease is written to the
        database only when less than ``LEASE_REWRITE_BELOW`` of it is left (at most every 1.5 s with the
        default 15 s lease); reports in between are checked against what this process last wrote
        (``_LeaseMark``), which every transition that ends the lease drops (``_release_active``).
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
        row, job, progressed = await self._write(self._extend_lease_sync, miner, job_id, lease_id, now)
        assert progressed.lease_expires_at_ms is not None
        live = self.miners.get(miner)
        if live is not None and job_id in live.active:  # not ended meanwhile (see ``_release_active``)
            self._leases[job_id] = _LeaseMark(miner, lease_id, progressed.lease_expires_at_ms)
        if job.state != progressed.state:
            row.update(lifecycle_changes(progressed))
            self.events.publish(job_id, "status", job_view(row))
        return progressed.lease_expires_at_ms

    def _extend_lease_sync(
        self, miner: str, job_id: str, lease_id: str, now: int
    ) -> tuple[Row, JobLifecycle, JobLifecycle]:
        row = self.repo.get_job(job_id)
        if row is None:
            raise NotFound(f"no job {job_id}")
        job = lifecycle_from_row(row)
        progressed = on_progress(job, miner, lease_id, now, self._lease_ms)
        if not self.repo.update_job_if(job_id, (job.state.value,), lease_id, lifecycle_changes(progressed)):
            raise JobRuleViolation("lease is no longer valid", reason="lease_lost")
        return row, job, progressed

    def stop_claims(self) -> None:
        """The coordinator is stopping: long-polling claims end now, empty, and no new job is handed out."""
        self._stopping = True
        self._notify_work()

    async def claim(self, miner: str, wait_seconds: float) -> JobAssignment | None:
        live = self._live(miner)
        deadline = time.monotonic() + min(wait_seconds, self.settings.max_claim_wait_seconds)
        woken_for_a_job = False
        while True:
            if self._stopping:
                return None
            generation = self._work_generation
            # Jobs become claimable only through ``_notify_work`` (a submission, a requeue, a registration),
            # so if none happened since this miner's last empty look, the database has nothing for it either.
            if len(live.active) < live.max_concurrency and live.idle_generation != generation:
                async with self._claim_lock:
                    claimed = await self._write(self._try_claim, live, now_ms())
                if claimed is not None:
                    return self._on_claimed(live, claimed)
                live.idle_generation = generation
            work_arrived = generation != self._work_generation
            if woken_for_a_job:  # the job went to someone else, or does not suit this miner
                self._notify_work()
                woken_for_a_job = False
            if work_arrived:
                continue  # work arrived while this claimer was looking: look again before sleeping
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            waiter = _Waiter(live, asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
            try:
                woken_for_a_job = await asyncio.wait_for(waiter.future, timeout=remaining)
            except TimeoutError:
                return None
            except asyncio.CancelledError:  # the miner went away: pass on a job it was woken for
                if waiter.future.done() and not waiter.future.cancelled() and waiter.future.result():
                    self._notify_work()
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            live.last_seen_ms = now_ms()

    def _try_claim(self, live: LiveMiner, now: int) -> Row | None:
        models = sorted({m.name for m in live.offer.models})
        ready = [w.live for w in list(self._waiters)]  # miners long-polling right now (a snapshot: DB thread)
        for row in self.repo.find_claimable(models, now, CLAIM_SCAN_LIMIT):
            if (row["constraints"] or {}).get("miner", live.offer.miner) != live.offer.miner:
                continue  # a private job, sealed to another miner
            released_by, released_at = self._released.get(row["id"], (None, None))
            if not is_reclaim_allowed(released_by, released_at, live.offer.miner, now, self.release_allowance):
                continue  # it handed this job back just now: someone else first (aitbc.market.conduct)
            requirements = requirements_from_row(row)
            if get_ineligibility(live.offer, requirements) is not None:
                continue
            if not self.match_policy.allows(live, requirements, row["id"], row["created_at_ms"], ready, now):
                continue  # a better-ranked miner waiting right now gets it (see aitbc.coordinator.matching)
            served = find_served_model(live.offer, requirements)
            assert served is not None
            claimed = on_claim(lifecycle_from_row(row), live.offer.miner, os.urandom(8).hex(), now, self._lease_ms)
            changes = {
                **lifecycle_changes(claimed),
                "served_digest": served.digest,
                "assigned_unit_price": served.unit_price,  # what the receipt must charge (metering)
            }
            if self.repo.update_job_if(row["id"], ("queued",), None, changes):
                row.update(changes)
                return row
        return None

    def _on_claimed(self, live: LiveMiner, row: Row) -> JobAssignment:
        live.active.add(row["id"])
        self._due_by(row["lease_expires_at_ms"])
        self.metrics.assignment_latency.observe((row["assigned_at_ms"] - row["created_at_ms"]) / 1000)
        self.events.publish(row["id"], "status", job_view(row))
        served = next(m for m in live.offer.models if m.name == row["model"] and m.digest == row["served_digest"])
        sealed = is_sealed_row(row)
        return JobAssignment(
            job=AssignedJob(
                job_id=row["id"],
                type=row["type"],
                model=row["model"],
                model_digest=row["served_digest"],
                input=None if sealed else msgspec.convert(row["input"], JobInput),
                sealed=msgspec.convert(row["input"], SealedJobInput) if sealed else None,
                input_hash=row["input_hash"],
                client=row["client"],
                max_price=row["max_price"],
                unit_price=served.unit_price,
                attempt=row["attempts"],
                chain_id=self.settings.chain_id,
                coordinator=self.key.address,
                assigned_at_ms=row["assigned_at_ms"],
                escrow_amount=row.get("escrow_amount"),
                zk_proof_required=bool((row["constraints"] or {}).get("zk_proof_required")),
            ),
            lease=Lease(
                lease_id=row["lease_id"],
                expires_at_ms=row["lease_expires_at_ms"],
                lease_seconds=self.settings.lease_seconds,
            ),
        )

    def _release_active(self, miner: str | None, job_id: str) -> None:
        self._leases.pop(job_id, None)
        if miner is not None and miner in self.miners:
            self.miners[miner].active.discard(job_id)

    async def progress(
        self, miner: str, job_id: str, lease_id: str, tokens: list[str], first_index: int
    ) -> dict[str, Any]:
        self._live(miner)
        expires = await self._extend_lease(miner, job_id, lease_id)
        for offset, text in enumerate(tokens):
            self.events.publish(job_id, "token", {"index": first_index + offset, "text": text})
        return {"lease_expires_at_ms": expires}

    async def submit_result(
        self,
        miner: str,
        job_id: str,
        lease_id: str,
        output: JobOutput,
        receipt: Receipt,
        zk_proof: ZkReceiptProof | None = None,
    ) -> dict[str, Any]:
        self._live(miner)
        row = await self.get_job_row(None, job_id)
        job = lifecycle_from_row(row)
        now = now_ms()
        completed = on_result(job, miner, lease_id, now)
        self._check_output(row, output)
        verify_receipt(
            receipt,
            ReceiptExpectation(
                chain_id=self.settings.chain_id,
                job_id=job_id,
                miner=miner,
                client=row["client"],
                coordinator=self.key.address,
                model=row["model"],
                model_digest=row["served_digest"],
                input_hash=row["input_hash"],
                # a sealed result is ciphertext: the client checks the output hash after decrypting
                output_hash=receipt.output_hash if is_sealed_row(row) else compute_job_output_hash(row["type"], output),
                max_total_price=row["max_price"],
                earliest_start_ms=row["assigned_at_ms"],
                latest_finish_ms=now,
                require_coordinator_signature=False,
            ),
        )
        verify_receipt_metering(receipt, await self.metering.bounds_for(row))
        self._check_zk_proof(row, receipt, zk_proof)
        cosigned = countersign_receipt(receipt, self.key)
        receipt_json = msgspec.to_builtins(cosigned)
        receipt_hash = compute_receipt_hash(cosigned)
        changes = {**lifecycle_changes(completed), "result": msgspec.to_builtins(output)}
        receipt_row = {
            "job_id": job_id,
            "receipt_hash": receipt_hash,
            "miner": miner,
            "receipt": receipt_json,
            "created_at_ms": now,
            "zk_proof": None if zk_proof is None else msgspec.to_builtins(zk_proof),
        }
        if not await self._write(self.repo.complete_job, job_id, lease_id, changes, receipt_row):
            raise JobRuleViolation("lease is no longer valid (the job was reassigned)", reason="lease_lost")
        self._release_active(miner, job_id)
        row.update(changes)
        self.metrics.jobs_finished.labels("completed").inc()
        speed = measured_speed(row, receipt.units.completion_tokens, now)
        self.match_policy.on_outcome(miner, job_id, row["attempts"], Outcome.COMPLETED, *speed)
        if row["assigned_at_ms"] is not None:
            self.metrics.job_duration.observe((now - row["assigned_at_ms"]) / 1000)
        if receipt.units.compute_ms > 0 and receipt.units.completion_tokens:
            self.metrics.tokens_per_second.observe(receipt.units.completion_tokens * 1000 / receipt.units.compute_ms)
        self._wake_payments(row)
        self.events.publish(job_id, "receipt", {"receipt_hash": receipt_hash, "receipt": receipt_json})
        self.events.publish(job_id, "status", job_view(row), final=True)
        return {"job_id": job_id, "receipt_hash": receipt_hash, "receipt": receipt_json}

    @staticmethod
    def _check_zk_proof(row: Row, receipt: Receipt, zk_proof: ZkReceiptProof | None) -> None:
        """A job that asked for a proof gets a valid one (the chain checks it again at settlement)."""
        if zk_proof is None:
            if (row["constraints"] or {}).get("zk_proof_required"):
                raise BadResult("this job requires a zk receipt proof (constraints.zk_proof_required)")
            return
        problem = get_receipt_proof_problem(
            zk_proof, receipt, compute_proof_escrow(row.get("escrow_amount"), row["max_price"], receipt.total_price)
        )
        if problem is not None:
            raise BadResult(f"zk proof refused: {problem}")

    @staticmethod
    def _check_output(row: Row, output: JobOutput) -> None:
        if row["type"] == "inference":
            if output.text is None or output.vectors_f32:
                raise BadResult("an inference result must carry text and no vectors")
            return
        texts = row["input"].get("texts") or []
        if row["type"] == ZK_INFERENCE:  # EXPERIMENTAL: the proofs must be about this job's vectors
            try:
                problem = get_zk_inference_problem(parse_zk_inference_proofs(output.text), texts, ZKML_SCALE)
            except ValueError as exc:
                problem = str(exc)
            if problem is None and len(output.vectors_f32) != 8 * ZKML_OUTPUTS * len(texts):
                problem = f"expected {len(texts)} output vectors of {ZKML_OUTPUTS} float32 values"
            if problem is not None:
                raise BadResult(f"zk-inference result refused: {problem}")
            return
        if output.text is not None or output.dimensions == 0:
            raise BadResult("an embedding result must carry vectors and no text")
        if len(output.vectors_f32) != 8 * output.dimensions * len(texts):
            raise BadResult(f"expected {len(texts)} vectors of {output.dimensions} float32 values")

    async def fail(self, miner: str, job_id: str, lease_id: str, error: str, retryable: bool) -> dict[str, Any]:
        self._live(miner)
        row = await self.get_job_row(None, job_id)
        job = lifecycle_from_row(row)
        failed = on_failure(job, miner, lease_id, now_ms(), error[:2000], retryable)
        await self._apply_transition(row, job, failed, expect_lease=lease_id)
        self.match_policy.on_outcome(miner, job_id, job.attempts, Outcome.FAILED, detail=error[:500])
        return job_view(row)

    async def release(self, miner: str, job_id: str, lease_id: str) -> dict[str, Any]:
        self._live(miner)
        row = await self.get_job_row(None, job_id)
        job = lifecycle_from_row(row)
        now = now_ms()
        released = on_release(job, miner, lease_id, now)
        await self._apply_transition(row, job, released, expect_lease=lease_id)
        self._released[job_id] = (miner, now)
        recent = [*compute_recent_releases(self._releases.get(miner, []), now, self.release_allowance), now]
        self._releases[miner] = recent
        if is_release_over_allowance(len(recent), self.release_allowance):
            detail = f"released {len(recent)} jobs within {self.release_allowance.window_ms // 1000} s"
            self.match_policy.on_outcome(miner, job_id, job.attempts, Outcome.FAILED, detail=detail)
            log.warning("miner releases too often", extra={"miner": miner, "job_id": job_id, "releases": len(recent)})
        return job_view(row)

    async def _apply_transition(
        self, row: Row, before: JobLifecycle, after: JobLifecycle, expect_lease: str | None
    ) -> None:
        ok = await self._write(
            self.repo.update_job_if, row["id"], (before.state.value,), expect_lease, lifecycle_changes(after)
        )
        if not ok:
            raise JobRuleViolation("job changed state concurrently", reason="conflict")
        self._release_active(before.miner, row["id"])
        row.update(lifecycle_changes(after))
        final = after.state in (JobState.FAILED, JobState.EXPIRED, JobState.CANCELLED)
        self.events.publish(row["id"], "status", job_view(row), final=final)
        if final:
            self.metrics.jobs_finished.labels(after.state.value).inc()
            self._wake_payments(row)
        if after.state == JobState.QUEUED:
            self.metrics.jobs_requeued.inc()
            self._due_by(row["expires_at_ms"])
            self._notify_work()

    # -- payments -----------------------------------------------------------------
    def _wake_payments(self, row: Row) -> None:
        if self.payments is not None and row.get("payment_state") is not None:
            self.payments.wake()

    async def _on_escrows_refunded(self, job_ids: list[str]) -> None:
        """The chain refunded these jobs' escrows (their deadline passed): stop any that still run."""
        for job_id in job_ids:
            row = await self._read(self.repo.get_job, job_id)
            if row is None:
                continue
            job = lifecycle_from_row(row)
            if job.state in (JobState.COMPLETED, JobState.FAILED, JobState.EXPIRED, JobState.CANCELLED):
                continue
            try:
                await self._apply_transition(row, job, on_escrow_refunded(job, now_ms()), expect_lease=job.lease_id)
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
        self._prune_releases(now)
        self.metrics.miners_online.set(len(self.live_miners(now)))
        if self.match_policy.is_due(now):
            self._notify_work()  # a job held for a better-ranked miner is now open to any claimer
        if now < self._next_sweep_ms:
            return
        # Set before reading, so that marks lowered while the read runs are kept.
        self._next_sweep_ms = now + SWEEP_RECHECK_MS
        expired_leases, past_ttl, next_end = await self._read(self.repo.sweep_candidates, now)
        self._due_by(next_end)
        for row in expired_leases:
            job = lifecycle_from_row(row)
            if not is_lease_expired(job, now):
                continue
            try:
                await self._apply_transition(row, job, on_lease_expired(job, now), expect_lease=job.lease_id)
                self.match_policy.on_outcome(job.miner or "", row["id"], job.attempts, Outcome.TIMED_OUT)
                log.warning("lease expired", extra={"job_id": row["id"], "miner": job.miner, "state": row["state"]})
            except JobRuleViolation:
                continue
        for row in past_ttl:
            job = lifecycle_from_row(row)
            try:
                await self._apply_transition(row, job, on_ttl_expired(job, now), expect_lease=None)
            except JobRuleViolation:
                continue

    def _prune_releases(self, now: int) -> None:
        cooldown, window = self.release_allowance.cooldown_ms, self.release_allowance.window_ms
        for job_id in [j for j, (_, at) in self._released.items() if now - at >= cooldown]:
            del self._released[job_id]
        for miner in [m for m, times in self._releases.items() if not times or now - times[-1] >= window]:
            del self._releases[miner]

    async def refresh_gauges(self) -> None:
        """Jobs by state and queue depth, counted now (called when ``/metrics`` is scraped)."""
        counts = await self._read(self.repo.count_by_state)
        for state in JobState:
            self.metrics.jobs_by_state.labels(state.value).set(counts.get(state.value, 0))
        self.metrics.queue_depth.set(counts.get(JobState.QUEUED.value, 0))
        self.metrics.miners_online.set(len(self.live_miners()))
