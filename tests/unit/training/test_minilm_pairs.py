"""Fine-tuning the packaged all-MiniLM-L6-v2 on a client's pairs: a real training effect, reproducibly."""

from __future__ import annotations

import torch

from aitbc.training import PairData, deterministic, load_dataset, load_state, replay_segment, run_training
from aitbc.training.models import get_model_def
from support.training_data import make_spec, pairs_jsonl


def _pairs_loss(spec_data: bytes, state_bytes: bytes) -> float:
    """The loss over every pair, dropout off."""
    spec = make_spec(spec_data, "jsonl", model="minilm-pairs")
    dataset = load_dataset("jsonl", spec_data)
    assert isinstance(dataset, PairData)
    with deterministic(), torch.no_grad():
        state = load_state(spec, dataset, state_bytes)
        state.model.eval()
        return float(get_model_def(spec).loss(state.model, dataset, torch.arange(dataset.size)).item())


def test_minilm_fine_tune_lowers_the_loss_on_the_clients_pairs_and_replays() -> None:
    data = pairs_jsonl()
    spec = make_spec(
        data, "jsonl", model="minilm-pairs", steps=6, batch_size=4, lr_micro=40, optimiser="adamw", checkpoint_every=3
    )
    dataset = load_dataset("jsonl", data)
    result = run_training(spec, dataset)
    before = _pairs_loss(data, result.checkpoints[0])
    after = _pairs_loss(data, result.checkpoints[6])
    assert after < before * 0.7, (before, after)
    replayed = replay_segment(spec, dataset, result.checkpoints[3], 3, 4)
    assert replayed[0] == result.commitment.checkpoint_hashes[1]
    assert replay_segment(spec, dataset, result.checkpoints[3], 3, 6)[-1] == result.commitment.checkpoint_hashes[2]
