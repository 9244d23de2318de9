"""Training datasets: the bytes a client uploads, parsed the same way on every miner.

- ``csv``: one sample per row, numbers only; the last column is the class label (an integer from 0), the
  others are features. A first row that is not all numbers is a header and is skipped.
- ``npz``: a NumPy archive (no pickles) with ``x`` (samples x features, or samples x height x width for
  the CNN) and ``y`` (integer labels from 0).
- ``jsonl``: sentence pairs for ``minilm-pairs``, one JSON object a line: ``{"a": ..., "b": ..., "score": s}``
  with ``s`` in [-1, 1], the cosine similarity the embeddings of ``a`` and ``b`` should have.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import torch

from aitbc.protocol.errors import InvalidInput

MAX_SAMPLES: Final = 1_000_000
MAX_FEATURES: Final = 65_536
MAX_CLASSES: Final = 1000
MAX_PAIR_CHARS: Final = 2000
"""Characters in one sentence of a pair."""


@dataclass(frozen=True)
class TableData:
    """Samples for the classifiers: ``features`` float32 [N, ...], ``labels`` int64 [N]."""

    features: torch.Tensor
    labels: torch.Tensor
    classes: int

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class PairData:
    """Sentence pairs with the cosine similarity their embeddings should have."""

    pairs: tuple[tuple[str, str], ...]
    scores: torch.Tensor

    @property
    def size(self) -> int:
        return len(self.pairs)


Dataset = TableData | PairData


def load_dataset(fmt: str, data: bytes) -> Dataset:
    """Parse a dataset's bytes; ``InvalidInput`` names what is wrong with them."""
    if fmt == "csv":
        return _load_csv(data)
    if fmt == "npz":
        return _load_npz(data)
    if fmt == "jsonl":
        return _load_jsonl(data)
    raise InvalidInput(f"unknown dataset format {fmt!r} (csv, npz or jsonl)")


def _table(features: np.ndarray, labels: np.ndarray) -> TableData:
    if features.ndim < 2 or labels.ndim != 1 or features.shape[0] != labels.shape[0]:
        raise InvalidInput("a dataset needs features [samples, ...] and one label per sample")
    if not 1 <= labels.shape[0] <= MAX_SAMPLES:
        raise InvalidInput(f"a dataset holds 1..{MAX_SAMPLES} samples")
    if not 1 <= int(np.prod(features.shape[1:])) <= MAX_FEATURES:
        raise InvalidInput(f"a sample holds 1..{MAX_FEATURES} features")
    if not np.isfinite(features).all():
        raise InvalidInput("features must be finite numbers")
    if not np.array_equal(labels, np.round(labels)) or labels.min() < 0 or labels.max() >= MAX_CLASSES:
        raise InvalidInput(f"labels must be integers in 0..{MAX_CLASSES - 1}")
    ints = labels.astype(np.int64)
    return TableData(
        features=torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)),
        labels=torch.from_numpy(ints),
        classes=int(ints.max()) + 1,
    )


def _load_csv(data: bytes) -> TableData:
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"the dataset is not UTF-8 CSV: {exc}") from None
    rows = [r for r in rows if r]
    if rows and not all(_is_number(c) for c in rows[0]):
        rows = rows[1:]
    if not rows or len(rows[0]) < 2 or any(len(r) != len(rows[0]) for r in rows):
        raise InvalidInput("a CSV dataset needs rows of the same length: features, then the label")
    try:
        table = np.array([[float(c) for c in r] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise InvalidInput(f"a CSV dataset holds numbers only: {exc}") from None
    return _table(table[:, :-1], table[:, -1])


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _load_npz(data: bytes) -> TableData:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if "x" not in npz.files or "y" not in npz.files:
                raise InvalidInput("an NPZ dataset needs arrays x and y")
            x, y = npz["x"], npz["y"]
    except InvalidInput:
        raise
    except Exception as exc:  # numpy raises several kinds for a damaged archive
        raise InvalidInput(f"not a NumPy .npz archive: {exc}") from None
    if x.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
        raise InvalidInput("NPZ arrays x and y must be numeric")
    return _table(x.astype(np.float64), y.astype(np.float64))


def _load_jsonl(data: bytes) -> PairData:
    pairs: list[tuple[str, str]] = []
    scores: list[float] = []
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise InvalidInput("a JSONL dataset is UTF-8") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"line {n} is not JSON: {exc.msg}") from None
        a, b, score = (row.get("a"), row.get("b"), row.get("score")) if isinstance(row, dict) else (None,) * 3
        if not isinstance(a, str) or not isinstance(b, str) or not a or not b:
            raise InvalidInput(f'line {n} needs "a" and "b" (non-empty strings)')
        if len(a) > MAX_PAIR_CHARS or len(b) > MAX_PAIR_CHARS:
            raise InvalidInput(f"line {n}: a sentence holds at most {MAX_PAIR_CHARS} characters")
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            raise InvalidInput(f'line {n} needs "score", a number in [-1, 1]')
        if not -1.0 <= score <= 1.0:
            raise InvalidInput(f'line {n}: "score" must lie in [-1, 1]')
        pairs.append((a, b))
        scores.append(float(score))
    if not 1 <= len(pairs) <= MAX_SAMPLES:
        raise InvalidInput(f"a JSONL dataset holds 1..{MAX_SAMPLES} pairs")
    return PairData(pairs=tuple(pairs), scores=torch.tensor(scores, dtype=torch.float32))
