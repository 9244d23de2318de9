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
from aitbc.protocol.training import TrainingCommitment, TrainingSpec
from aitbc.training import Dataset, State, compute_state_hash, deterministic, dump_state, load_state, train_step


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
        skip_steps: dict[str, frozenset[int]] | None = None,
    ) -> None:
        self.jobs = jobs
        self.peers = peers
        self.skip_steps = skip_steps or {}
        """TESTS ONLY: steps this miner's runtime leaves out, by job (a miner faking checkpoints)."""
        self.states: dict[str, bytes] = {}
        self.derived: dict[str, tuple[str, int, str]] = {}
        """State hash → (job id, step, hash of the stored state it was replayed from)."""
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
        _, step, start_hash = found
        with deterministic():
            state = load_state(job.spec, job.dataset, self.states[start_hash])
            self._advance(job_id, job, state, step)
            return dump_state(state)

    # -- SegmentRunner -------------------------------------------------------------------------------------
    def commitment(self, job_id: str) -> TrainingCommitment | None:
        job = self.jobs(job_id)
        return None if job is None else job.commitment

    def replay(self, job_id: str, start_step: int, end_step: int, start_hash: str) -> list[str] | None:
        job = self.jobs(job_id)
        if job is None:
            return None
        with deterministic():
            state = self._state_at(job_id, job, start_step, start_hash)
            if state is None:
                return None
            hashes = [start_hash]
            for step in range(start_step + 1, end_step + 1):
                self._advance(job_id, job, state, step)
                hashes.append(compute_state_hash(state))
                self.derived.setdefault(hashes[-1], (job_id, step, start_hash))
        self.steps_replayed += end_step - start_step
        return hashes

    def _state_at(self, job_id: str, job: TrainingJob, step: int, state_hash: str) -> State | None:
        """The state with this hash at ``step``: from a store (this miner's, else a peer's), or replayed from
        the last committed checkpoint before it (a referee's agreed state inside a segment). Never a state
        whose hash differs."""
        data = self.get_state(job_id, state_hash)
        if data is None and self.peers is not None:
            data = self.peers(job_id, state_hash)
        if data is not None:
            try:
                state = load_state(job.spec, job.dataset, data)
            except InvalidInput:
                return None
            if state.step != step or compute_state_hash(state) != state_hash:
                return None
            self.states[state_hash] = data
            return state
        every = job.commitment.checkpoint_every
        if every == 0 or step % every == 0:
            return None  # a checkpoint nobody serves
        index = step // every
        base = self._state_at(job_id, job, index * every, job.commitment.checkpoint_hashes[index])
        if base is None:
            return None
        self._advance(job_id, job, base, step)
        self.steps_replayed += step - index * every
        return base if compute_state_hash(base) == state_hash else None

    def _advance(self, job_id: str, job: TrainingJob, state: State, to_step: int) -> None:
        skip = self.skip_steps.get(job_id, frozenset())
        for step in range(state.step + 1, to_step + 1):
            if step in skip:
                state.step = step  # the faked step: the counter moves, the weights do not
            else:
                train_step(job.spec, job.dataset, state, step)
