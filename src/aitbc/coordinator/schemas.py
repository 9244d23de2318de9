"""Request bodies of the coordinator API (pydantic, so they document themselves in /openapi.json)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobParams(Strict):
    max_tokens: int = Field(128, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    stop: list[str] = Field(default_factory=list, max_length=8)


class ChatMessageIn(Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class JobInputIn(Strict):
    prompt: str | None = None
    messages: list[ChatMessageIn] | None = None
    texts: list[str] | None = None


class JobConstraints(Strict):
    min_vram_gb: float | None = Field(None, ge=0)
    gpu: str | None = Field(None, max_length=64)
    region: str | None = Field(None, max_length=32)
    zk_proof_required: bool = Field(False, description="The miner must attach a Groth16 receipt proof (docs/zk.md)")


class SealedInputIn(Strict):
    """A private job's input, sealed by the client to ``miner`` (docs/zk.md, private inputs)."""

    miner: str = Field(min_length=10, max_length=90, pattern=r"^ait1[02-9ac-hj-np-z]+$")
    ciphertext: str = Field(min_length=2, max_length=2 * 1024 * 1024, pattern=r"^([0-9a-f]{2})+$")
    input_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the plaintext input's canonical bytes")
    reply_to: str = Field(pattern=r"^[0-9a-f]{64}$", description="X25519 public key the result is sealed to")


class QuoteRequest(Strict):
    type: Literal["inference", "embedding", "zk-inference"]
    model: str = Field(min_length=1, max_length=128)
    model_digest: str | None = Field(None, max_length=200)


class JobCreate(Strict):
    job_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Paid jobs: the job id of the escrow the client opened on chain for this job",
    )
    type: Literal["inference", "embedding", "zk-inference"] = Field(
        description="zk-inference is EXPERIMENTAL: the small ONNX model aitbc-zkml-mlp proved with EZKL; "
        "input.texts holds 1..4 vectors of 4 comma-separated numbers (docs/zk.md)"
    )
    model: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")
    model_digest: str | None = Field(None, max_length=200)
    input: JobInputIn = Field(default_factory=lambda: JobInputIn())
    sealed: SealedInputIn | None = Field(None, description="Private job: the input sealed to the quoted miner")
    params: JobParams = Field(default_factory=lambda: JobParams())
    max_price: int | None = Field(None, ge=0, le=2**63 - 1, description="Most the client pays, in base units")
    ttl_seconds: int | None = Field(None, ge=1, description="Give up if no miner starts the job by then")
    constraints: JobConstraints = Field(default_factory=lambda: JobConstraints())


class ServedModelIn(Strict):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")
    digest: str = Field(min_length=1, max_length=200)
    kind: Literal["text", "embedding", "zk-inference"] = Field(description="zk-inference: EXPERIMENTAL (docs/zk.md)")
    unit_price: int = Field(ge=0, le=2**40, description="Base units per token")
    context_length: int | None = None
    dimensions: int | None = None


class HardwareIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    kind: Literal["gpu", "cpu"]
    gpu_name: str | None = None
    vram_gb: float | None = None
    cpu_model: str | None = None
    cpu_cores: int | None = None
    ram_gb: float | None = None


class MinerRegistration(Strict):
    models: list[ServedModelIn] = Field(min_length=1, max_length=64)
    backend: str = Field(max_length=32)
    hardware: HardwareIn
    region: str = Field("", max_length=32)
    max_concurrency: int = Field(1, ge=1, le=256)
    version: str = Field("", max_length=32)


class ClaimRequest(Strict):
    wait_seconds: float = Field(20.0, ge=0, le=60)


class HeartbeatRequest(Strict):
    leases: dict[str, str] = Field(default_factory=dict, description="job_id → lease_id of running jobs")


class ProgressRequest(Strict):
    lease_id: str
    tokens: list[str] = Field(default_factory=list, max_length=4096)
    first_index: int = Field(0, ge=0)


class ResultRequest(Strict):
    lease_id: str
    output: dict[str, Any]
    receipt: dict[str, Any]
    zk_proof: dict[str, Any] | None = None


class FailRequest(Strict):
    lease_id: str
    error: str = Field(max_length=4000)
    retryable: bool = True


class ReleaseRequest(Strict):
    lease_id: str
