"""A training state (weights, optimiser moments, the step it is at) as bytes, and its hash.

The state's tensors are named ``model/<parameter>``, ``optim/<index>/<slot>`` and ``step``. ``dump_state``
writes them as safetensors; ``compute_state_hash`` is sha256 over a canonical layout that does not depend on
any file format's version: for each name in sorted order, the name, the dtype, the shape and the raw
little-endian bytes, each length-prefixed.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from aitbc.protocol.errors import InvalidInput

STATE_FORMAT: Final = "aitbc-training-state/1"


@dataclass
class State:
    """The live state of a run: the model, its optimiser, and how many steps have been applied."""

    model: nn.Module
    optimiser: torch.optim.Optimizer
    step: int


def flatten_state(state: State) -> dict[str, torch.Tensor]:
    """Every tensor of the state, by canonical name (copies: the result does not change as training goes on)."""
    flat: dict[str, torch.Tensor] = {f"model/{k}": v.detach().clone() for k, v in state.model.state_dict().items()}
    optim: dict[Any, Any] = state.optimiser.state_dict()["state"]
    for index, slots in optim.items():
        for slot, value in slots.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            flat[f"optim/{index}/{slot}"] = tensor.detach().clone()
    flat["step"] = torch.tensor(state.step, dtype=torch.int64)
    return flat


def hash_tensors(flat: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256(STATE_FORMAT.encode())
    for name in sorted(flat):
        tensor = flat[name].detach().contiguous()
        for part in (name.encode(), str(tensor.dtype).encode()):
            h.update(struct.pack("<I", len(part)) + part)
        h.update(struct.pack(f"<I{tensor.dim()}Q", tensor.dim(), *tensor.shape))
        raw = tensor.reshape(-1).view(torch.uint8).numpy().data if tensor.numel() else memoryview(b"")
        h.update(struct.pack("<Q", raw.nbytes))
        h.update(raw)
    return h.hexdigest()


def compute_state_hash(state: State) -> str:
    """The hash a commitment's checkpoints hold for this state."""
    return hash_tensors(flatten_state(state))


def dump_state(state: State) -> bytes:
    return st_save(flatten_state(state), metadata={"format": STATE_FORMAT})


def dump_weights(model: nn.Module) -> bytes:
    """The trained weights alone, as safetensors (what the client downloads)."""
    weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    return st_save(weights, metadata={"format": "aitbc-training-weights/1"})


def parse_state(data: bytes) -> dict[str, torch.Tensor]:
    try:
        flat = st_load(data)
    except Exception as exc:  # safetensors raises its own error kinds
        raise InvalidInput(f"not a training state: {exc}") from None
    if "step" not in flat:
        raise InvalidInput("not a training state: no step")
    return flat


def restore_state(state: State, data: bytes) -> None:
    """Load ``data`` (from ``dump_state``) into a freshly built state of the same spec."""
    flat = parse_state(data)
    weights = {k.removeprefix("model/"): v for k, v in flat.items() if k.startswith("model/")}
    try:
        state.model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise InvalidInput(f"the state does not fit this spec's model: {exc}") from None
    optim: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        if key.startswith("optim/"):
            _, index, slot = key.split("/", 2)
            optim.setdefault(int(index), {})[slot] = value
    saved = state.optimiser.state_dict()
    state.optimiser.load_state_dict({"state": optim, "param_groups": saved["param_groups"]})
    state.step = int(flat["step"].item())


def get_weights_problem(weights: bytes, final_state: bytes, final_hash: str) -> str | None:
    """Why ``weights`` (``dump_weights``) are not the model of the committed final state (None: they are):
    the state must hash to the commitment's last checkpoint hash, and hold exactly these tensors."""
    flat = parse_state(final_state)
    if hash_tensors(flat) != final_hash:
        return "the final checkpoint does not hash to the commitment's last checkpoint hash"
    try:
        delivered = st_load(weights)
    except Exception as exc:  # safetensors raises its own error kinds
        return f"the weights are not safetensors: {exc}"
    model = {k.removeprefix("model/"): v for k, v in flat.items() if k.startswith("model/")}
    if sorted(delivered) != sorted(model):
        return "the weights name other tensors than the committed state's model"
    for name, tensor in model.items():
        other = delivered[name]
        if other.dtype != tensor.dtype or other.shape != tensor.shape or not torch.equal(other, tensor):
            return f"tensor {name} differs from the committed state's"
    return None
