"""Which miner may take which job: hard constraints only (``aitbc.market.scoring`` ranks the eligible ones)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from aitbc.protocol.job import compute_model_kind

TEMPLATE_OVERHEAD_TOKENS: Final = 64
"""Tokens a chat template may add around the input, for the price bound."""


@dataclass(frozen=True, slots=True)
class ServedModel:
    name: str
    digest: str
    kind: str
    unit_price: int


@dataclass(frozen=True, slots=True)
class MinerOffer:
    """What a registered miner serves and where it runs."""

    miner: str
    models: tuple[ServedModel, ...]
    region: str = ""
    gpu_name: str | None = None
    vram_gb: float = 0.0


@dataclass(frozen=True, slots=True)
class JobRequirements:
    job_type: str
    model: str
    input_chars: int
    max_tokens: int
    model_digest: str | None = None
    max_price: int | None = None
    min_vram_gb: float | None = None
    gpu: str | None = None
    region: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    min_stake: int | None = None
    """Least bonded stake a miner must hold (checked by ``aitbc.market.scoring``, which knows stakes)."""


def compute_max_units(req: JobRequirements) -> int:
    """Upper bound on billable tokens: tokenizers emit at most about one token per character. A training job
    bills its sample-steps, which ``input_chars`` holds for it (``compute_input_units``)."""
    if req.job_type == "training":
        return req.input_chars
    if req.job_type == "embedding":
        return req.input_chars + TEMPLATE_OVERHEAD_TOKENS
    return req.input_chars + TEMPLATE_OVERHEAD_TOKENS + req.max_tokens


def find_served_model(offer: MinerOffer, req: JobRequirements) -> ServedModel | None:
    wanted_kind = compute_model_kind(req.job_type)
    for model in offer.models:
        if (
            model.name == req.model
            and model.kind == wanted_kind
            and (req.model_digest is None or model.digest == req.model_digest)
        ):
            return model
    return None


def get_ineligibility(offer: MinerOffer, req: JobRequirements) -> str | None:
    """Why this miner may not take this job, or None when it may."""
    model = find_served_model(offer, req)
    if model is None:
        return f"does not serve {req.model}" + (f" with digest {req.model_digest}" if req.model_digest else "")
    if req.min_vram_gb is not None and offer.vram_gb < req.min_vram_gb:
        return f"has {offer.vram_gb:g} GB VRAM, job needs {req.min_vram_gb:g}"
    if req.gpu is not None and (offer.gpu_name is None or req.gpu.lower() not in offer.gpu_name.lower()):
        return f"GPU {offer.gpu_name or 'none'} does not match {req.gpu!r}"
    if req.region is not None and offer.region != req.region:
        return f"region {offer.region or 'unset'} is not {req.region}"
    if req.max_price is not None and model.unit_price * compute_max_units(req) > req.max_price:
        return f"price {model.unit_price}/token could exceed max_price {req.max_price}"
    return None


def is_eligible(offer: MinerOffer, req: JobRequirements) -> bool:
    return get_ineligibility(offer, req) is None
