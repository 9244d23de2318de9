"""The job contract: every message a job's life puts on the wire between client, coordinator and miner.

One msgspec struct per message, each limit written once (the annotated types of
``aitbc.protocol.job`` and ``aitbc.protocol.types``):

    client ──JobRequest──▶ coordinator            POST /api/v1/jobs
    miner ──MinerRegistration──▶ coordinator       POST /api/v1/miners/register
    miner ──ClaimRequest──▶ coordinator ──JobAssignment──▶ miner    POST /api/v1/miners/claim
    miner ──ProgressReport──▶ coordinator          POST /api/v1/miners/jobs/{id}/progress
    miner ──ResultSubmission──▶ coordinator        POST /api/v1/miners/jobs/{id}/result
    miner ──FailureReport / ReleaseRequest──▶      …/fail, …/release

The coordinator decodes request bodies straight into these structs (a violated
limit is a 422 naming the field) and generates its OpenAPI schemas from them;
the miner decodes its assignment into ``JobAssignment``. So a request the
coordinator accepts is one every miner can run: there is no second copy of a
limit to drift (``params.stop`` strings longer than a miner takes used to pass
submission and bounce between miners).
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal, TypeVar

import msgspec
from msgspec import Meta

from aitbc.protocol.errors import InvalidRequest
from aitbc.protocol.job import (
    ClientId,
    JobId,
    JobInput,
    JobOutput,
    JobType,
    MaxTokens,
    Message,
    ModelDigest,
    ModelName,
    Params,
    Seed,
    StopList,
    Text,
)
from aitbc.protocol.receipt import Receipt
from aitbc.protocol.training import TrainingSpec
from aitbc.protocol.types import Address, Amount, Hash32, SignatureHex, TimestampMs
from aitbc.protocol.zk import ZkReceiptProof

MAX_SEALED_HEX: Final = 2 * 1024 * 1024
MAX_SERVED_MODELS: Final = 64
MAX_UNIT_PRICE: Final = 2**40
MAX_PROGRESS_TOKENS: Final = 4096
MAX_ERROR_CHARS: Final = 4000
MAX_CLAIM_WAIT_SECONDS: Final = 60.0
MAX_CONCURRENCY: Final = 256

ModelKind = Literal["text", "embedding", "zk-inference", "training"]
LeaseId = Annotated[str, Meta(min_length=1, max_length=32)]
Region = Annotated[str, Meta(max_length=32)]
Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, Meta(ge=0.0, le=1.0)]
Label = Annotated[str, Meta(max_length=32)]


class _Message(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of the request messages: an unknown field is an error, not something silently dropped."""


# -- client → coordinator ------------------------------------------------------------------------------


class RequestParams(_Message, frozen=True, kw_only=True):
    """Generation parameters as a client writes them (temperature as a float; ``Params`` holds it in thousandths)."""

    max_tokens: MaxTokens = 128
    temperature: Temperature = 0.0
    seed: Seed | None = None
    stop: StopList = msgspec.field(default_factory=list)
    top_p: TopP | None = None

    def to_params(self) -> Params:
        return Params(
            max_tokens=self.max_tokens,
            temperature_milli=round(self.temperature * 1000),
            seed=self.seed,
            stop=list(self.stop),
            top_p_milli=None if self.top_p is None else round(self.top_p * 1000),
        )


class RequestInput(_Message, frozen=True, kw_only=True):
    """One of ``prompt`` / ``messages`` (inference), ``texts`` (embedding, zk-inference) or ``training``."""

    prompt: Text | None = None
    messages: list[Message] | None = None
    texts: list[Text] | None = None
    training: (
        Annotated[
            TrainingSpec,
            Meta(description="A training job's spec; its dataset is a blob uploaded first (docs/training.md)"),
        ]
        | None
    ) = None


class JobConstraints(_Message, frozen=True, kw_only=True):
    min_vram_gb: Annotated[float, Meta(ge=0)] | None = None
    gpu: Annotated[str, Meta(max_length=64)] | None = None
    region: Region | None = None
    zk_proof_required: Annotated[
        bool, Meta(description="The miner must attach a Groth16 receipt proof (docs/zk.md)")
    ] = False
    audited: Annotated[
        bool,
        Meta(
            description="Only a miner with a bond on chain may run it, so a failed re-execution audit slashes "
            "it and refunds the client (docs/verification.md); the job must be deterministic"
        ),
    ] = False


