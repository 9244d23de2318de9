"""Datasets parse the same everywhere and bad ones are refused with a clear reason; spec limits hold."""

from __future__ import annotations

import io

import msgspec
import numpy as np
import pytest

from aitbc.protocol import codec
from aitbc.protocol.errors import InvalidInput
from aitbc.protocol.training import MAX_CHECKPOINTS, TrainingSpec, check_training_spec, compute_spec_hash
from aitbc.training import PairData, TableData, init_state, load_dataset
from support.training_data import digits_npz, iris_csv, make_spec, pairs_jsonl


def test_bundled_datasets_parse() -> None:
    iris = load_dataset("csv", iris_csv())
    assert isinstance(iris, TableData)
    assert (iris.size, iris.classes, tuple(iris.features.shape)) == (150, 3, (150, 4))
    digits = load_dataset("npz", digits_npz())
    assert isinstance(digits, TableData)
    assert tuple(digits.features.shape) == (600, 8, 8)
    pairs = load_dataset("jsonl", pairs_jsonl())
    assert isinstance(pairs, PairData)
    assert pairs.size == 8


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


@pytest.mark.parametrize(
    ("fmt", "data", "reason"),
    [
        ("csv", b"1,2,0\n3,4\n", "same length"),
        ("csv", b"1,2,0\n3,x,1\n", "numbers only"),
        ("csv", b"1,2,0.5\n", "integers"),
        ("csv", b"1,nan,0\n", "finite"),
        ("csv", b"\xff\xfe", "UTF-8"),
        ("npz", b"not a zip", "npz"),
        ("npz", _npz(x=np.zeros((3, 2))), "x and y"),
        ("npz", _npz(x=np.zeros((3, 2)), y=np.zeros(4)), "one label per sample"),
        ("jsonl", b'{"a": "x", "b": "y"}\n', "score"),
        ("jsonl", b'{"a": "x", "b": "y", "score": 2}\n', "[-1, 1]"),
        ("jsonl", b"[1, 2]\n", '"a" and "b"'),
        ("jsonl", b"{oops\n", "not JSON"),
        ("parquet", b"", "unknown dataset format"),
    ],
)
def test_bad_datasets_are_refused(fmt: str, data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason.replace("[", r"\[").replace("]", r"\]")):
        load_dataset(fmt, data)


def test_spec_rules() -> None:
    data = iris_csv()
    with pytest.raises(InvalidInput, match="checkpoint_every >= 4"):
        check_training_spec(make_spec(data, "csv", steps=1000, checkpoint_every=1))
    check_training_spec(make_spec(data, "csv", steps=1024, checkpoint_every=4))
    assert MAX_CHECKPOINTS == -(-1024 // 4) + 1
    with pytest.raises(InvalidInput, match="jsonl"):
        check_training_spec(make_spec(data, "csv", model="minilm-pairs"))
    with pytest.raises(InvalidInput, match="csv or npz"):
        check_training_spec(make_spec(data, "jsonl", model="mlp"))
    with pytest.raises(InvalidInput, match="table"):
        init_state(make_spec(data, "npz", model="logreg"), load_dataset("jsonl", pairs_jsonl()))
    with pytest.raises(InvalidInput, match="square"):
        init_state(make_spec(data, "csv", model="cnn"), load_dataset("csv", b"1,2,3,0\n4,5,6,1\n"))
    with pytest.raises(InvalidInput, match=r"4\.\.256 pixels"):
        init_state(make_spec(data, "csv", model="cnn"), load_dataset("csv", data))


def test_spec_wire_limits_and_hash() -> None:
    spec = make_spec(iris_csv(), "csv")
    raw = msgspec.json.encode(spec)
    assert msgspec.json.decode(raw, type=TrainingSpec) == spec
    assert compute_spec_hash(spec) != compute_spec_hash(make_spec(iris_csv(), "csv", lr_micro=5001))
    assert codec.encode(spec) == codec.encode(msgspec.json.decode(raw, type=TrainingSpec))
    for field, value in [("model", "gpt"), ("optimiser", "lbfgs"), ("steps", 0), ("batch_size", 4096)]:
        bad = {**msgspec.to_builtins(spec), field: value}
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, TrainingSpec)
