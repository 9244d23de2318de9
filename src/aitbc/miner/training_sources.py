"""Where a miner's training-audit loop finds jobs and committed checkpoints (``RuntimeRunner``'s sources).

* Its own jobs: the spec, the commitment and the checkpoints its ``CheckpointStore`` kept from the run.
* Jobs it audits or referees: the coordinator's audit input (``GET /api/v1/audits/{job_id}/input``, released
  only to the job's drawn auditor or referee) gives the spec and the delivered ``TrainingOutput``, whose
  ``checkpoint_blobs`` name the committed checkpoints the miner uploaded with its result.
* Datasets and checkpoints are blobs (``GET /api/v1/blobs/{hash}?job=ID``, checked against their sha256 by the
  link; a sealed dataset opened with this miner's key: for another miner's job, the copy its client re-sealed
  to this auditor or referee, which the audit input names); a checkpoint's bytes are used only once the
  runner has checked its state hash.

Blocking calls, made from the loop's worker thread through the daemon's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

import msgspec

from aitbc.miner.backends.training import CheckpointStore, TrainingJobs, fetch_dataset
from aitbc.miner.link import CoordinatorLink
from aitbc.miner.training_auditor import TrainingAuditor
from aitbc.miner.training_runner import RuntimeRunner, TrainingJob
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import AitbcError, RemoteError
from aitbc.protocol.job import JobInput, JobOutput
from aitbc.protocol.sealed import open_dataset
from aitbc.protocol.training import TrainingOutput
from aitbc.training import checkpoint_steps, load_dataset

log = logging.getLogger("aitbc.miner.training_sources")

CALL_TIMEOUT_S: Final = 300.0
T = TypeVar("T")


class TrainingSources:
    def __init__(self, store: CheckpointStore, link: CoordinatorLink, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.link = link
        self.loop = loop
        self.jobs: dict[str, TrainingJob] = {}
        self.outputs: dict[str, TrainingOutput] = {}
        self.waiting: set[str] = set()
        """Jobs whose sealed dataset this miner waits to get re-sealed to it (logged once)."""

    def _wait(self, call: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(call, self.loop).result(CALL_TIMEOUT_S)

    def job(self, job_id: str) -> TrainingJob | None:
        """The job's spec, dataset and commitment (None: not a training job this miner may replay now)."""
        if job_id in self.jobs:
            return self.jobs[job_id]
        spec, commitment = self.store.spec(job_id), self.store.commitment(job_id)
        resealed: str | None = None
        try:
            if spec is None or commitment is None:
                status, data = self._wait(self.link.get(f"/api/v1/audits/{job_id}/input"))
                if status != 200:
                    return None
                job_input = msgspec.convert(data["input"], JobInput)
                output = msgspec.convert(data["output"], JobOutput) if data.get("output") else None
                if job_input.training is None or output is None or output.training is None:
                    return None
                spec, commitment = job_input.training, output.training.commitment
                self.outputs[job_id] = output.training
                resealed = data.get("resealed_dataset")
            sealed = spec.sealed_dataset
            if sealed is not None and sealed.miner != self.link.key.address:  # another miner's private dataset
                if resealed is None:
                    if job_id not in self.waiting:
                        self.waiting.add(job_id)
                        log.info(
                            "waiting for the client to re-seal the dataset to this miner", extra={"job_id": job_id}
                        )
                    return None
                raw = open_dataset(self.link.key, self._wait(self.link.get_blob(resealed, job_id)), spec.dataset_hash)
            else:
                raw = self._wait(fetch_dataset(self.link, spec, job_id))
            dataset = load_dataset(spec.dataset_format, raw)
        except (AitbcError, RemoteError, OSError, msgspec.ValidationError, KeyError, TypeError) as exc:
            log.warning("training job not available for its audit", extra={"job_id": job_id, "error": str(exc)})
            return None
        self.jobs[job_id] = TrainingJob(spec, dataset, commitment)
        return self.jobs[job_id]

    def state(self, job_id: str, state_hash: str) -> bytes | None:
        """A committed checkpoint's bytes: from this miner's store, else the blob its miner uploaded."""
        job = self.job(job_id)
        if job is None or state_hash not in job.commitment.checkpoint_hashes:
            return None
        index = job.commitment.checkpoint_hashes.index(state_hash)
        steps = checkpoint_steps(job.spec)
        own = self.store.get(job_id, steps[index]) if index < len(steps) else None
        if own is not None:
            return own
        output = self.outputs.get(job_id)
        if output is None or index >= len(output.checkpoint_blobs):
            return None
        try:
            return self._wait(self.link.get_blob(output.checkpoint_blobs[index], job_id))
        except (RemoteError, OSError) as exc:
            log.warning("checkpoint blob not fetched", extra={"job_id": job_id, "error": str(exc)})
            return None


def start_training_auditor(
    key: KeyPair, link: CoordinatorLink, node_url: str, jobs: TrainingJobs, loop: asyncio.AbstractEventLoop
) -> TrainingAuditor:
    """The training-audit loop of a bonded training miner: its runs' checkpoints and the coordinator's blobs
    as sources; a miner faking checkpoints (``training_skip_steps``, tests only) replays its own jobs the
    same way it ran them."""
    sources = TrainingSources(jobs.store, link, loop)
    skip = jobs.skip_steps

    def own_skips(job_id: str) -> frozenset[int]:
        return skip if jobs.store.commitment(job_id) is not None else frozenset()

    return TrainingAuditor(key, node_url, RuntimeRunner(sources.job, sources.state, own_skips))
