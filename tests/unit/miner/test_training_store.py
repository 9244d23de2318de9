"""The miner's training checkpoint store: states by job and step, the spec and commitment, pruning."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aitbc.miner.backends.training import CheckpointStore, progress_line
from aitbc.training import load_dataset, run_training
from support.training_data import iris_csv, make_spec


def test_store_keeps_what_a_run_commits_to(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "training")
    spec = make_spec(iris_csv(), "csv", model="logreg", steps=8, checkpoint_every=4)
    result = run_training(spec, load_dataset("csv", iris_csv()), checkpoint_cb=lambda s, b: store.put("job_1", s, b))
    assert result.checkpoints == {}
    store.put_meta("job_1", spec, result.commitment)
    assert store.spec("job_1") == spec and store.commitment("job_1") == result.commitment
    assert store.get("job_1", 4) is not None and store.get("job_1", 5) is None and store.get("job_2", 4) is None
    assert store.commitment("job_2") is None
    with pytest.raises(ValueError, match="bad job id"):
        store.get("../x", 0)


def test_prune_drops_jobs_past_the_window(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "training")
    assert store.prune(10.0) == 0
    store.put("old", 0, b"a")
    store.put("new", 0, b"b")
    old = tmp_path / "training" / "old"
    os.utime(old, (1000.0, 1000.0))
    assert store.prune(3600.0) == 1
    assert store.get("old", 0) is None and store.get("new", 0) == b"b"


def test_progress_line_is_one_json_line() -> None:
    assert progress_line(3, 0.5) == '{"step": 3, "loss": 0.5}\n'
