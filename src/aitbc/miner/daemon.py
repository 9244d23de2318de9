"""The miner daemon: register → heartbeat → claim → run the backend → sign the receipt → deliver.

Every request to the coordinator is signed with the miner's key. Work runs
in worker threads (backends are blocking); generated tokens flow back to the
event loop and out as progress reports, which also keep the job's lease.
On shutdown the daemon stops claiming, aborts running jobs and hands them
back so another miner can take them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from aitbc.miner.auditor import Auditor
from aitbc.miner.backends.base import (
    ChatMessage,
    GenerationParams,
    InferenceBackend,
    ModelInfo,
)
from aitbc.miner.backends.training import CheckpointStore, TrainingJobs
from aitbc.miner.config import MinerSettings
from aitbc.miner.link import CoordinatorLink, ResultQueue, error_reason, json_or_none, now_ms
from aitbc.miner.zkml_jobs import ZkmlJobs
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import RemoteError
from aitbc.protocol.job import JobInput, JobOutput, pack_vectors
from aitbc.protocol.job_messages import (
    MAX_CLAIM_BATCH,
    AssignedJob,
    ClaimManyRequest,
    ClaimRequest,
    Hardware,
    JobAssignment,
    JobAssignments,
    Lease,
    MinerRegistration,
    ResultSubmission,
    ServedModel,
)
from aitbc.protocol.receipt import Receipt, ReceiptUnits, compute_total_price, sign_receipt_as_miner
from aitbc.protocol.sealed import open_job_input, seal_job_output
from aitbc.protocol.zk import ZkReceiptProof, compute_proof_escrow
from aitbc.protocol.zkml import compute_job_output_hash
from aitbc.zk.prover import Groth16pyProver, ReceiptProver, make_receipt_proof
from aitbc.zk.toolchain import CircuitPaths, default_circuits_dir

log = logging.getLogger("aitbc.miner")

PROGRESS_INTERVAL_S = 0.1
MAX_BACKOFF_S = 10.0


class JobAborted(Exception):
    """Raised inside the backend's token callback to stop a generation early."""


@dataclass
class _ActiveJob:
    job_id: str
    lease_id: str
    aborted: bool = False


