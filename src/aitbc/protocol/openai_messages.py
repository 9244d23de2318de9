"""The OpenAI-compatible API on the coordinator (``/v1``): one msgspec struct per wire message.

The coordinator decodes each request body straight into its struct (``decode_message``: a violated
limit is a 400 naming the field) and turns it into the job contract's ``JobRequest`` with one of the
``compute_*_job`` rules below, so a ``/v1`` request is exactly an ``/api/v1/jobs`` job: the same
limits (the annotated types of ``aitbc.protocol.job`` are reused, never restated), the same payment,
the same miner, receipt and settlement. Responses are structs too, encoded by msgspec.

What maps to what:

    chat.completions   messages (system/developer, user, assistant) → an inference job on ``messages``;
                       the miner applies the model's chat template
    completions        prompt (one string) → an inference job on ``prompt``
    embeddings         input (a string or a list of strings) → an embedding job on ``texts``
    model              ``name`` or ``name@sha256:<hex>`` (pins the weights' digest)
    max_tokens / max_completion_tokens, temperature, top_p, seed, stop → the job's params
    n                  must be 1 (a job has one output)
    usage              the miner-signed receipt's units; ``id`` is the job id; ``system_fingerprint``
                       the served model's digest
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from aitbc.protocol.errors import InvalidRequest
from aitbc.protocol.job import (
    MAX_EMBED_TEXTS,
    MAX_MESSAGES,
    MaxTokens,
    Message,
    ModelName,
    Seed,
    StopList,
    StopString,
    Text,
)
from aitbc.protocol.job_messages import JobRequest, RequestInput, RequestParams, Temperature, TopP

DEFAULT_CHAT_MAX_TOKENS: Final = 512
"""``max_tokens`` of a chat completion that names none (OpenAI's is "up to the context"; a deposit
reserves the worst case, so a bound is kept)."""
DEFAULT_COMPLETION_MAX_TOKENS: Final = 16
"""OpenAI's documented default for ``/v1/completions``."""
MAX_USER_CHARS: Final = 256
DIGEST_SEPARATOR: Final = "@"

ChatRoleIn = Literal["system", "developer", "user", "assistant"]
FinishReason = Literal["stop", "length"]


