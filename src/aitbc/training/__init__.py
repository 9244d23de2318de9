"""Deterministic training on the CPU for ``training`` jobs (issue 22; docs/training.md).

A pure runtime: no I/O besides the bytes it is given. The miner's ``training`` backend runs it, auditors and
referees replay segments and single steps of it (``replay_segment``), and the commitment it builds is what a
training receipt's ``output_hash`` commits to (``aitbc.protocol.training``).
"""

from aitbc.training.data import Dataset, PairData, TableData, load_dataset
from aitbc.training.models import REGISTRY
from aitbc.training.run import (
    RUNTIME_VERSION,
    TrainingResult,
    checkpoint_steps,
    deterministic,
    init_state,
    load_state,
    replay_segment,
    run_training,
    runtime_build,
    train_step,
)
from aitbc.training.state import State, compute_state_hash, dump_state, dump_weights

__all__ = [
    "REGISTRY",
    "RUNTIME_VERSION",
    "Dataset",
    "PairData",
    "State",
    "TableData",
    "TrainingResult",
    "checkpoint_steps",
    "compute_state_hash",
    "deterministic",
    "dump_state",
    "dump_weights",
    "init_state",
    "load_dataset",
    "load_state",
    "replay_segment",
    "run_training",
    "runtime_build",
    "train_step",
]
