"""AI jobs on the wire: what a client asks for, and what a miner returns.

The coordinator, the miner and the wallet hash the same values the same way:
``compute_input_hash`` over the canonical encoding of ``JobInput`` (job type,
model, the input and the generation params) and ``compute_output_hash`` over
``JobOutput`` (text, or embedding vectors packed as little-endian float32).
"""

from __future__ import annotations

import struct
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from aitbc.protocol import codec
from aitbc.protocol.crypto import sha256_hex
from aitbc.protocol.errors import InputTooLarge, InvalidInput
from aitbc.protocol.training import TrainingOutput, TrainingSpec, check_training_spec
from aitbc.protocol.types import U64, HexBytes, Wire
from aitbc.protocol.zkml_input import check_zk_inference_texts

JobType = Literal["inference", "embedding", "zk-inference", "training"]
JOB_TYPES: Final = ("inference", "embedding", "zk-inference", "training")
"""``zk-inference`` is EXPERIMENTAL: one small ONNX model proved with EZKL (``aitbc.protocol.zkml``);
``training`` runs a ``TrainingSpec`` (``aitbc.protocol.training``, docs/training.md)."""

MAX_PROMPT_CHARS: Final = 32_000
MAX_MESSAGES: Final = 64
MAX_EMBED_TEXTS: Final = 256
MAX_TOKENS_LIMIT: Final = 4096
MAX_STOPS: Final = 8
MAX_STOP_CHARS: Final = 64
MAX_SEED: Final = 2**31 - 1
MAX_TEMPERATURE_MILLI: Final = 2000
MAX_TOP_P_MILLI: Final = 1000

# Each limit of a job is written once, here, as an annotated type: the wire structs below, the
# coordinator's request bodies (``aitbc.protocol.job_messages``) and its OpenAPI document all use these
# very objects, so what a client may send and what a miner accepts cannot drift apart.
MaxTokens = Annotated[int, Meta(ge=1, le=MAX_TOKENS_LIMIT), Wire.U64]
Seed = Annotated[int, Meta(ge=0, le=MAX_SEED), Wire.U64]
StopString = Annotated[str, Meta(min_length=1, max_length=MAX_STOP_CHARS), Wire.STR]
StopList = Annotated[list[StopString], Meta(max_length=MAX_STOPS)]
ChatRole = Annotated[str, Meta(pattern=r"^(system|user|assistant)$"), Wire.STR]
JobTypeName = Annotated[str, Meta(pattern=r"^(inference|embedding|zk-inference|training)$"), Wire.STR]

ModelName = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$"), Wire.STR]
Text = Annotated[str, Wire.STR]
JobId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$"), Wire.STR]
ClientId = Annotated[str, Meta(min_length=1, max_length=90, pattern=r"^[A-Za-z0-9_-]+$"), Wire.STR]
"""Who pays: the client's ``ait1…`` address, or its API key id when it has none."""
ModelDigest = Annotated[str, Meta(min_length=1, max_length=200), Wire.STR]
"""``sha256:<hex>`` of the exact weights a miner serves."""


