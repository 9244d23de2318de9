"""Training audits on the real training runtime (``aitbc.training``): a small logistic regression on
scikit-learn's digits, the miners' ``RuntimeRunner`` checkpoint stores wired to one another, and a cheating
miner that leaves steps out of its run (its runner leaves the same steps out of its replays)."""

from __future__ import annotations

import io

import numpy as np
from sklearn.datasets import load_digits

from aitbc.miner.training_runner import RuntimeRunner, TrainingJob, run_faking
from aitbc.protocol.crypto import sha256
from aitbc.protocol.training import TrainingCommitment, TrainingSpec
from aitbc.training import (
    Dataset,
    load_dataset,
)


def digits() -> tuple[bytes, Dataset]:
    data = load_digits()
    buffer = io.BytesIO()
    np.savez(buffer, x=data.data.astype("float32") / 16, y=data.target.astype("int64"))
    raw = buffer.getvalue()
    return raw, load_dataset("npz", raw)


def digits_spec(raw: bytes, steps: int, every: int) -> TrainingSpec:
    return TrainingSpec(model="logreg", steps=steps, checkpoint_every=every, batch_size=32, lr_micro=50_000,
                        dataset_hash=sha256(raw).hex(), dataset_format="npz")  # fmt: skip


class RuntimeWorld:
    """Four miners' runners; each fetches committed checkpoints it lacks from the others' stores."""

    def __init__(self, spec: TrainingSpec, dataset: Dataset, cheats: dict[str, frozenset[int]]) -> None:
        self.spec, self.dataset = spec, dataset
        self.jobs: dict[str, TrainingJob] = {}
        self.runners = [
            RuntimeRunner(
                self.jobs.get, self.fetch, skip_steps=(lambda j: cheats.get(j, frozenset())) if i == 0 else None
            )
            for i in range(4)
        ]

    def fetch(self, job_id: str, state_hash: str) -> bytes | None:
        """A committed checkpoint from its miner's store (as the coordinator keeps them with the job's result);
        states inside a segment are not served: a referee replays to them from the checkpoint before."""
        job = self.jobs.get(job_id)
        if job is None or state_hash not in job.commitment.checkpoint_hashes:
            return None
        return next((r.states[state_hash] for r in self.runners if state_hash in r.states), None)

    def train(self, job_id: str, miner: int, skip: frozenset[int]) -> TrainingCommitment:
        result = run_faking(self.spec, self.dataset, skip)  # with no step skipped: run_training's run
        self.runners[miner].keep_checkpoints(result.checkpoints, result.commitment)
        self.jobs[job_id] = TrainingJob(self.spec, self.dataset, result.commitment)
        return result.commitment
