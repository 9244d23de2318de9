"""Thread, OpenMP and GPU choices of the builtin backend (pure rules), stop-string handling and
Gemma's turn format."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitbc.miner.backends.llama_batch import split_stop
from aitbc.miner.backends.tuning import (
    ALL_LAYERS,
    DEFAULT_SPINCOUNT,
    ThreadTuner,
    apply_openmp_env,
    compute_gpu_layers,
    compute_openmp_env,
    compute_thread_candidates,
)
from aitbc.miner.backends.weights import render_gemma_turns


def test_openmp_env_bounds_the_spin_unless_the_operator_chose() -> None:
    assert compute_openmp_env({}) == {"GOMP_SPINCOUNT": DEFAULT_SPINCOUNT}
    assert compute_openmp_env({}, "5000") == {"GOMP_SPINCOUNT": "5000"}
    assert compute_openmp_env({"OMP_WAIT_POLICY": "PASSIVE"}) == {}
    assert compute_openmp_env({"GOMP_SPINCOUNT": "1"}, "5000") == {}
    env: dict[str, str] = {"PATH": "/bin"}
    assert apply_openmp_env(env, "300") == {"GOMP_SPINCOUNT": "300"}
    assert env == {"PATH": "/bin", "GOMP_SPINCOUNT": "300"}
    assert apply_openmp_env(env, "5") == {}  # already set: left alone
    measured: dict[str, str] = {}
    assert apply_openmp_env(measured) == {"GOMP_SPINCOUNT": DEFAULT_SPINCOUNT}  # however busy the machine is


def test_thread_candidates() -> None:
    assert compute_thread_candidates(None, 2) == (2, 1)
    assert compute_thread_candidates(None, 1) == (1,)
    assert compute_thread_candidates(None, 16) == (16, 8, 1)
    assert compute_thread_candidates(3, 2) == (3,)  # a fixed count is taken as given
    with pytest.raises(ValueError):
        compute_thread_candidates(0, 2)


def test_gpu_layers_all_on_a_gpu_build_none_on_cpu_and_the_setting_wins() -> None:
    assert compute_gpu_layers(None, supports_gpu_offload=True) == ALL_LAYERS == -1
    assert compute_gpu_layers(None, supports_gpu_offload=False) == 0
    assert compute_gpu_layers(0, supports_gpu_offload=True) == 0
    assert compute_gpu_layers(12, supports_gpu_offload=False) == 12
    with pytest.raises(ValueError):
        compute_gpu_layers(-2, supports_gpu_offload=True)


def drive(tuner: ThreadTuner, shape: int, cost: dict[int, float], steps: int) -> list[int]:
    used = []
    for _ in range(steps):
        threads = tuner.choose(shape)
        used.append(threads)
        tuner.record(shape, threads, cost[threads])
    return used


def test_tuner_keeps_the_faster_count_and_follows_a_change_of_load() -> None:
    tuner = ThreadTuner((2, 1), probe_every=20, probe_steps=4)
    idle = {2: 0.011, 1: 0.017}  # 2 threads faster on a free machine
    used = drive(tuner, 1, idle, 200)
    assert tuner.best(1) == 2
    assert used.count(2) > 0.8 * len(used)  # probes of 1 thread are a small share
    busy = {2: 0.250, 1: 0.020}  # another process holds a core: 2 threads collapse
    used = drive(tuner, 1, busy, 60)
    assert tuner.best(1) == 1
    assert used[-20:].count(1) >= 16  # not stuck on the slow count
    drive(tuner, 1, idle, 200)
    assert tuner.best(1) == 2  # back when the core is free again


def test_tuner_probes_at_once_when_the_current_count_collapses() -> None:
    tuner = ThreadTuner((2, 1), probe_every=1000, probe_steps=4)
    drive(tuner, 1, {2: 0.011, 1: 0.017}, 100)
    assert tuner.best(1) == 2
    used = drive(tuner, 1, {2: 0.120, 1: 0.020}, 30)  # a core taken: 2 threads collapse
    assert tuner.best(1) == 1
    assert used[-10:] == [1] * 10  # within ~12 steps, not after probe_every (1000)
    steady = ThreadTuner((2, 1), probe_every=1000, probe_steps=4)
    drive(steady, 1, {2: 0.011, 1: 0.017}, 100)
    used = drive(steady, 1, {2: 0.015, 1: 0.017}, 200)  # slower, but not a collapse: no extra probes
    assert used.count(1) == 0


def test_tuner_backs_off_probing_a_count_that_keeps_losing_and_cuts_a_collapsed_probe_short() -> None:
    tuner = ThreadTuner((2, 1), probe_every=24, probe_steps=4, max_backoff=8)
    busy = {2: 0.250, 1: 0.020}  # one core taken for good: 2 threads collapse
    used = drive(tuner, 1, busy, 3000)
    assert tuner.best(1) == 1
    late = used[1000:]
    # backed off to one probe per 24 x 8 steps, each cut after its first collapsed step
    assert late.count(2) <= len(late) // (24 * 8) + 1
    assert all(a != 2 or b != 2 for a, b in itertools.pairwise(late)), "a probe ran past a collapse"
    used = drive(tuner, 1, {2: 0.011, 1: 0.017}, 24 * 8 + 40)  # the core is free again
    assert tuner.best(1) == 2 and used[-20:] == [2] * 20, "found again within one backed-off interval"


def test_tuner_needs_a_clear_win_to_switch_and_keeps_shapes_apart() -> None:
    tuner = ThreadTuner((2, 1), probe_every=10, probe_steps=3, margin=0.9)
    drive(tuner, 1, {2: 0.010, 1: 0.0097}, 100)  # 3 % faster: noise, not a reason to flap
    assert tuner.best(1) == 2
    drive(tuner, 4, {2: 0.030, 1: 0.020}, 100)
    assert (tuner.best(1), tuner.best(4)) == (2, 1)
    fixed = ThreadTuner((3,))
    assert drive(fixed, 1, {3: 0.01}, 5) == [3] * 5
    with pytest.raises(ValueError):
        ThreadTuner(())


def test_split_stop_cuts_at_the_first_stop_and_holds_back_a_partial_one() -> None:
    assert split_stop("Hello. World", ["."]) == ("Hello", True, 5)
    assert split_stop("abc<|im", ["<|im_end|>"]) == ("abc<|im", False, 3)
    assert split_stop("abc", ["<|im_end|>"]) == ("abc", False, 3)
    assert split_stop("a, b. c", [".", ","]) == ("a", True, 1)
    assert split_stop("text", []) == ("text", False, 4)


@given(st.text(max_size=40), st.lists(st.text(min_size=1, max_size=5), max_size=3))
def test_split_stop_never_emits_a_stop_string(text: str, stops: list[str]) -> None:
    cut, stopped, safe = split_stop(text, stops)
    assert text.startswith(cut) and 0 <= safe <= len(cut)
    if not stopped:
        assert cut == text and not any(s in text for s in stops)
    emitted = cut[:safe]
    assert not any(s in emitted for s in stops)


def test_gemma_turns() -> None:
    assert render_gemma_turns([{"role": "user", "content": "Hi"}]) == (
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    )
    turns = render_gemma_turns(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
        ]
    )
    assert turns == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    )