class SealedInput(_Message, frozen=True, kw_only=True):
    """A private job's input, sealed by the client to ``miner`` (docs/zk.md, private inputs)."""

    miner: Address
    ciphertext: Annotated[str, Meta(min_length=2, max_length=MAX_SEALED_HEX, pattern=r"^([0-9a-f]{2})+$")]
    input_hash: Annotated[Hash32, Meta(description="sha256 of the plaintext input's canonical bytes")]
    reply_to: Annotated[Hash32, Meta(description="X25519 public key the result is sealed to")]


class JobRequest(_Message, frozen=True, kw_only=True):
    """``POST /api/v1/jobs``: what a client asks to be run."""

    job_id: (
        Annotated[
            JobId,
            Meta(
                description="Paid jobs: the job id of the escrow the client opened on chain for this job; or, for "
                "a signed-mode deposit, the deposit job id (dj-<expiry height>-<random>) the client signed"
            ),
        ]
        | None
    ) = None
    type: Annotated[
        JobType,
        Meta(
            description="zk-inference is EXPERIMENTAL: the small ONNX model aitbc-zkml-mlp proved with EZKL; "
            "input.texts holds 1..4 vectors of 4 comma-separated numbers (docs/zk.md). training: input.training "
            "holds the spec, model is its model (docs/training.md)"
        ),
    ]
    model: ModelName
    model_digest: ModelDigest | None = None
    input: RequestInput = msgspec.field(default_factory=RequestInput)
    sealed: Annotated[SealedInput, Meta(description="Private job: the input sealed to the quoted miner")] | None = None
    params: RequestParams = msgspec.field(default_factory=RequestParams)
    max_price: Annotated[Amount, Meta(description="Most the client pays, in base units")] | None = None
    ttl_seconds: Annotated[int, Meta(ge=1, description="Give up if no miner starts the job by then")] | None = None
    constraints: JobConstraints = msgspec.field(default_factory=JobConstraints)
    client_signature: (
        Annotated[
            SignatureHex,
            Meta(
                description="Signed-mode deposits: the client's Ed25519 signature (hex) over the job request "
                "(chain_id, job_id, deposit_id, model, input_hash, max_price; aitbc.protocol.deposit.JobRequest) "
                "under the job-request domain; the chain pays the job only with it"
            ),
        ]
        | None
    ) = None

    def to_job_input(self) -> JobInput:
        """The exact input a miner runs and both sides hash (see ``aitbc.protocol.job``)."""
        return JobInput(
            type=self.type,
            model=self.model,
            prompt=self.input.prompt,
            messages=self.input.messages,
            texts=self.input.texts,
            params=self.params.to_params(),
            training=self.input.training,
        )


class QuoteRequest(_Message, frozen=True, kw_only=True):
    """``POST /api/v1/jobs/quote``: which miner would run such a job (a private job is sealed to it)."""

    type: JobType
    model: ModelName
    model_digest: ModelDigest | None = None


# -- miner → coordinator -------------------------------------------------------------------------------


class ServedModel(_Message, frozen=True, kw_only=True):
    name: ModelName
    digest: ModelDigest
    kind: Annotated[ModelKind, Meta(description="zk-inference: EXPERIMENTAL (docs/zk.md)")]
    unit_price: Annotated[int, Meta(ge=0, le=MAX_UNIT_PRICE, description="Base units per token")]
    context_length: Annotated[int, Meta(ge=0)] | None = None
    dimensions: Annotated[int, Meta(ge=0)] | None = None


class Hardware(msgspec.Struct, frozen=True, kw_only=True):
    """What the miner runs on, as it reports it (fields it adds later are ignored, not refused)."""

    kind: Literal["gpu", "cpu"]
    gpu_name: Annotated[str, Meta(max_length=128)] | None = None
    vram_gb: Annotated[float, Meta(ge=0, le=100_000)] | None = None
    gpu_count: Annotated[int, Meta(ge=0, le=4096)] | None = None
    cpu_model: Annotated[str, Meta(max_length=256)] | None = None
    cpu_cores: Annotated[int, Meta(ge=0, le=1_000_000)] | None = None
    ram_gb: Annotated[float, Meta(ge=0, le=1_000_000)] | None = None
    source: Annotated[str, Meta(max_length=32)] | None = None


class MinerRegistration(_Message, frozen=True, kw_only=True):
    """``POST /api/v1/miners/register``: the models a miner serves, at which price, on what."""

    models: Annotated[list[ServedModel], Meta(min_length=1, max_length=MAX_SERVED_MODELS)]
    backend: Label
    hardware: Hardware
    region: Region = ""
    max_concurrency: Annotated[int, Meta(ge=1, le=MAX_CONCURRENCY)] = 1
    version: Label = ""


class ClaimRequest(_Message, frozen=True, kw_only=True):
    wait_seconds: Annotated[float, Meta(ge=0, le=MAX_CLAIM_WAIT_SECONDS)] = 20.0


