"""EXPERIMENTAL ``zk-inference`` jobs: the input side, pure (docs/zk.md, zkML).

The model a zk-inference job runs and the rules of its input vectors, which
travel as ``JobInput.texts`` (one string per vector, numbers comma-separated).
Kept apart from ``aitbc.protocol.zkml`` (outputs, proofs, receipts) so that
``aitbc.protocol.job`` can check a job's input without importing the receipt
and proof modules, which themselves import ``job`` (no import cycle).
"""

from __future__ import annotations

import math
from typing import Final

ZKML_MODEL: Final = "aitbc-zkml-mlp"
"""The one model zk-inference jobs run (EXPERIMENTAL)."""
ZKML_INPUTS: Final = 4
ZKML_OUTPUTS: Final = 2
ZKML_SCALE: Final = 13
"""The model's input and output scale in its EZKL settings (fixed point, 2^13)."""
MAX_ZK_VECTORS: Final = 4
"""Vectors per job: each is one EZKL proof (seconds of proving on the miner)."""
MAX_ABS_INPUT: Final = 1_000.0
MAX_PROOF_TEXT: Final = 256 * 1024


def parse_zk_vector(text: str) -> list[float]:
    """One input vector from its text (``"0.1,-0.2,0.3,0.4"``); ValueError with the reason."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"input vector {text[:40]!r} is not comma-separated numbers") from None
    if len(values) != ZKML_INPUTS:
        raise ValueError(f"an input vector of {ZKML_MODEL} has {ZKML_INPUTS} numbers, not {len(values)}")
    if any(not math.isfinite(v) or abs(v) > MAX_ABS_INPUT for v in values):
        raise ValueError(f"input numbers must be finite and within ±{MAX_ABS_INPUT:g}")
    return values


def format_zk_vector(values: list[float]) -> str:
    """The text a client sends for a vector (shortest round-tripping decimals)."""
    return ",".join(repr(float(v)) for v in values)


def check_zk_inference_texts(texts: list[str] | None) -> None:
    if texts is None or not 1 <= len(texts) <= MAX_ZK_VECTORS:
        raise ValueError(f"a zk-inference job needs input.texts: 1..{MAX_ZK_VECTORS} vectors, numbers comma-separated")
    for text in texts:
        parse_zk_vector(text)
