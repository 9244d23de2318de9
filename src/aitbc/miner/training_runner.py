"""The training runtime as the training-audit loop's ``SegmentRunner``, and the miner's checkpoint store.

A miner keeps the state bytes of every checkpoint of its own runs for the dispute window, and can serve any
state its replays went through: a replayed state is kept as (segment start, step) and re-derived on request,
so a dispute costs memory for the checkpoints only. A start state fetched from another miner is used only
once it loads and hashes to what the chain agreed on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aitbc.protocol.errors import InvalidInput
from aitbc.protocol.training import TrainingCommitment, TrainingSpec, compute_spec_hash
from aitbc.training import (
    Dataset,
    State,
    TrainingResult,
    checkpoint_steps,
    compute_state_hash,
    deterministic,
    dump_state,
    dump_weights,
    init_state,
    load_state,
    runtime_build,
    train_step,
)


@dataclass(frozen=True, slots=True)
class TrainingJob:
    """What replaying a job needs: its spec, its dataset, and the commitment its receipt names."""

    spec: TrainingSpec
    dataset: Dataset
    commitment: TrainingCommitment


JobSource = Callable[[str], "TrainingJob | None"]
StateSource = Callable[[str, str], "bytes | None"]
"""(job id, state hash) → state bytes from another miner's checkpoint store, or None."""


class RuntimeRunner:
    def __init__(
        self,
        jobs: JobSource,
        peers: StateSource | None = None,
        skip_steps: Callable[[str], frozenset[int]] | None = None,
    ) -> None:
        self.jobs = jobs
        self.peers = peers
        self.skip_steps = skip_steps or (lambda job_id: frozenset())
        """TESTS ONLY: the steps this miner's runtime leaves out of a job (a miner faking checkpoints)."""
        self.states: dict[str, bytes] = {}
        self.derived: dict[str, tuple[str, int, int, str]] = {}
        """State hash → (job id, its step, the step and hash of the stored state it was replayed from)."""
        self.steps_replayed = 0

    # -- the checkpoint store ------------------------------------------------------------------------------
    def keep_checkpoints(self, checkpoints: dict[int, bytes], commitment: TrainingCommitment) -> None:
        """Keep a run's checkpoint states (``TrainingResult.checkpoints``) under the commitment's hashes."""
        steps = sorted(checkpoints)
        for step, state_hash in zip(steps, commitment.checkpoint_hashes, strict=False):
            self.states[state_hash] = checkpoints[step]

    def get_state(self, job_id: str, state_hash: str) -> bytes | None:
        """The state with this hash, if this miner had it or passed through it replaying ``job_id``."""
        if state_hash in self.states:
            return self.states[state_hash]
        found = self.derived.get(state_hash)
        job = self.jobs(job_id)
        if found is None or found[0] != job_id or job is None:
            return None
        _, step, _base_step, base_hash = found
        with deterministic():
            state = load_state(job.spec, job.dataset, self.states[base_hash])
            self._advance(job_id, job, state, step)
            return dump_state(state)

    def _fetch(self, job_id: str, state_hash: str) -> bytes | None:
        if state_hash in self.states:
            return self.states[state_hash]
        return None if self.peers is None else self.peers(job_id, state_hash)

    # -- SegmentRunner -------------------------------------------------------------------------------------
    def commitment(self, job_id: str) -> TrainingCommitment | None:
        job = self.jobs(job_id)
        return None if job is None else job.commitment

    def replay(self, job_id: str, start_step: int, end_step: int, start_hash: str) -> list[str] | None:
        job = self.jobs(job_id)
        if job is None:
            return None
        # Start from the state itself (a store), else from the one this miner reached it from, else from the
        # committed checkpoint before it (a referee's agreed state inside a segment); fetched before locking
        base_step, base_hash = start_step, start_hash
        data = self._fetch(job_id, start_hash)
        if data is None:
            found, every = self.derived.get(start_hash), job.commitment.checkpoint_every
            if found is not None and found[0] == job_id:
                base_step, base_hash = found[2], found[3]
            elif every and start_step % every:
                base_step = start_step - start_step % every
                base_hash = job.commitment.checkpoint_hashes[start_step // every]
            else:
                return None  # a checkpoint nobody serves
            data = self._fetch(job_id, base_hash)
            if data is None:
                return None
        with deterministic():
            try:
                state = load_state(job.spec, job.dataset, data)
            except InvalidInput:
                return None
            if state.step != base_step or compute_state_hash(state) != base_hash:
                return None  # never replay from a state that is not the one agreed on
            self.states[base_hash] = data
            self._advance(job_id, job, state, start_step)
            if base_step != start_step and compute_state_hash(state) != start_hash:
                return None
            hashes = [start_hash]
            for step in range(start_step + 1, end_step + 1):
                self._advance(job_id, job, state, step)
                hashes.append(compute_state_hash(state))
                self.derived.setdefault(hashes[-1], (job_id, step, base_step, base_hash))
        self.steps_replayed += end_step - base_step
        return hashes

    def _advance(self, job_id: str, job: TrainingJob, state: State, to_step: int) -> None:
        skip = self.skip_steps(job_id)
        for step in range(state.step + 1, to_step + 1):
            if step in skip:
                state.step = step  # the faked step: the counter moves, the weights do not
            else:
                train_step(job.spec, job.dataset, state, step)


def run_faking(
    spec: TrainingSpec,
    dataset: Dataset,
    skip: frozenset[int],
    progress_cb: Callable[[int, float], None] | None = None,
    checkpoint_cb: Callable[[int, bytes], None] | None = None,
) -> TrainingResult:
    """TESTS ONLY: ``run_training`` leaving out the ``skip`` steps (the step counter moves on, the weights do
    not), committing to the states it reaches: a miner faking its checkpoints, which audits must catch."""
    losses: list[float] = []
    hashes: list[str] = []
    kept: dict[int, bytes] = {}
    marks = set(checkpoint_steps(spec))
    with deterministic():
        state = init_state(spec, dataset)
        for step in range(spec.steps + 1):
            if step in skip:
                state.step = step
                losses.append(losses[-1] if losses else 0.0)
            elif step:
                losses.append(train_step(spec, dataset, state, step))
            if step and progress_cb is not None:
                progress_cb(step, losses[-1])
            if step in marks:
                hashes.append(compute_state_hash(state))
                if checkpoint_cb is not None:
                    checkpoint_cb(step, dump_state(state))
                else:
                    kept[step] = dump_state(state)
        weights = dump_weights(state.model)
    commitment = TrainingCommitment(
        spec_hash=compute_spec_hash(spec), dataset_hash=spec.dataset_hash, runtime_build=runtime_build(),
        steps=spec.steps, checkpoint_every=spec.checkpoint_every, checkpoint_hashes=hashes,
    )  # fmt: skip
    return TrainingResult(weights=weights, losses=losses, commitment=commitment, checkpoints=kept)
