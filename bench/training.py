"""Verification cost of a training job as a share of its training cost, on the real runtime (``aitbc.training``).

An audit replays one segment of ``k`` steps out of a run of ``steps``: nominally ``k / steps`` of the training
compute; measured, it also loads the segment's start state and hashes every replayed state. Printed:

1. for an MLP on scikit-learn's digits, per segment length ``k``: the run's time (checkpoints, hashes and
   dumps included), the replay of one middle segment, its nominal share ``k / steps`` and its measured share
   (higher: the auditor hashes the state after every step, for the dispute's Merkle root);
2. what committing costs the miner: the same run with no checkpoint hashed or dumped (plain training loop) against
   the run with a checkpoint every ``k``;
3. with ``--minilm``: the same for a fine-tune of the packaged all-MiniLM-L6-v2 on sentence pairs (one segment
   and one step, what a referee recomputes).

    .venv/bin/python bench/training.py [--steps 512] [--minilm]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from aitbc.protocol.training import TrainingSpec
from aitbc.training import (
    Dataset,
    deterministic,
    init_state,
    load_dataset,
    replay_segment,
    run_training,
    runtime_build,
    train_step,
)
from support.training_data import digits_npz, make_spec, pairs_jsonl

T = TypeVar("T")


TRIALS = 3


def _timed(fn: Callable[..., T], *args: object) -> tuple[float, T]:
    """The least of ``TRIALS`` timings in CPU seconds of this process (the runtime uses one thread; CPU time is
    what other processes on a shared machine disturb least), and the value."""
    best, value = float("inf"), None
    for _ in range(TRIALS):
        started = time.process_time()
        value = fn(*args)
        best = min(best, time.process_time() - started)
    assert value is not None
    return best, value


def plain_run(spec: TrainingSpec, dataset: Dataset) -> bool:
    """The training loop alone: no checkpoint hashed or dumped."""
    with deterministic():
        state = init_state(spec, dataset)
        for step in range(1, spec.steps + 1):
            train_step(spec, dataset, state, step)
    return True


def segments(steps: int) -> None:
    raw = digits_npz(1797)
    dataset = load_dataset("npz", raw)
    run_training(make_spec(raw, "npz", steps=4, checkpoint_every=2), dataset)  # warm-up
    print(f"\nmlp on digits (1,797 samples), batch 32, adam, {steps} steps; CPU seconds, least of {TRIALS} runs each")
    print("{:>6} {:>9} {:>11} {:>9} {:>9} {:>11}".format("k", "run s", "segment s", "nominal", "measured", "commit +"))
    for k in (steps // 64, steps // 16, steps // 4):
        spec = make_spec(raw, "npz", model="mlp", steps=steps, batch_size=32, checkpoint_every=k)
        plain_s, _ = _timed(plain_run, spec, dataset)
        run_s, result = _timed(run_training, spec, dataset)
        start = k * (steps // k // 2)
        segment_s, _ = _timed(replay_segment, spec, dataset, result.checkpoints[start], start, start + k)
        print(
            f"{k:>6} {run_s:>9.2f} {segment_s:>11.3f} {k / steps:>9.2%} {segment_s / run_s:>9.2%} "
            f"{run_s / plain_s - 1:>+11.1%}"
        )


def minilm() -> None:
    raw = pairs_jsonl()
    dataset = load_dataset("jsonl", raw)
    spec = msgspec.structs.replace(
        make_spec(raw, "jsonl", model="minilm-pairs", steps=16, checkpoint_every=4, batch_size=4, lr_micro=40),
        optimiser="adamw",
    )
    run_s, result = _timed(run_training, spec, dataset)
    segment_s, _ = _timed(replay_segment, spec, dataset, result.checkpoints[8], 8, 12)
    step_s, _ = _timed(replay_segment, spec, dataset, result.checkpoints[8], 8, 9)
    print("\nminilm-pairs (all-MiniLM-L6-v2, 22.7 M parameters), 16 steps of 4 pairs, adamw, k = 4 (a replay")
    print("  includes loading the encoder and a 271 MB start state, so short segments cost more than k / steps)")
    print(f"  run {run_s:.2f} s; one segment {segment_s:.2f} s ({segment_s / run_s:.1%}, nominal 25%);")
    state_mb = len(result.checkpoints[8]) / 1e6
    print(f"  one step (a referee) {step_s:.2f} s ({step_s / run_s:.1%}); a state is {state_mb:.0f} MB")
    losses = result.losses
    print(f"  loss {losses[0]:.4f} -> {losses[-1]:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2048)
    parser.add_argument("--minilm", action="store_true", help="also measure the MiniLM fine-tune")
    args = parser.parse_args()
    print(f"runtime {runtime_build()}; load average {os.getloadavg()[0]:.2f}")
    segments(args.steps)
    if args.minilm:
        minilm()


if __name__ == "__main__":
    main()