class HeartbeatRequest(_Message, frozen=True, kw_only=True):
    leases: Annotated[dict[str, str], Meta(description="job_id → lease_id of running jobs")] = msgspec.field(
        default_factory=dict
    )


class ProgressReport(_Message, frozen=True, kw_only=True):
    """Tokens generated since the last report; each report also extends the job's lease."""

    lease_id: LeaseId
    tokens: Annotated[list[str], Meta(max_length=MAX_PROGRESS_TOKENS)] = msgspec.field(default_factory=list)
    first_index: Annotated[int, Meta(ge=0)] = 0


class ResultSubmission(_Message, frozen=True, kw_only=True):
    """The output with the miner-signed receipt (and the zk receipt proof when the job asked for one)."""

    lease_id: LeaseId
    output: JobOutput
    receipt: Receipt
    zk_proof: ZkReceiptProof | None = None


MAX_CLAIM_BATCH: Final = 64
"""Most jobs one ``claim-many`` hands out, and most results one ``results`` request carries."""


class ClaimManyRequest(_Message, frozen=True, kw_only=True):
    """``POST /api/v1/miners/claim-many``: long-poll for up to ``max_jobs`` jobs (one request, one signature)."""

    wait_seconds: Annotated[float, Meta(ge=0, le=MAX_CLAIM_WAIT_SECONDS)] = 20.0
    max_jobs: Annotated[int, Meta(ge=1, le=MAX_CLAIM_BATCH)] = 16


class BatchedResult(ResultSubmission, frozen=True, kw_only=True):
    """One job's result inside a ``ResultBatch``."""

    job_id: JobId


class ResultBatch(_Message, frozen=True, kw_only=True):
    """``POST /api/v1/miners/results``: several finished jobs in one request; each is judged on its own."""

    results: Annotated[list[BatchedResult], Meta(min_length=1, max_length=MAX_CLAIM_BATCH)]


class FailureReport(_Message, frozen=True, kw_only=True):
    lease_id: LeaseId
    error: Annotated[str, Meta(max_length=MAX_ERROR_CHARS)]
    retryable: bool = True


class ReleaseRequest(_Message, frozen=True, kw_only=True):
    lease_id: LeaseId


# -- coordinator → miner -------------------------------------------------------------------------------


class SealedJobInput(msgspec.Struct, frozen=True, kw_only=True):
    """What the coordinator keeps of a private job's input: ciphertext, the client's reply key, the params."""

    sealed: str
    reply_to: Hash32
    params: Params = msgspec.field(default_factory=Params)


class AssignedJob(msgspec.Struct, frozen=True, kw_only=True):
    """The job as its miner receives it: exactly one of ``input`` (plain) or ``sealed`` (a private job)."""

    job_id: JobId
    type: JobType
    model: ModelName
    model_digest: ModelDigest
    input: JobInput | None
    sealed: SealedJobInput | None = None
    input_hash: Hash32
    client: ClientId
    max_price: Amount | None
    unit_price: Amount
    attempt: int
    chain_id: str
    coordinator: Address
    assigned_at_ms: TimestampMs
    escrow_amount: Amount | None = None
    zk_proof_required: bool = False


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    lease_id: LeaseId
    expires_at_ms: TimestampMs
    lease_seconds: float


class JobAssignment(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /api/v1/miners/claim`` answers with this (or 204 when no job came in time)."""

    job: AssignedJob
    lease: Lease


class JobAssignments(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /api/v1/miners/claim-many`` answers with these (or 204 when no job came in time)."""

    assignments: list[JobAssignment]


REQUEST_MESSAGES: Final = (
    JobRequest,
    QuoteRequest,
    MinerRegistration,
    ClaimRequest,
    ClaimManyRequest,
    HeartbeatRequest,
    ProgressReport,
    ResultSubmission,
    ResultBatch,
    FailureReport,
    ReleaseRequest,
)
"""Every body the coordinator decodes; its OpenAPI components are generated from these (and ``JobAssignment``)."""


M = TypeVar("M")
_PATH_PART: Final = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _error_path(location: str) -> tuple[str | int, ...]:
    """``$.params.stop[0]`` → ``("params", "stop", 0)``."""
    return tuple(name if name else int(index) for name, index in _PATH_PART.findall(location))


def decode_message(kind: type[M], data: bytes) -> M:
    """Decode a JSON body into its message type; any violation is ``InvalidRequest`` naming the field."""
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        message, _, location = str(exc).partition(" - at `$")
        raise InvalidRequest(message, path=_error_path(location.rstrip("`"))) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec reports bad UTF-8 as UnicodeDecodeError
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
