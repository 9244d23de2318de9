"""Inference backends for the miner, behind the :class:`InferenceBackend` Protocol in ``base``.

``builtin`` (SmolLM2-135M-Instruct + all-MiniLM-L6-v2 in-process), ``ollama`` (Ollama's HTTP API)
and ``openai`` (any OpenAI-compatible server). Build one with :func:`create_backend`; the backend
modules themselves are imported lazily, so importing this package stays cheap.
"""

from aitbc.miner.backends.base import (
    BackendError,
    ChatMessage,
    EmbeddingResult,
    GenerationParams,
    GenerationResult,
    InferenceBackend,
    ModelInfo,
    ModelKind,
    ModelNotServed,
    TokenCallback,
)
from aitbc.miner.backends.registry import BACKEND_NAMES, BackendName, create_backend

__all__ = [
    "BACKEND_NAMES",
    "BackendError",
    "BackendName",
    "ChatMessage",
    "EmbeddingResult",
    "GenerationParams",
    "GenerationResult",
    "InferenceBackend",
    "ModelInfo",
    "ModelKind",
    "ModelNotServed",
    "TokenCallback",
    "create_backend",
]
