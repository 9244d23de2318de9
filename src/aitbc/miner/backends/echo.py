"""``echo``: an instant, deterministic backend for tests and benchmarks (labelled as such).

It serves one model, ``echo``, whose "inference" returns the prompt's words
back one per token, and whose "embedding" is a fixed hash-based vector. It
exists so the platform's own overhead can be measured without a model's cost.
"""

from __future__ import annotations

import hashlib
import struct
import time

from aitbc.miner.backends.base import (
    ChatMessage,
    EmbeddingResult,
    GenerationParams,
    GenerationResult,
    ModelInfo,
    ModelNotServed,
    TokenCallback,
)
from aitbc.protocol.receipt import MAX_TOKENS_PER_SECOND

ECHO_MODEL = "echo"
ECHO_EMBED_MODEL = "echo-embed"
ECHO_DIGEST = "sha256:" + hashlib.sha256(b"aitbc-echo-backend-v1").hexdigest()
ECHO_EMBED_DIGEST = "sha256:" + hashlib.sha256(b"aitbc-echo-embed-v1").hexdigest()
ECHO_DIMENSIONS = 8
ECHO_MAX_TOKENS_PER_SECOND = MAX_TOKENS_PER_SECOND // 2
"""Even "instant", the echo is paced to half the receipt plausibility ceiling, or its receipts are refused."""


class EchoBackend:
    name = "echo"

    def __init__(self, token_delay_s: float = 0.0, cheat: bool = False) -> None:
        self.token_delay_s = token_delay_s
        self.cheat = cheat
        """TESTS ONLY: forge the output (the first word becomes ``forged``), as a cheating miner would."""

    def list_models(self) -> list[ModelInfo]:
        return [
            ModelInfo(ECHO_MODEL, ECHO_DIGEST, "text", self.name, context_length=4096),
            ModelInfo(ECHO_EMBED_MODEL, ECHO_EMBED_DIGEST, "embedding", self.name, dimensions=ECHO_DIMENSIONS),
        ]

    def generate(
        self,
        model: str,
        *,
        prompt: str | None = None,
        messages: list[ChatMessage] | None = None,
        params: GenerationParams,
        on_token: TokenCallback | None = None,
    ) -> GenerationResult:
        if model != ECHO_MODEL:
            raise ModelNotServed(f"echo backend does not serve {model!r}")
        source = prompt if prompt is not None else " ".join(m.content for m in messages or [])
        words = source.split()
        started = time.perf_counter()
        pieces: list[str] = []
        for i, word in enumerate(words[: params.max_tokens]):
            piece = ("forged" if self.cheat else word) if i == 0 else " " + word
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
            if on_token is not None:
                on_token(piece)
            pieces.append(piece)
        pace = len(pieces) / ECHO_MAX_TOKENS_PER_SECOND - (time.perf_counter() - started)
        if pace > 0:
            time.sleep(pace)
        finish = "length" if len(words) > params.max_tokens else "stop"
        return GenerationResult(
            "".join(pieces), prompt_tokens=len(words), completion_tokens=len(pieces), finish_reason=finish
        )

    def embed(self, model: str, texts: list[str]) -> EmbeddingResult:
        if model != ECHO_EMBED_MODEL:
            raise ModelNotServed(f"echo backend does not serve {model!r}")
        vectors = []
        for text in texts:
            digest = hashlib.sha256(text.encode()).digest()
            vectors.append([v / 2**31 for v in struct.unpack(">8i", digest)])
        return EmbeddingResult(vectors, prompt_tokens=sum(len(t.split()) for t in texts), dimensions=ECHO_DIMENSIONS)

    def close(self) -> None:
        pass
