"""Request bodies of the pool hub API (pydantic, so they document themselves in /openapi.json)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aitbc.market.scoring import Outcome

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$"
Address = Field(min_length=1, max_length=90, pattern=r"^[A-Za-z0-9_.:-]+$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServedModelIn(Strict):
    name: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN)
    digest: str = Field(min_length=1, max_length=200)
    kind: Literal["text", "embedding", "zk-inference"]
    unit_price: int = Field(ge=0, le=2**40, description="Base units per token")


class HardwareIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    gpu_name: str | None = Field(None, max_length=128)
    vram_gb: float | None = Field(None, ge=0, le=100_000)


class MinerRegistration(Strict):
    miner: str = Address
    models: list[ServedModelIn] = Field(min_length=1, max_length=64)
    region: str | None = Field(None, max_length=32)
    hardware: HardwareIn | None = None
    max_concurrency: int = Field(1, ge=1, le=1024)
    stake: int = Field(0, ge=0, le=2**63 - 1, description="Bonded stake as the coordinator knows it (not the miner)")


class HeartbeatIn(Strict):
    miner: str = Address
    load: int | None = Field(None, ge=0, le=1024, description="Jobs the miner is running now")


class HeartbeatsIn(Strict):
    beats: list[HeartbeatIn] = Field(max_length=100_000)


class OutcomeIn(Strict):
    miner: str = Address
    job_id: str = Field(min_length=1, max_length=64)
    attempt: int = Field(1, ge=1, le=1_000_000, description="With job_id, miner and outcome, makes a report idempotent")
    outcome: Outcome
    ttft_ms: float | None = Field(None, ge=0, le=86_400_000, description="Assignment to first token, measured")
    tokens_per_s: float | None = Field(None, ge=0, le=10_000_000, description="Generated tokens per second, measured")
    detail: str | None = Field(None, max_length=2000)


class MatchJob(Strict):
    job_id: str = Field("", max_length=64, description="Decides exploration slots; any stable id")
    type: Literal["inference", "embedding", "zk-inference"] = "inference"
    model: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN)
    model_digest: str | None = Field(None, max_length=200)
    input_chars: int = Field(0, ge=0, le=100_000_000)
    max_tokens: int = Field(128, ge=0, le=1_000_000)
    max_price: int | None = Field(None, ge=0, le=2**63 - 1)
    min_vram_gb: float | None = Field(None, ge=0)
    gpu: str | None = Field(None, max_length=64)
    region: str | None = Field(None, max_length=32)
    min_stake: int | None = Field(None, ge=0)


class MatchRequest(Strict):
    job: MatchJob
    limit: int = Field(10, ge=1, le=1000)
    candidates: list[str] | None = Field(
        None, max_length=100_000, description="Rank only these miners (e.g. those with a free slot right now)"
    )
    explain: bool = Field(False, description="Also list every excluded miner with the reason")


def registration_dict(body: MinerRegistration) -> dict[str, Any]:
    """What is stored as the miner's registration (the stake is kept in its own column)."""
    return body.model_dump(exclude={"miner", "stake"}, exclude_none=True)
