"""Offline training datasets for tests and benches: scikit-learn's bundled digits and iris, and sentence pairs."""

from __future__ import annotations

import io
import json

import numpy as np
from sklearn.datasets import load_digits, load_iris

from aitbc.protocol.crypto import sha256
from aitbc.protocol.training import TrainingSpec


def digits_npz(limit: int = 600) -> bytes:
    """8x8 digit images (x: [N, 8, 8], values 0..16 scaled to 0..1) and their labels."""
    digits = load_digits()
    buf = io.BytesIO()
    np.savez(buf, x=(digits.images[:limit] / 16.0).astype(np.float32), y=digits.target[:limit])
    return buf.getvalue()


def iris_csv() -> bytes:
    """Iris as CSV: a header, four features, the class label last."""
    iris = load_iris()
    lines = ["sepal_length,sepal_width,petal_length,petal_width,label"]
    lines += [
        ",".join([*(f"{v:.1f}" for v in row), str(int(label))])
        for row, label in zip(iris.data, iris.target, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


PAIRS = [
    ("A man is playing a guitar.", "Someone plays an instrument.", 0.9),
    ("The cat sleeps on the sofa.", "A kitten naps on the couch.", 0.9),
    ("Stock markets fell sharply today.", "A cat sleeps on the sofa.", -0.2),
    ("I am cooking pasta for dinner.", "The rocket launched into orbit.", -0.2),
    ("Invoice 4411 is overdue.", "Payment for invoice 4411 is late.", 0.95),
    ("Invoice 4411 is overdue.", "Invoice 9902 was paid early.", 0.1),
    ("Reset your password via email.", "Use the mail link to change your login secret.", 0.9),
    ("Reset your password via email.", "Our office closes at five.", -0.1),
]


def pairs_jsonl() -> bytes:
    """A client's sentence pairs for ``minilm-pairs``: the similarity each pair should have."""
    return "".join(json.dumps({"a": a, "b": b, "score": s}) + "\n" for a, b, s in PAIRS).encode()


def make_spec(data: bytes, fmt: str, **fields: object) -> TrainingSpec:
    base: dict[str, object] = {"model": "mlp", "steps": 12, "batch_size": 16, "lr_micro": 5000, "seed": 7}
    base["checkpoint_every"] = 4
    base.update(fields)
    return TrainingSpec(dataset_hash=sha256(data).hex(), dataset_format=fmt, **base)  # type: ignore[arg-type]