class MinerDaemon:
    def __init__(
        self,
        config: MinerSettings,
        key: KeyPair,
        backend: InferenceBackend,
        link: CoordinatorLink | None = None,
        zk_prover: ReceiptProver | None = None,
        hardware: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.hardware = hardware or {"kind": "cpu"}
        """What the miner runs on, as detected at start (``aitbc.miner.hardware``)."""
        self._zk_prover = zk_prover
        self._zk_lock = threading.Lock()
        self.zkml = ZkmlJobs(config.data_dir)
        self.key = key
        self.backend = backend
        self.link = link
        self.models: list[ModelInfo] = []
        self.active: dict[str, _ActiveJob] = {}
        self.completed = 0
        self._results: ResultQueue | None = None
        """Batch mode (``claim_batch`` > 1): results go out several per request."""
        self._stopping = asyncio.Event()
        self._registered = asyncio.Event()
        store = CheckpointStore(config.resolved_training_dir)
        skip = frozenset(config.training_skip_steps)
        self.training = TrainingJobs(store, skip) if config.training else None

    def _prove_receipt(self, receipt: Receipt, escrow: int) -> ZkReceiptProof:
        """The job asked for a zk receipt proof: groth16py in-process (compiled at the first such job)."""
        with self._zk_lock:
            if self._zk_prover is None:
                self._zk_prover = Groth16pyProver(CircuitPaths(default_circuits_dir()))
            prover = self._zk_prover
        return make_receipt_proof(prover, receipt, escrow)

    async def _connect(self) -> CoordinatorLink:
        if self.link is not None:
            return self.link
        self.link = await CoordinatorLink.connect(self.config.coordinator_url, self.key)
        return self.link

    def registration(self) -> MinerRegistration:
        return MinerRegistration(
            models=[
                ServedModel(
                    name=m.name,
                    digest=m.digest,
                    kind=m.kind,
                    unit_price=self.config.unit_price,
                    context_length=m.context_length or None,
                    dimensions=m.dimensions or None,
                )
                for m in self.models
            ],
            backend=self.config.backend,
            hardware=msgspec.convert(self.hardware, Hardware),
            region=self.config.region,
            max_concurrency=self.config.max_concurrency,
            version=self.config.version,
        )

    async def register(self) -> None:
        """Register, retrying with backoff until the coordinator answers."""
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                link = await self._connect()
                status, data = await link.post("/api/v1/miners/register", self.registration())
            except (RemoteError, OSError, KeyError, ValueError) as exc:  # not up yet, or not answering right
                log.warning("coordinator unreachable; retrying", extra={"error": str(exc), "backoff_s": backoff})
            else:
                if status != 200:
                    raise RemoteError(f"registration refused: {data}", code=status, reason=error_reason(data))
                self._registered.set()
                log.info("registered", extra={"miner": self.key.address, "models": [m.name for m in self.models]})
                return
            await self._sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2) * (0.8 + 0.4 * random.random())

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def run(self) -> None:
        self.models = await asyncio.to_thread(self.backend.list_models)
        if self.config.zk_inference:
            self.models.append(await asyncio.to_thread(self.zkml.model))
        if self.training is not None:  # docs/training.md
            self.training.store.prune(self.config.checkpoint_keep_seconds)
            self.models += await asyncio.to_thread(self.training.list_models)
        warm_up = getattr(self.backend, "warm_up", None)
        if callable(warm_up):  # load models before offering them, so the first job is not slow
            await asyncio.to_thread(warm_up)
        if not self.models:
            raise RemoteError("the backend serves no models; nothing to offer", reason="no_models")
        await self.register()
        if self.config.claim_batch > 1:
            assert self.link is not None
            self._results = ResultQueue(self.link, self.config.claim_batch)
            workers = [asyncio.create_task(self._claimer()), asyncio.create_task(self._results.run())]
        else:
            workers = [asyncio.create_task(self._worker(i)) for i in range(self.config.max_concurrency)]
        heartbeat = asyncio.create_task(self._heartbeat())
        if self.config.node_url is not None:  # a bonded miner also audits (aitbc.miner.auditor)
            workers.append(asyncio.create_task(Auditor(self.key, self.link, self.config.node_url, self._execute).run()))
            if self.training is not None and self.link is not None:  # and training audits (training_auditor)
                from aitbc.miner.training_sources import start_training_auditor

                loop = asyncio.get_running_loop()
                auditor = start_training_auditor(self.key, self.link, self.config.node_url, self.training, loop)
                workers.append(asyncio.create_task(auditor.run()))
        await self._stopping.wait()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        self.zkml.shutdown()
        if self.link is not None:
            await self.link.close()

    def stop(self) -> None:
        self._stopping.set()

    async def _heartbeat(self) -> None:
        assert self.link is not None
        while not self._stopping.is_set():
            await self._sleep(2.0)
            try:
                leases = {a.job_id: a.lease_id for a in self.active.values()}
                status, data = await self.link.post("/api/v1/miners/heartbeat", {"leases": leases})
                if status == 403:
                    await self.register()
                elif status == 200:
                    for job_id in data.get("lost", []):
                        if job_id in self.active:
                            self.active[job_id].aborted = True
                            log.warning("lease lost; aborting job", extra={"job_id": job_id})
            except (RemoteError, OSError) as exc:
                log.warning("heartbeat failed", extra={"error": str(exc)})

    async def _claimer(self) -> None:
        """Batch mode: fill the free slots with ``claim-many`` long-polls; each job runs as a task of its own."""
        assert self.link is not None
        running: set[asyncio.Task[None]] = set()
        backoff = 0.5
        try:
            while not self._stopping.is_set():
                free = self.config.max_concurrency - len(running)
                if free <= 0:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                request = ClaimManyRequest(
                    wait_seconds=self.config.claim_wait_seconds,
                    max_jobs=min(free, self.config.claim_batch, MAX_CLAIM_BATCH),
                )
                try:
                    response = await self.link.send("/api/v1/miners/claim-many", request)
                    backoff = 0.5
                except (RemoteError, OSError) as exc:
                    log.warning("claim failed; backing off", extra={"error": str(exc)})
                    await self._sleep(backoff)
                    backoff = min(MAX_BACKOFF_S, backoff * 2)
                    continue
                if response.status_code == 204:
                    continue
                if response.status_code == 403:
                    await self.register()
                    continue
                if response.status_code != 200:
                    log.warning("claim refused", extra={"status": response.status_code})
                    await self._sleep(1.0)
                    continue
                try:
                    claimed = msgspec.json.decode(response.content, type=JobAssignments).assignments
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    log.error("the coordinator sent assignments this miner cannot read", extra={"error": str(exc)})
                    await self._sleep(1.0)
                    continue
                for assignment in claimed:
                    task = asyncio.create_task(self._run_logged(assignment))
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _run_logged(self, assignment: JobAssignment) -> None:
        try:
            await self._run_job(assignment.job, assignment.lease)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job handling failed", extra={"job_id": assignment.job.job_id})

    async def _worker(self, index: int) -> None:
        assert self.link is not None
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                response = await self.link.send(
                    "/api/v1/miners/claim", ClaimRequest(wait_seconds=self.config.claim_wait_seconds)
                )
                status = response.status_code
                backoff = 0.5
            except (RemoteError, OSError) as exc:
                log.warning("claim failed; backing off", extra={"error": str(exc), "worker": index})
                await self._sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
                continue
            if status == 204:
                continue
            if status == 403:
                await self.register()
                continue
            if status != 200:
                log.warning("claim refused", extra={"status": status, "reason": error_reason(json_or_none(response))})
                await self._sleep(1.0)
                continue
            try:
                assignment = msgspec.json.decode(response.content, type=JobAssignment)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                log.error("the coordinator sent an assignment this miner cannot read", extra={"error": str(exc)})
                await self._sleep(1.0)
                continue
            try:
                await self._run_job(assignment.job, assignment.lease)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job handling failed", extra={"job_id": assignment.job.job_id})

    async def _run_job(self, job: AssignedJob, lease: Lease) -> None:
        assert self.link is not None
        job_id = job.job_id
        active = _ActiveJob(job_id, lease.lease_id)
        self.active[job_id] = active
        tokens: list[str] = []
        sent = 0
        halted = False

        sealed = job.sealed

        loop = asyncio.get_running_loop()
        first_token = asyncio.Event()

        def on_token(text: str) -> None:
            if halted or active.aborted or self._stopping.is_set():
                raise JobAborted
            if sealed is not None:
                return  # a private job streams nothing through the coordinator
            # A plain append (atomic on a list): the loop picks tokens up at its next progress tick.
            # Waking the event loop for every token cost the model CPU it shares the machine with; only
            # the first token wakes it, so a streaming client sees it at once (time to first token).
            tokens.append(text)
            if len(tokens) == 1:
                loop.call_soon_threadsafe(first_token.set)

        async def push_progress() -> None:
            nonlocal sent
            batch = tokens[sent:]
            status, data = await self.link.post(  # type: ignore[union-attr]
                f"/api/v1/miners/jobs/{job_id}/progress",
                {"lease_id": active.lease_id, "tokens": batch, "first_index": sent},
            )
            sent += len(batch)
            if status != 200:
                active.aborted = True
                log.warning("progress refused; aborting", extra={"job_id": job_id, "reason": error_reason(data)})

        try:
            if sealed is not None:
                job_input = open_job_input(self.key, sealed.sealed, job.input_hash)
            elif job.input is not None:
                job_input = job.input
            else:
                raise RemoteError("the assignment carries no input", reason="bad_assignment")
            # The first report tells the coordinator the job is running; the generation starts meanwhile
            # instead of a round trip later (pushes stay one at a time: the loop below waits for this one).
            # In batch mode a job reports only once it has run for PROGRESS_INTERVAL_S (a quick one: never).
            reported = self._results is None
            first_report = asyncio.create_task(push_progress()) if reported else None
            started = now_ms()
            run = self._execute if job_input.type != "training" else functools.partial(self._train, job_id, loop)
            work = asyncio.create_task(asyncio.to_thread(run, job_input, on_token))
            try:
                if first_report is not None:
                    await first_report
            except BaseException:
                halted = True  # the generation stops at its next token
                raise
            first_wait = asyncio.create_task(first_token.wait())
            try:
                while not work.done():
                    waiting = {work} if first_wait.done() or not reported else {work, first_wait}
                    await asyncio.wait(waiting, timeout=PROGRESS_INTERVAL_S, return_when=asyncio.FIRST_COMPLETED)
                    if (len(tokens) > sent or not reported) and not active.aborted and not work.done():
                        await push_progress()
                        reported = True
            finally:
                first_wait.cancel()
            output, units = work.result()
            finished = max(now_ms(), started + units.compute_ms)
            if active.aborted:
                return
            if len(tokens) > sent and reported:
                await push_progress()
            receipt = Receipt(
                chain_id=self.link.chain_id,
                job_id=job_id,
                miner=self.key.address,
                client=job.client,
                coordinator=job.coordinator,
                model=job.model,
                model_digest=job.model_digest,
                input_hash=job.input_hash,
                output_hash=compute_job_output_hash(job_input.type, output),
                units=units,
                unit_price=job.unit_price,
                total_price=compute_total_price(units, job.unit_price),
                started_at_ms=started,
                finished_at_ms=finished,
            )
            receipt = sign_receipt_as_miner(receipt, self.key)
            delivered = output if sealed is None else JobOutput(text=seal_job_output(output, sealed.reply_to))
            proof = None
            if job.zk_proof_required:
                escrow = compute_proof_escrow(job.escrow_amount, job.max_price, receipt.total_price)
                proof = await asyncio.to_thread(self._prove_receipt, receipt, escrow)
            result = ResultSubmission(lease_id=active.lease_id, output=delivered, receipt=receipt, zk_proof=proof)
            if self._results is not None:
                status, data = await self._results.deliver(job_id, result)
            else:
                status, data = await self.link.post(f"/api/v1/miners/jobs/{job_id}/result", result)
            if status == 200:
                self.completed += 1
                log.info(
                    "job completed",
                    extra={"job_id": job_id, "tokens": units.completion_tokens, "receipt_hash": data["receipt_hash"]},
                )
            else:
                log.warning("result refused", extra={"job_id": job_id, "status": status, "error": data})
                if status == 422:  # our receipt or output was refused: free the job for another attempt
                    await self.link.post(
                        f"/api/v1/miners/jobs/{job_id}/fail",
                        {
                            "lease_id": active.lease_id,
                            "error": f"result refused: {error_reason(data)}",
                            "retryable": True,
                        },
                    )
        except JobAborted:
            pass
        except (asyncio.CancelledError, GeneratorExit):
            active.aborted = True
            raise
        except Exception as exc:
            log.exception("job failed", extra={"job_id": job_id})
            with contextlib.suppress(RemoteError, OSError):
                await self.link.post(
                    f"/api/v1/miners/jobs/{job_id}/fail",
                    {"lease_id": active.lease_id, "error": f"{type(exc).__name__}: {exc}", "retryable": True},
                )
        finally:
            self.active.pop(job_id, None)
            if (active.aborted or self._stopping.is_set()) and self.link is not None:
                with contextlib.suppress(RemoteError, OSError):
                    await asyncio.shield(
                        self.link.post(f"/api/v1/miners/jobs/{job_id}/release", {"lease_id": active.lease_id})
                    )

    def _train(self, job_id: str, loop: Any, job: JobInput, on_token: Any) -> tuple[JobOutput, ReceiptUnits]:
        if self.training is None or self.link is None:
            raise RemoteError("this miner does not run training jobs", reason="unsupported_job_type")
        return self.training.run(self.link, loop, job_id, job, on_token)

    def _execute(self, job: JobInput, on_token: Any) -> tuple[JobOutput, ReceiptUnits]:
        """Run the job on the backend (in a worker thread); returns the output and measured units."""
        started = time.perf_counter()
        if job.type == "zk-inference":
            output, proved = self.zkml.run(job)
            prompt_tokens, completion_tokens = proved, 0
        elif job.type == "embedding":
            result = self.backend.embed(job.model, list(job.texts or []))
            dims, packed = pack_vectors(result.vectors)
            output = JobOutput(dimensions=dims, vectors_f32=packed)
            prompt_tokens, completion_tokens = result.prompt_tokens, 0
        else:
            params = GenerationParams(
                max_tokens=job.params.max_tokens,
                temperature=job.params.temperature_milli / 1000,
                seed=job.params.seed,
                stop=tuple(job.params.stop),
                top_p=None if job.params.top_p_milli is None else job.params.top_p_milli / 1000,
            )
            messages = None if job.messages is None else [ChatMessage(m.role, m.content) for m in job.messages]  # type: ignore[arg-type]
            generated = self.backend.generate(
                job.model, prompt=job.prompt, messages=messages, params=params, on_token=on_token
            )
            output = JobOutput(text=generated.text)
            prompt_tokens, completion_tokens = generated.prompt_tokens, generated.completion_tokens
        compute_ms = max(1, round((time.perf_counter() - started) * 1000))
        return output, ReceiptUnits(
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, compute_ms=compute_ms
        )
