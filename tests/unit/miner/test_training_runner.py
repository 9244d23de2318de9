"""The training runtime as the audit loop's runner (``aitbc.miner.training_runner``): replays match the run,
a state that does not hash to the agreed one is never replayed from, states inside a segment are re-derived
from the committed checkpoint, and the test-only faked run commits to what its replays reproduce."""

from __future__ import annotations

from aitbc.miner.training_runner import RuntimeRunner, TrainingJob, run_faking
from aitbc.training import run_training
from support.runtime_training import digits, digits_spec

RAW, DATASET = digits()
SPEC = digits_spec(RAW, 12, 4)


def test_an_honest_faked_run_is_run_training_and_a_replay_matches_its_checkpoints() -> None:
    honest = run_training(SPEC, DATASET)
    same = run_faking(SPEC, DATASET, frozenset())
    assert same.commitment == honest.commitment and same.weights == honest.weights
    job = TrainingJob(SPEC, DATASET, honest.commitment)
    c = honest.commitment.checkpoint_hashes
    runner = RuntimeRunner({"j": job}.get, lambda job_id, h: honest.checkpoints[c.index(h) * 4] if h in c else None)
    hashes = runner.replay("j", 4, 8, c[1])
    assert hashes is not None and hashes[0] == c[1] and hashes[-1] == c[2] and len(hashes) == 5
    # a state inside the segment nobody serves: replayed from c_1, checked against the agreed hash
    fresh = RuntimeRunner({"j": job}.get, lambda job_id, h: honest.checkpoints[c.index(h) * 4] if h in c else None)
    assert fresh.replay("j", 6, 7, hashes[2]) == hashes[2:4] and fresh.steps_replayed == 2 + 1
    assert fresh.get_state("j", hashes[3]) is not None  # and it can serve what it passed through


def test_a_state_that_does_not_hash_to_the_agreed_one_is_refused() -> None:
    honest = run_training(SPEC, DATASET)
    faked = run_faking(SPEC, DATASET, frozenset({2}))
    assert faked.commitment.checkpoint_hashes[0] == honest.commitment.checkpoint_hashes[0]
    assert faked.commitment.checkpoint_hashes[1] != honest.commitment.checkpoint_hashes[1]
    job = TrainingJob(SPEC, DATASET, honest.commitment)
    wrong = RuntimeRunner({"j": job}.get, lambda job_id, h: faked.checkpoints[4])  # another state's bytes
    assert wrong.replay("j", 4, 8, honest.commitment.checkpoint_hashes[1]) is None
    assert RuntimeRunner({"j": job}.get, lambda job_id, h: b"not a state").replay("j", 4, 8, "00" * 32) is None
    # the cheater's own replays leave out the same step, so they reproduce its commitment
    cheat_job = TrainingJob(SPEC, DATASET, faked.commitment)
    cheater = RuntimeRunner({"j": cheat_job}.get, lambda job_id, h: faked.checkpoints[0], lambda j: frozenset({2}))
    replayed = cheater.replay("j", 0, 4, faked.commitment.checkpoint_hashes[0])
    assert replayed is not None and replayed[-1] == faked.commitment.checkpoint_hashes[1]
