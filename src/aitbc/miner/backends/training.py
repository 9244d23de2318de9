"""The miner's ``training`` jobs: fetch the dataset blob, train deterministically, keep the checkpoints.

``TrainingJobs.run`` runs in the daemon's worker thread (its blob transfers go through the daemon's event
loop): it checks the dataset against the spec's hash, runs ``aitbc.training.run_training`` with a progress
line per reported step, writes every checkpoint to ``CheckpointStore`` (kept for the dispute window, and
read back for auditors and referees), uploads the final weights (safetensors), the loss curve (JSON) and the
committed checkpoints (what an auditor replays a segment from) as blobs, and returns the ``TrainingOutput``
whose commitment the receipt's ``output_hash`` commits to.
The runtime (torch) is imported at the first training job, so a miner without it still starts.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import msgspec

from aitbc.miner.backends.base import ModelInfo
from aitbc.miner.link import CoordinatorLink
from aitbc.protocol.errors import InvalidInput
from aitbc.protocol.job import JobInput, JobOutput
from aitbc.protocol.receipt import ReceiptUnits
from aitbc.protocol.sealed import SealedBoxError, open_dataset
from aitbc.protocol.training import (
    TRAINING_MODELS,
    TrainingCommitment,
    TrainingOutput,
    TrainingSpec,
    get_dataset_blob,
)

PROGRESS_LINES: Final = 500
"""Progress lines a run reports at most (every ``steps / PROGRESS_LINES``-th step, and the last)."""


def progress_line(step: int, loss: float) -> str:
    """One progress report of a training job, as the job's token stream carries it (docs/training.md)."""
    return json.dumps({"step": step, "loss": loss}) + "\n"


async def fetch_dataset(link: CoordinatorLink, spec: TrainingSpec, job_id: str) -> bytes:
    """The job's dataset: the plain blob, or the sealed one opened with this miner's key and checked against
    the spec's ``dataset_hash`` (``SealedBoxError`` when it is not sealed to this miner, or not that dataset)."""
    sealed = spec.sealed_dataset
    if sealed is not None and sealed.miner != link.key.address:
        raise SealedBoxError(f"the dataset is sealed to {sealed.miner}, not to this miner")
    data = await link.get_blob(get_dataset_blob(spec), job_id)
    return data if sealed is None else open_dataset(link.key, data, spec.dataset_hash)


class CheckpointStore:
    """Checkpoints by job: ``ROOT/<job_id>/spec.json``, ``commitment.json`` and ``<step>.safetensors``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, job_id: str) -> Path:
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise ValueError(f"bad job id {job_id!r}")
        return self.root / job_id

    def put(self, job_id: str, step: int, state: bytes) -> None:
        folder = self._dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{step}.tmp"
        tmp.write_bytes(state)
        tmp.replace(folder / f"{step}.safetensors")

    def get(self, job_id: str, step: int) -> bytes | None:
        """The state after ``step`` steps, if this miner kept it."""
        path = self._dir(job_id) / f"{step}.safetensors"
        return path.read_bytes() if path.is_file() else None

    def put_meta(self, job_id: str, spec: TrainingSpec, commitment: TrainingCommitment | None = None) -> None:
        folder = self._dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "spec.json").write_bytes(msgspec.json.encode(spec))
        if commitment is not None:
            (folder / "commitment.json").write_bytes(msgspec.json.encode(commitment))

    def spec(self, job_id: str) -> TrainingSpec | None:
        path = self._dir(job_id) / "spec.json"
        return msgspec.json.decode(path.read_bytes(), type=TrainingSpec) if path.is_file() else None

    def commitment(self, job_id: str) -> TrainingCommitment | None:
        path = self._dir(job_id) / "commitment.json"
        return msgspec.json.decode(path.read_bytes(), type=TrainingCommitment) if path.is_file() else None

    def prune(self, keep_seconds: float, now: float | None = None) -> int:
        """Drop the checkpoints of jobs older than the dispute window; returns how many jobs went."""
        if not self.root.is_dir():
            return 0
        cutoff = (time.time() if now is None else now) - keep_seconds
        gone = 0
        for folder in self.root.iterdir():
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                gone += 1
        return gone


class TrainingJobs:
    """The ``training`` models a miner offers, and the runs of them."""

    def __init__(self, store: CheckpointStore, skip_steps: frozenset[int] = frozenset()) -> None:
        self.store = store
        self.skip_steps = skip_steps
        """TESTS ONLY: steps this miner's runs leave out (a faked checkpoint the audits must catch)."""
        self._runtime: Any = None

    def runtime(self) -> Any:
        """``aitbc.training``, imported at first use (it loads torch)."""
        if self._runtime is None:
            self._runtime = importlib.import_module("aitbc.training")
        return self._runtime

    def list_models(self) -> list[ModelInfo]:
        """One model per registry entry; the digest names the runtime build (same build, same weights)."""
        build: str = self.runtime().runtime_build()
        digest = "sha256:" + hashlib.sha256(build.encode()).hexdigest()
        return [ModelInfo(name, digest, "training", "training") for name in TRAINING_MODELS]

    def run(
        self,
        link: CoordinatorLink,
        loop: asyncio.AbstractEventLoop,
        job_id: str,
        job: JobInput,
        on_token: Callable[[str], None],
    ) -> tuple[JobOutput, ReceiptUnits]:
        """Run a training job (in a worker thread; ``on_token`` raises to abort it)."""
        spec = job.training
        if spec is None:
            raise InvalidInput("a training job carries its spec")
        started = time.perf_counter()
        runtime = self.runtime()
        data = asyncio.run_coroutine_threadsafe(fetch_dataset(link, spec, job_id), loop).result()
        dataset = runtime.load_dataset(spec.dataset_format, data)
        self.store.put_meta(job_id, spec)
        every = max(1, spec.steps // PROGRESS_LINES)

        def on_progress(step: int, loss: float) -> None:
            if step % every == 0 or step == spec.steps:
                on_token(progress_line(step, loss))

        def on_checkpoint(step: int, state: bytes) -> None:
            self.store.put(job_id, step, state)

        if self.skip_steps:
            from aitbc.miner.training_runner import run_faking

            result = run_faking(spec, dataset, self.skip_steps, on_progress, on_checkpoint)
        else:
            result = runtime.run_training(spec, dataset, on_progress, on_checkpoint)
        commitment: TrainingCommitment = result.commitment
        self.store.put_meta(job_id, spec, commitment)
        checkpoints = []  # the committed states, for auditors (docs/verification.md)
        for step in runtime.checkpoint_steps(spec):
            state = self.store.get(job_id, step)
            assert state is not None, f"checkpoint {step} of {job_id} was not kept"
            checkpoints.append(asyncio.run_coroutine_threadsafe(link.put_blob(state), loop).result())
        losses = json.dumps({"losses": result.losses}).encode()
        weights_blob = asyncio.run_coroutine_threadsafe(link.put_blob(result.weights), loop).result()
        losses_blob = asyncio.run_coroutine_threadsafe(link.put_blob(losses), loop).result()
        final = result.losses[-1]
        output = TrainingOutput(
            commitment=commitment,
            weights_blob=weights_blob,
            losses_blob=losses_blob,
            checkpoint_blobs=checkpoints,
            final_loss_micro=max(0, round(final * 1_000_000)) if final == final else 0,  # NaN: 0
        )
        compute_ms = max(1, round((time.perf_counter() - started) * 1000))
        units = ReceiptUnits(prompt_tokens=spec.steps * spec.batch_size, completion_tokens=0, compute_ms=compute_ms)
        return JobOutput(training=output), units
