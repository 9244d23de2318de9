"""Deterministic training: a step depends only on the spec, the dataset, the state before it and its number.

Every run and every replay goes through ``deterministic()``: torch's deterministic algorithms, one CPU
thread (``TRAINING_THREADS``), and no global random state. The samples of step ``s`` (1-based) are positions
``(s-1)·B … s·B-1`` of an endless sequence of epochs, each epoch a permutation of the dataset drawn from
``(seed, epoch)``; dropout draws from a generator seeded with ``(seed, s)``. So any step can be replayed on
its own from the state before it (``replay_segment``), and two honest miners of the same ``runtime_build()``
reach bit-identical states.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

import torch

from aitbc.protocol.training import (
    TrainingCommitment,
    TrainingSpec,
    check_training_spec,
    compute_spec_hash,
)
from aitbc.training.data import Dataset
from aitbc.training.models import get_model_def
from aitbc.training.state import State, compute_state_hash, dump_state, dump_weights, restore_state

RUNTIME_VERSION: Final = "1"
TRAINING_THREADS: Final = 1
_LOCK = threading.Lock()

ProgressCallback = Callable[[int, float], None]
"""Called after every step with (step, loss)."""
CheckpointCallback = Callable[[int, bytes], None]
"""Called with (step, state bytes) at every checkpoint, ``c_0`` included."""


def runtime_build() -> str:
    """Names what must match for bit-identical results: this runtime, torch, the CPU kernels, the threads."""
    capability = torch.backends.cpu.get_cpu_capability()
    return f"aitbc-training/{RUNTIME_VERSION} torch/{torch.__version__} cpu/{capability} threads/{TRAINING_THREADS}"


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """One run at a time per process, with deterministic kernels on one thread; restores the settings after."""
    with _LOCK:
        threads = torch.get_num_threads()
        was_deterministic = torch.are_deterministic_algorithms_enabled()
        torch.set_num_threads(TRAINING_THREADS)
        torch.use_deterministic_algorithms(True)
        try:
            with torch.random.fork_rng(devices=[]):
                yield
        finally:
            torch.use_deterministic_algorithms(was_deterministic)
            torch.set_num_threads(threads)


def derive_seed(seed: int, purpose: str, n: int) -> int:
    digest = hashlib.sha256(f"aitbc-training:{seed}:{purpose}:{n}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@functools.lru_cache(maxsize=8)
def _epoch_order(seed: int, epoch: int, size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(derive_seed(seed, "order", epoch))
    return torch.randperm(size, generator=generator)


def batch_indices(spec: TrainingSpec, size: int, step: int) -> torch.Tensor:
    """The dataset rows step ``step`` (1-based) trains on."""
    first = (step - 1) * spec.batch_size
    positions = range(first, first + spec.batch_size)
    return torch.stack([_epoch_order(spec.seed, p // size, size)[p % size] for p in positions])


def _make_optimiser(spec: TrainingSpec, model: torch.nn.Module) -> torch.optim.Optimizer:
    lr = spec.lr_micro / 1_000_000
    params = list(model.parameters())
    if spec.optimiser == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, foreach=False)
    if spec.optimiser == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.01, foreach=False)
    return torch.optim.Adam(params, lr=lr, foreach=False)


def init_state(spec: TrainingSpec, dataset: Dataset) -> State:
    """The state before step 1: the model's initial weights (drawn from the seed) and no optimiser moments.

    Call it inside ``deterministic()``.
    """
    check_training_spec(spec)
    torch.manual_seed(derive_seed(spec.seed, "init", 0))
    model = get_model_def(spec).build(dataset)
    model.train()
    return State(model=model, optimiser=_make_optimiser(spec, model), step=0)


def load_state(spec: TrainingSpec, dataset: Dataset, data: bytes) -> State:
    """A state from ``dump_state`` bytes (call inside ``deterministic()``)."""
    state = init_state(spec, dataset)
    restore_state(state, data)
    return state


def train_step(spec: TrainingSpec, dataset: Dataset, state: State, step: int) -> float:
    """Apply step ``step`` (which must be ``state.step + 1``) to ``state`` in place; returns its loss."""
    if step != state.step + 1:
        raise ValueError(f"step {step} does not follow the state's step {state.step}")
    torch.manual_seed(derive_seed(spec.seed, "step", step))
    idx = batch_indices(spec, dataset.size, step)
    state.optimiser.zero_grad(set_to_none=True)
    loss = get_model_def(spec).loss(state.model, dataset, idx)
    loss.backward()  # type: ignore[no-untyped-call]
    state.optimiser.step()
    state.step = step
    return float(loss.detach().item())


@dataclass
class TrainingResult:
    weights: bytes
    """The final model weights (safetensors)."""
    losses: list[float]
    """The loss of every step, in order."""
    commitment: TrainingCommitment
    checkpoints: dict[int, bytes] = field(default_factory=dict)
    """State bytes by step at every checkpoint (empty when a checkpoint callback took them)."""


def checkpoint_steps(spec: TrainingSpec) -> list[int]:
    """The steps a commitment's checkpoints are taken at: 0, k, 2k, … and the last step."""
    steps = list(range(0, spec.steps, spec.checkpoint_every))
    return [*steps, spec.steps]


def run_training(
    spec: TrainingSpec,
    dataset: Dataset,
    progress_cb: ProgressCallback | None = None,
    checkpoint_cb: CheckpointCallback | None = None,
) -> TrainingResult:
    """Run the whole spec; the commitment holds the state hash at every checkpoint step."""
    losses: list[float] = []
    hashes: list[str] = []
    kept: dict[int, bytes] = {}
    marks = set(checkpoint_steps(spec))
    with deterministic():
        state = init_state(spec, dataset)
        for step in range(spec.steps + 1):
            if step:
                losses.append(train_step(spec, dataset, state, step))
                if progress_cb is not None:
                    progress_cb(step, losses[-1])
            if step in marks:
                hashes.append(compute_state_hash(state))
                data = dump_state(state)
                if checkpoint_cb is not None:
                    checkpoint_cb(step, data)
                else:
                    kept[step] = data
        weights = dump_weights(state.model)
    commitment = TrainingCommitment(
        spec_hash=compute_spec_hash(spec),
        dataset_hash=spec.dataset_hash,
        runtime_build=runtime_build(),
        steps=spec.steps,
        checkpoint_every=spec.checkpoint_every,
        checkpoint_hashes=hashes,
    )
    return TrainingResult(weights=weights, losses=losses, commitment=commitment, checkpoints=kept)


def replay_segment(
    spec: TrainingSpec, dataset: Dataset, start_state: bytes, start_step: int, end_step: int
) -> list[str]:
    """State hashes from ``start_step`` to ``end_step``: the start state's first, then one after each step."""
    if not 0 <= start_step <= end_step <= spec.steps:
        raise ValueError(f"segment {start_step}..{end_step} is outside the run's 0..{spec.steps} steps")
    with deterministic():
        state = load_state(spec, dataset, start_state)
        if state.step != start_step:
            raise ValueError(f"the start state is at step {state.step}, not {start_step}")
        hashes = [compute_state_hash(state)]
        for step in range(start_step + 1, end_step + 1):
            train_step(spec, dataset, state, step)
            hashes.append(compute_state_hash(state))
    return hashes
