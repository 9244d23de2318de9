"""Eligibility of a miner for a job (``aitbc.market.matching``): the exact model, then hard constraints."""

from __future__ import annotations

from dataclasses import replace

import pytest

from aitbc.market.matching import (
    TEMPLATE_OVERHEAD_TOKENS,
    JobRequirements,
    MinerOffer,
    ServedModel,
    compute_max_units,
    find_served_model,
    get_ineligibility,
    is_eligible,
)

LLAMA = ServedModel("llama3.2", "sha256:" + "a" * 64, "text", unit_price=2)
LLAMA_OTHER = ServedModel("llama3.2", "sha256:" + "b" * 64, "text", unit_price=1)
MINILM = ServedModel("minilm", "sha256:" + "c" * 64, "embedding", unit_price=1)

GPU_OFFER = MinerOffer("ait1gpu", (LLAMA, MINILM), region="eu", gpu_name="NVIDIA GeForce RTX 4090", vram_gb=24.0)
CPU_OFFER = MinerOffer("ait1cpu", (LLAMA_OTHER,), region="us")


def req(**kw: object) -> JobRequirements:
    base: dict[str, object] = {"job_type": "inference", "model": "llama3.2", "input_chars": 100, "max_tokens": 50}
    base.update(kw)
    return JobRequirements(**base)  # type: ignore[arg-type]


def test_a_miner_serving_the_model_is_eligible() -> None:
    assert is_eligible(GPU_OFFER, req())
    assert is_eligible(CPU_OFFER, req())
    assert get_ineligibility(GPU_OFFER, req()) is None
    assert find_served_model(GPU_OFFER, req()) == LLAMA


def test_a_miner_lacking_the_model_is_not_eligible() -> None:
    why = get_ineligibility(CPU_OFFER, req(model="mistral"))
    assert why is not None and "mistral" in why
    assert find_served_model(CPU_OFFER, req(model="mistral")) is None
    assert not is_eligible(MinerOffer("ait1none", ()), req())


def test_the_model_kind_must_fit_the_job_type() -> None:
    # An embedding job never goes to a text model of that name, and vice versa.
    assert not is_eligible(GPU_OFFER, req(job_type="embedding", model="llama3.2"))
    assert not is_eligible(GPU_OFFER, req(job_type="inference", model="minilm"))
    assert find_served_model(GPU_OFFER, req(job_type="embedding", model="minilm")) == MINILM


def test_a_pinned_digest_must_match_exactly() -> None:
    pinned = req(model_digest=LLAMA.digest)
    assert is_eligible(GPU_OFFER, pinned)
    why = get_ineligibility(CPU_OFFER, pinned)
    assert why is not None and LLAMA.digest in why
    # Without a pin either build of the model is fine.
    assert is_eligible(CPU_OFFER, req())


def test_vram_constraint() -> None:
    assert is_eligible(GPU_OFFER, req(min_vram_gb=24))
    assert not is_eligible(GPU_OFFER, req(min_vram_gb=24.5))
    assert not is_eligible(CPU_OFFER, req(min_vram_gb=1))


def test_gpu_constraint_is_a_case_insensitive_substring() -> None:
    assert is_eligible(GPU_OFFER, req(gpu="rtx 4090"))
    assert not is_eligible(GPU_OFFER, req(gpu="H100"))
    why = get_ineligibility(CPU_OFFER, req(gpu="rtx"))
    assert why is not None and "none" in why


def test_region_constraint() -> None:
    assert is_eligible(GPU_OFFER, req(region="eu"))
    assert not is_eligible(GPU_OFFER, req(region="us"))
    assert not is_eligible(replace(GPU_OFFER, region=""), req(region="eu"))


def test_max_units_bound() -> None:
    assert compute_max_units(req(input_chars=100, max_tokens=50)) == 100 + TEMPLATE_OVERHEAD_TOKENS + 50
    assert (
        compute_max_units(req(job_type="embedding", input_chars=100, max_tokens=50)) == 100 + TEMPLATE_OVERHEAD_TOKENS
    )


@pytest.mark.parametrize(("max_price", "eligible"), [(None, True), (2 * 214, True), (2 * 214 - 1, False), (0, False)])
def test_max_price_bounds_the_worst_case_cost(max_price: int | None, eligible: bool) -> None:
    # worst case: (100 chars + 64 template + 50 generated) tokens x 2 per token = 428
    assert is_eligible(GPU_OFFER, req(max_price=max_price)) is eligible


def test_a_free_model_fits_any_max_price() -> None:
    free = MinerOffer("ait1free", (replace(LLAMA, unit_price=0),))
    assert is_eligible(free, req(max_price=0))


def test_the_first_failed_constraint_is_reported() -> None:
    why = get_ineligibility(GPU_OFFER, req(min_vram_gb=80, region="us"))
    assert why is not None and "VRAM" in why
