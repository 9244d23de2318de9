"""The seam between the miner daemon and whatever actually runs a model.

A backend is blocking (the daemon calls it from a worker thread) and honest:
``list_models`` reports only models it really has, each with a digest that
identifies the exact weights, and ``generate``/``embed`` refuse any other
model name instead of substituting one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

ModelKind = Literal["text", "embedding", "zk-inference", "training"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    """The name clients ask for (e.g. ``smollm2-135m-instruct``, ``llama3.2``)."""
    digest: str
    """``sha256:<hex>`` of the weights file, or the digest the serving backend reports."""
    kind: ModelKind
    backend: str
    context_length: int | None = None
    dimensions: int | None = None
    """Vector size, for embedding models."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class GenerationParams:
    max_tokens: int = 128
    temperature: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    top_p: float | None = None
    """Nucleus sampling; None leaves the backend's default."""


@dataclass(frozen=True, slots=True)
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    """``stop`` (end of text or a stop string) or ``length`` (hit max_tokens)."""


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    vectors: list[list[float]]
    prompt_tokens: int
    dimensions: int = field(default=0)


TokenCallback = Callable[[str], None]


class BackendError(Exception):
    """A backend could not run a request (model missing, server down, bad reply)."""


class ModelNotServed(BackendError):
    """Asked for a model this backend does not have; never substitute another."""


class InferenceBackend(Protocol):
    name: str

    def list_models(self) -> list[ModelInfo]: ...

    def generate(
        self,
        model: str,
        *,
        prompt: str | None = None,
        messages: list[ChatMessage] | None = None,
        params: GenerationParams,
        on_token: TokenCallback | None = None,
    ) -> GenerationResult:
        """Run text generation; exactly one of ``prompt`` / ``messages``; stream tokens to ``on_token``."""
        ...

    def embed(self, model: str, texts: list[str]) -> EmbeddingResult: ...

    def close(self) -> None: ...