class _Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of the request messages: an unknown field is a 400 naming it, never silently ignored."""


class TextPart(_Request, frozen=True, kw_only=True):
    type: Literal["text"]
    text: Text


class ChatMessageIn(_Request, frozen=True, kw_only=True):
    """A chat turn; ``content`` as a string or as text parts (joined); ``developer`` is a system turn."""

    role: ChatRoleIn
    content: Text | Annotated[list[TextPart], Meta(min_length=1, max_length=MAX_MESSAGES)]
    name: Annotated[str, Meta(max_length=64)] | None = None

    def to_message(self) -> Message:
        text = self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)
        return Message(role="system" if self.role == "developer" else self.role, content=text)


class StreamOptions(_Request, frozen=True, kw_only=True):
    include_usage: bool = False


Stop = StopString | StopList
Count = Annotated[int, Meta(ge=1, description="Choices to generate: only 1 is served (a job has one output)")]
User = Annotated[str, Meta(max_length=MAX_USER_CHARS, description="Your end user's id; accepted, not stored")]


class _Sampling(_Request, frozen=True, kw_only=True):
    model: Annotated[ModelName, Meta(description="A served model name, or name@sha256:<hex> to pin its weights")]
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    seed: Seed | None = None
    stop: Stop | None = None
    n: Count = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: User | None = None

    def _params(self, max_tokens: int) -> RequestParams:
        if self.n != 1:
            raise InvalidRequest("only n=1 is supported (each request is one job with one output)", path=("n",))
        if self.stream_options is not None and not self.stream:
            raise InvalidRequest("stream_options is only allowed with stream=true", path=("stream_options",))
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return RequestParams(
            max_tokens=max_tokens,
            # Unlike OpenAI (1.0), no temperature means the job contract's greedy 0.0: a deterministic output
            # another miner can re-run to audit (docs/openai.md).
            temperature=0.0 if self.temperature is None else self.temperature,
            seed=self.seed,
            stop=stop,
            top_p=self.top_p,
        )

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(_Sampling, frozen=True, kw_only=True):
    """``POST /v1/chat/completions``."""

    messages: Annotated[list[ChatMessageIn], Meta(min_length=1, max_length=MAX_MESSAGES)]
    max_completion_tokens: MaxTokens | None = None


class CompletionRequest(_Sampling, frozen=True, kw_only=True):
    """``POST /v1/completions`` (one prompt string)."""

    prompt: Text


class EmbeddingRequest(_Request, frozen=True, kw_only=True):
    """``POST /v1/embeddings``."""

    model: Annotated[ModelName, Meta(description="A served embedding model, or name@sha256:<hex>")]
    input: Text | Annotated[list[Text], Meta(min_length=1, max_length=MAX_EMBED_TEXTS)]
    encoding_format: Literal["float", "base64"] = "float"
    user: User | None = None

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


OPENAI_REQUESTS: Final = (ChatCompletionRequest, CompletionRequest, EmbeddingRequest)


# -- the rules: an OpenAI request as the job it is ---------------------------------------------------


def split_model(model: str) -> tuple[str, str | None]:
    """``name@sha256:<hex>`` → ``(name, digest)``; a plain name → ``(name, None)``."""
    name, sep, digest = model.partition(DIGEST_SEPARATOR)
    if sep and digest.startswith("sha256:"):
        return name, digest
    return model, None


def compute_chat_job(request: ChatCompletionRequest) -> JobRequest:
    """The inference job a chat completion runs (the miner applies the model's chat template)."""
    both = request.max_tokens is not None and request.max_completion_tokens is not None
    if both and request.max_tokens != request.max_completion_tokens:
        raise InvalidRequest(
            "max_tokens and max_completion_tokens disagree; send one of them", path=("max_completion_tokens",)
        )
    max_tokens = request.max_completion_tokens or request.max_tokens or DEFAULT_CHAT_MAX_TOKENS
    model, digest = split_model(request.model)
    return JobRequest(
        type="inference",
        model=model,
        model_digest=digest,
        input=RequestInput(messages=[m.to_message() for m in request.messages]),
        params=request._params(max_tokens),
    )


def compute_completion_job(request: CompletionRequest) -> JobRequest:
    model, digest = split_model(request.model)
    return JobRequest(
        type="inference",
        model=model,
        model_digest=digest,
        input=RequestInput(prompt=request.prompt),
        params=request._params(request.max_tokens or DEFAULT_COMPLETION_MAX_TOKENS),
    )


def compute_embedding_job(request: EmbeddingRequest) -> JobRequest:
    model, digest = split_model(request.model)
    return JobRequest(type="embedding", model=model, model_digest=digest, input=RequestInput(texts=request.texts))


def compute_finish_reason(completion_tokens: int, max_tokens: int) -> FinishReason:
    """``length`` when the generation used all of ``max_tokens``, else ``stop`` (end of text or a stop string).

    Backends stop at ``max_tokens`` exactly and do not count the end-of-text token, so a receipt whose
    ``completion_tokens`` reaches ``max_tokens`` is the one that was cut.
    """
    return "length" if completion_tokens >= max_tokens else "stop"


# -- responses -----------------------------------------------------------------------------------------


class _Reply(msgspec.Struct, frozen=True, kw_only=True):
    pass


class Usage(_Reply, frozen=True, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(_Reply, frozen=True, kw_only=True):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class ChatChoice(_Reply, frozen=True, kw_only=True):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(_Reply, frozen=True, kw_only=True):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None
    choices: list[ChatChoice]
    usage: Usage


class ChunkDelta(_Reply, frozen=True, kw_only=True):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType = UNSET


class ChunkChoice(_Reply, frozen=True, kw_only=True):
    index: int = 0
    delta: ChunkDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(_Reply, frozen=True, kw_only=True):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str | None
    choices: list[ChunkChoice]
    usage: Usage | UnsetType | None = UNSET
    """Present (null until the last chunk) only when the request asked ``stream_options.include_usage``."""


class CompletionChoice(_Reply, frozen=True, kw_only=True):
    index: int = 0
    text: str
    finish_reason: FinishReason | None
    logprobs: None = None


class Completion(_Reply, frozen=True, kw_only=True):
    """A text completion, and each chunk of a streamed one (``usage`` unset in chunks but the last)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str | None
    choices: list[CompletionChoice]
    usage: Usage | UnsetType | None = UNSET


class EmbeddingItem(_Reply, frozen=True, kw_only=True):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str
    """Floats, or (``encoding_format="base64"``) base64 of the little-endian float32 values."""


class EmbeddingUsage(_Reply, frozen=True, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(_Reply, frozen=True, kw_only=True):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


class ModelCard(_Reply, frozen=True, kw_only=True):
    """A model live miners serve; ``owned_by`` is the serving miner's address (or how many miners serve it)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    kind: str
    digest: str
    """The weights' digest (``sha256:…``); when miners serve different weights under one name, each
    digest is a card of its own with ``id`` ``name@digest``."""
    miners: list[str]
    min_unit_price: int
    max_unit_price: int


class ModelList(_Reply, frozen=True, kw_only=True):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(_Reply, frozen=True, kw_only=True):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(_Reply, frozen=True, kw_only=True):
    """OpenAI's error shape, for every error on ``/v1`` (and inside a stream, as a ``data:`` line)."""

    error: ErrorDetail
