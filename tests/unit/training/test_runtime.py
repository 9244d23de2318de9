"""The training runtime is deterministic: reruns, replays of any segment, and dumps agree bit for bit."""

from __future__ import annotations

import pytest

from aitbc.protocol.training import TrainingSpec, compute_spec_hash
from aitbc.training import (
    checkpoint_steps,
    compute_state_hash,
    deterministic,
    dump_state,
    init_state,
    load_dataset,
    load_state,
    replay_segment,
    run_training,
    train_step,
)
from aitbc.training.data import Dataset
from support.training_data import digits_npz, iris_csv, make_spec

DIGITS = digits_npz()
IRIS = iris_csv()
CASES = [
    ("logreg", "npz", DIGITS, "sgd"),
    ("mlp", "npz", DIGITS, "adam"),
    ("cnn", "npz", DIGITS, "adamw"),
    ("logreg", "csv", IRIS, "adam"),
    ("mlp", "csv", IRIS, "sgd"),
]


def _spec_and_data(model: str, fmt: str, data: bytes, optimiser: str) -> tuple[TrainingSpec, Dataset]:
    spec = make_spec(data, fmt, model=model, optimiser=optimiser, steps=14, checkpoint_every=4)
    return spec, load_dataset(fmt, data)


@pytest.mark.parametrize(("model", "fmt", "data", "optimiser"), CASES)
def test_same_spec_twice_gives_identical_weights(model: str, fmt: str, data: bytes, optimiser: str) -> None:
    spec, dataset = _spec_and_data(model, fmt, data, optimiser)
    first = run_training(spec, dataset)
    second = run_training(spec, load_dataset(fmt, data))
    assert first.weights == second.weights
    assert first.commitment == second.commitment
    assert first.losses == second.losses
    assert len(first.losses) == 14
    assert sorted(first.checkpoints) == checkpoint_steps(spec) == [0, 4, 8, 12, 14]
    assert first.commitment.spec_hash == compute_spec_hash(spec)
    assert len(set(first.commitment.checkpoint_hashes)) == 5


@pytest.mark.parametrize(("model", "fmt", "data", "optimiser"), CASES)
def test_middle_segment_replays_to_its_checkpoints(model: str, fmt: str, data: bytes, optimiser: str) -> None:
    spec, dataset = _spec_and_data(model, fmt, data, optimiser)
    result = run_training(spec, dataset)
    hashes = result.commitment.checkpoint_hashes
    replayed = replay_segment(spec, dataset, result.checkpoints[4], 4, 8)
    assert len(replayed) == 5
    assert (replayed[0], replayed[-1]) == (hashes[1], hashes[2])
    # the short last segment too, and a single step replayed alone
    assert replay_segment(spec, dataset, result.checkpoints[12], 12, 14)[-1] == hashes[4]
    assert replay_segment(spec, dataset, result.checkpoints[4], 4, 5)[1] == replayed[1]


def test_a_skipped_or_changed_step_changes_the_hash() -> None:
    spec, dataset = _spec_and_data("mlp", "npz", DIGITS, "adam")
    result = run_training(spec, dataset)
    with deterministic():
        state = load_state(spec, dataset, result.checkpoints[4])
        train_step(spec, dataset, state, 5)
        after_5 = compute_state_hash(state)
        train_step(spec, dataset, state, 6)
        assert compute_state_hash(state) != after_5
    honest = replay_segment(spec, dataset, result.checkpoints[4], 4, 8)
    assert honest[1] == after_5
    other_seed = run_training(make_spec(DIGITS, "npz", model="mlp", optimiser="adam", steps=14, seed=8), dataset)
    assert other_seed.weights != result.weights
    assert other_seed.commitment.checkpoint_hashes[-1] != result.commitment.checkpoint_hashes[-1]
    one_more = run_training(make_spec(DIGITS, "npz", model="mlp", optimiser="adam", steps=15), dataset)
    assert one_more.commitment.checkpoint_hashes[:4] == result.commitment.checkpoint_hashes[:4]
    assert one_more.commitment.checkpoint_hashes[-1] != result.commitment.checkpoint_hashes[-1]


def test_dump_and_load_keep_the_hash_and_training_learns() -> None:
    spec, dataset = _spec_and_data("cnn", "npz", DIGITS, "adam")
    spec = make_spec(DIGITS, "npz", model="cnn", steps=60, checkpoint_every=20, lr_micro=3000)
    result = run_training(spec, dataset)
    with deterministic():
        for step, data in result.checkpoints.items():
            state = load_state(spec, dataset, data)
            assert state.step == step
            assert compute_state_hash(state) == result.commitment.checkpoint_hashes[step // 20]
            assert dump_state(state) == data
        fresh = init_state(spec, dataset)
        assert compute_state_hash(fresh) == result.commitment.checkpoint_hashes[0]
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < first * 0.5


def test_replay_refuses_a_state_from_another_step() -> None:
    spec, dataset = _spec_and_data("logreg", "csv", IRIS, "sgd")
    result = run_training(spec, dataset)
    with pytest.raises(ValueError, match="step 4"):
        replay_segment(spec, dataset, result.checkpoints[4], 8, 12)
    with pytest.raises(ValueError, match="outside"):
        replay_segment(spec, dataset, result.checkpoints[12], 12, 15)


def test_delivered_weights_are_checked_against_the_committed_final_state() -> None:
    from aitbc.training.state import get_weights_problem

    spec, dataset = _spec_and_data("mlp", "npz", DIGITS, "adam")
    result = run_training(spec, dataset)
    final, final_hash = result.checkpoints[14], result.commitment.checkpoint_hashes[-1]
    assert get_weights_problem(result.weights, final, final_hash) is None
    earlier = run_training(make_spec(DIGITS, "npz", model="mlp", optimiser="adam", steps=13), dataset)
    assert "differs" in (get_weights_problem(earlier.weights, final, final_hash) or "")
    assert "hash" in (get_weights_problem(result.weights, result.checkpoints[12], final_hash) or "")
    assert "safetensors" in (get_weights_problem(b"junk", final, final_hash) or "")
