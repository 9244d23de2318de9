"""Training audits on the real training runtime (``aitbc.training``): a small logistic regression on
scikit-learn's digits, the miners' ``RuntimeRunner`` checkpoint stores wired to one another, and a cheating
miner that leaves steps out of its run (its runner leaves the same steps out of its replays)."""

from __future__ import annotations

import io

import numpy as np
from sklearn.datasets import load_digits

from aitbc.miner.training_runner import RuntimeRunner, TrainingJob
from aitbc.protocol.crypto import sha256
from aitbc.protocol.training import TrainingCommitment, TrainingSpec, compute_spec_hash
from aitbc.training import (
    Dataset,
    checkpoint_steps,
    compute_state_hash,
    deterministic,
    dump_state,
    init_state,
    load_dataset,
    runtime_build,
    train_step,
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


def run_with_skips(
    spec: TrainingSpec, dataset: Dataset, skip: frozenset[int]
) -> tuple[TrainingCommitment, dict[int, bytes]]:
    """A run that leaves out the ``skip`` steps (the counter moves on, the weights do not): a faked checkpoint."""
    marks, hashes, kept = set(checkpoint_steps(spec)), [], {}
    with deterministic():
        state = init_state(spec, dataset)
        for step in range(spec.steps + 1):
            if step in skip:
                state.step = step
            elif step:
                train_step(spec, dataset, state, step)
            if step in marks:
                hashes.append(compute_state_hash(state))
                kept[step] = dump_state(state)
    commitment = TrainingCommitment(
        spec_hash=compute_spec_hash(spec), dataset_hash=spec.dataset_hash, runtime_build=runtime_build(),
        steps=spec.steps, checkpoint_every=spec.checkpoint_every, checkpoint_hashes=hashes,
    )  # fmt: skip
    return commitment, kept


class RuntimeWorld:
    """Four miners' runners; each fetches committed checkpoints it lacks from the others' stores."""

    def __init__(self, spec: TrainingSpec, dataset: Dataset, cheats: dict[str, frozenset[int]]) -> None:
        self.spec, self.dataset = spec, dataset
        self.jobs: dict[str, TrainingJob] = {}
        self.runners = [
            RuntimeRunner(self.jobs.get, self.fetch, skip_steps=cheats if i == 0 else None) for i in range(4)
        ]

    def fetch(self, job_id: str, state_hash: str) -> bytes | None:
        """A committed checkpoint from its miner's store (as the coordinator keeps them with the job's result);
        states inside a segment are not served: a referee replays to them from the checkpoint before."""
        job = self.jobs.get(job_id)
        if job is None or state_hash not in job.commitment.checkpoint_hashes:
            return None
        return next((r.states[state_hash] for r in self.runners if state_hash in r.states), None)

    def train(self, job_id: str, miner: int, skip: frozenset[int]) -> TrainingCommitment:
        commitment, checkpoints = run_with_skips(self.spec, self.dataset, skip)
        self.runners[miner].keep_checkpoints(checkpoints, commitment)
        self.jobs[job_id] = TrainingJob(self.spec, self.dataset, commitment)
        return commitment