class Message(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    role: ChatRole
    content: Text


class Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Generation parameters; temperature is in thousandths (700 = 0.7) so it hashes exactly."""

    max_tokens: MaxTokens = 128
    temperature_milli: Annotated[int, Meta(ge=0, le=MAX_TEMPERATURE_MILLI), Wire.U64] = 0
    seed: Seed | None = None
    stop: StopList = msgspec.field(default_factory=list)
    top_p_milli: Annotated[int, Meta(ge=0, le=MAX_TOP_P_MILLI), Wire.U64] | None = None
    """Nucleus sampling in thousandths (900 = 0.9); None: the backend's default."""


class JobInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Exactly what the miner must run: one of prompt / messages (inference), texts (embedding) or training
    (a training spec; the model is the spec's)."""

    type: JobTypeName
    model: ModelName
    prompt: Text | None = None
    messages: list[Message] | None = None
    texts: list[Text] | None = None
    params: Params = msgspec.field(default_factory=Params)
    training: TrainingSpec | None = None


class JobOutput(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    text: Text | None = None
    dimensions: U64 = 0
    vectors_f32: HexBytes = ""
    """All vectors concatenated, each value a little-endian IEEE-754 float32."""
    training: TrainingOutput | None = None
    """A training job's commitment and the blobs of its weights and loss curve."""


def check_job_input(job: JobInput) -> None:
    """Shape rules a request must meet before it becomes a job: ``InvalidInput`` / ``InputTooLarge`` say which."""
    if job.type == "training":
        if job.training is None or job.prompt is not None or job.messages is not None or job.texts is not None:
            raise InvalidInput("a training job needs input.training (a training spec) and nothing else")
        if job.training.model != job.model:
            raise InvalidInput(f"the job's model {job.model!r} is not the spec's {job.training.model!r}")
        check_training_spec(job.training)
        return
    if job.training is not None:
        raise InvalidInput("input.training is only for training jobs")
    if job.type == "inference":
        if (job.prompt is None) == (job.messages is None):
            raise InvalidInput("an inference job needs exactly one of input.prompt or input.messages")
        if job.texts is not None:
            raise InvalidInput("input.texts is only for embedding jobs")
        if job.prompt is not None and not job.prompt.strip():
            raise InvalidInput("input.prompt is empty")
        if job.messages is not None and not 1 <= len(job.messages) <= MAX_MESSAGES:
            raise InvalidInput(f"input.messages must hold 1..{MAX_MESSAGES} messages")
        size = len(job.prompt or "") + sum(len(m.content) for m in job.messages or [])
    elif job.type == "zk-inference":
        if job.prompt is not None or job.messages is not None:
            raise InvalidInput("a zk-inference job takes input.texts (its vectors) and nothing else")
        try:
            check_zk_inference_texts(job.texts)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        size = sum(len(t) for t in job.texts or [])
    else:
        if job.texts is None or job.prompt is not None or job.messages is not None:
            raise InvalidInput("an embedding job needs input.texts (a list of strings) and nothing else")
        if not 1 <= len(job.texts) <= MAX_EMBED_TEXTS:
            raise InvalidInput(f"input.texts must hold 1..{MAX_EMBED_TEXTS} strings")
        size = sum(len(t) for t in job.texts)
    if size > MAX_PROMPT_CHARS:
        raise InputTooLarge(f"input is {size} characters; the limit is {MAX_PROMPT_CHARS}")


def compute_model_kind(job_type: str) -> str:
    """The kind of served model a job type runs on (miners advertise models by kind)."""
    return job_type if job_type in ("embedding", "zk-inference", "training") else "text"


def compute_input_units(job: JobInput) -> int:
    """The size a job's price bound grows with: characters of its input, or for a training job its
    sample-steps (``steps x batch_size``, what it is billed by: docs/tokenomics.md)."""
    if job.training is not None:
        return job.training.steps * job.training.batch_size
    return (
        len(job.prompt or "") + sum(len(m.content) for m in job.messages or []) + sum(len(t) for t in job.texts or [])
    )


def compute_input_hash(job: JobInput) -> str:
    return sha256_hex(codec.encode(job))


def pack_vectors(vectors: list[list[float]]) -> tuple[int, str]:
    """(dimensions, hex of packed float32) — the exact bytes both sides hash."""
    if not vectors:
        return 0, ""
    dims = len(vectors[0])
    if any(len(v) != dims for v in vectors):
        raise ValueError("all vectors must have the same dimension")
    flat = [x for v in vectors for x in v]
    return dims, struct.pack(f"<{len(flat)}f", *flat).hex()


def unpack_vectors(dimensions: int, vectors_f32: str) -> list[list[float]]:
    raw = bytes.fromhex(vectors_f32)
    if not raw:
        return []
    values = struct.unpack(f"<{len(raw) // 4}f", raw)
    return [list(values[i : i + dimensions]) for i in range(0, len(values), dimensions)]


def compute_output_hash(output: JobOutput) -> str:
    return sha256_hex(codec.encode(output))
