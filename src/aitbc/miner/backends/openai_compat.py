"""A backend that speaks the OpenAI-compatible HTTP API of vLLM, llama.cpp's server, llama-cpp-python's
server, LocalAI and the like, with httpx.

Endpoints used: ``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``
(``"stream": true`` → server-sent events, ``data: {json}`` lines ending with ``data: [DONE]``),
``POST /v1/embeddings``. ``base_url`` may be given with or without the trailing ``/v1``.

**Digest rule.** A miner serves only models it can identify by the exact weights, and a model id
such as ``llama3`` or ``gpt-4o-mini`` identifies nothing: ``name:<id>@<base_url>`` is a label,
not a digest, and is never used as one. A model from ``/v1/models`` gets a digest from, in order:

1. ``model_digests[id]`` — the operator states the digest (``sha256:<64 hex>``) of the weights
   they started the server with;
2. a digest the server itself reports on the model object (a ``digest`` field holding a sha256);
3. ``model_files[id]`` — the operator names the local weights file (or model folder) the server
   runs; its sha256 is computed here (a folder uses the builtin backend's directory digest);
4. the id itself, when the server is on this machine (a loopback ``base_url``) and the id is the
   absolute path of a regular file here — llama-cpp-python's server, started with
   ``--model /path/model.gguf`` and no alias, reports that path as the id. (A remote server's
   paths say nothing about this machine's files, and a folder is only hashed when named in
   ``model_files``.)

A model none of these covers is **not listed** (with a warning saying to pass ``model_digests``).
For a GGUF, rules 3 and 4 give the same ``sha256:<hex>`` as the builtin backend and as Ollama's
blob digest for the same file, so one model has one identity whichever backend serves it.

**Kind**: ``model_kinds[id]`` if given, else ``embedding`` when the id contains ``embed``, else
``text``. **Context length**: the model object's ``max_model_len`` (vLLM) or ``context_length``
when present.

**Prompts**: by default a plain prompt is sent to ``/v1/chat/completions`` as one user message,
as the builtin and Ollama backends do (the served models are chat/instruct models);
``prompt_mode="completion"`` sends it to ``/v1/completions`` as raw text instead.

**Token counts**: without ``on_token`` the request is not streamed and the server's ``usage`` is
exact. When streaming, ``stream_options: {"include_usage": true}`` asks for a final usage chunk
(retried once without it if the server rejects the field); servers that send none
(llama-cpp-python's, for one) get their completion tokens counted as the number of streamed
content pieces (one per token on the servers we know), and ``prompt_tokens`` reported as 0 —
not guessed.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx

from aitbc.miner.backends.base import (
    BackendError,
    ChatMessage,
    EmbeddingResult,
    GenerationParams,
    GenerationResult,
    ModelInfo,
    ModelKind,
    ModelNotServed,
    TokenCallback,
)
from aitbc.miner.backends.builtin import compute_path_digest
from aitbc.miner.backends.ollama import normalize_digest

log = logging.getLogger(__name__)

DONE = "[DONE]"


# ------------------------------------------------------------------------------- pure parsing


def iter_sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The ``data`` payloads of a server-sent-event stream, one per event.

    Follows the SSE format: ``data:`` lines (one optional space after the colon is dropped) are
    joined with newlines until a blank line ends the event; comment lines (``:``) and the
    ``event``/``id``/``retry`` fields are ignored; a last event without its blank line still counts.
    """
    buf: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if buf:
                yield "\n".join(buf)
                buf = []
            continue
        if line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        if field != "data":
            continue
        if sep and value.startswith(" "):
            value = value[1:]
        buf.append(value)
    if buf:
        yield "\n".join(buf)


def iter_sse_json(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """JSON objects from an OpenAI-style SSE stream, stopping at ``[DONE]``.

    Raises :class:`BackendError` on a payload that is not a JSON object or that carries ``error``.
    """
    for data in iter_sse_data(lines):
        if data.strip() == DONE:
            return
        try:
            obj = json.loads(data)
        except json.JSONDecodeError as e:
            raise BackendError(f"malformed SSE data: {data[:200]!r}") from e
        if not isinstance(obj, dict):
            raise BackendError(f"SSE data is not an object: {data[:200]!r}")
        if obj.get("error"):
            err = obj["error"]
            raise BackendError(f"server error: {err.get('message', err) if isinstance(err, dict) else err}")
        yield obj


def chunk_text(chunk: Mapping[str, Any], *, chat: bool) -> tuple[str, str | None]:
    """(text piece, finish_reason) of one streamed chunk; usage-only chunks give ``("", None)``."""
    choices = chunk.get("choices") or []
    if not choices:
        return "", None
    choice = choices[0]
    piece = ((choice.get("delta") or {}).get("content") if chat else choice.get("text")) or ""
    return str(piece), choice.get("finish_reason")


def normalize_base_url(base_url: str) -> str:
    """``http://h:p``, ``http://h:p/`` and ``http://h:p/v1`` all → ``http://h:p`` (``/v1`` is added per call)."""
    url = base_url.rstrip("/")
    return url.removesuffix("/v1")


# ----------------------------------------------------------------------------------- backend


class OpenAICompatBackend:
    """Runs models on an OpenAI-compatible server; lists only models with a real digest."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        model_digests: Mapping[str, str] | None = None,
        model_files: Mapping[str, str | Path] | None = None,
        model_kinds: Mapping[str, ModelKind] | None = None,
        prompt_mode: Literal["chat", "completion"] = "chat",
        timeout: float = 300.0,
        connect_timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.prompt_mode = prompt_mode
        self._is_local = httpx.URL(self.base_url).host in ("127.0.0.1", "localhost", "::1", "[::1]")
        self._digests: dict[str, str] = {}
        for model_id, digest in (model_digests or {}).items():
            norm = normalize_digest(digest)
            if norm is None:
                raise ValueError(f"model_digests[{model_id!r}] must be sha256:<64 hex digits>, got {digest!r}")
            self._digests[model_id] = norm
        self._files = {k: Path(v) for k, v in (model_files or {}).items()}
        self._kinds = dict(model_kinds or {})
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
        )
        self._lock = threading.Lock()
        self._file_digests: dict[Path, str] = {}
        self._models: dict[str, ModelInfo] = {}
        self._usage_warned = False
        self._stream_options_ok = True

    # -- http helpers ---------------------------------------------------------------------------

    def _where(self) -> str:
        return f"OpenAI-compatible server at {self.base_url}"

    @staticmethod
    def _error_text(resp: httpx.Response) -> str:
        try:
            body = resp.json()
        except ValueError:
            return resp.text[:300] or resp.reason_phrase
        if isinstance(body, dict):
            err = body.get("error", body.get("detail", body))
            if isinstance(err, dict):
                return str(err.get("message", err))[:300]
            return str(err)[:300]
        return str(body)[:300]

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            resp = self._client.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise BackendError(f"{self._where()}: {method} {path} failed: {type(e).__name__}: {e}") from e
        if resp.status_code >= 400:
            raise BackendError(f"{self._where()}: {method} {path} → HTTP {resp.status_code}: {self._error_text(resp)}")
        try:
            data = resp.json()
        except ValueError as e:
            raise BackendError(f"{self._where()}: {method} {path} returned non-JSON") from e
        if not isinstance(data, dict):
            raise BackendError(f"{self._where()}: {method} {path} returned {type(data).__name__}")
        return data

    # -- models ---------------------------------------------------------------------------------

    def _file_digest(self, path: Path) -> str:
        with self._lock:
            cached = self._file_digests.get(path)
        if cached is None:
            cached = compute_path_digest(path)
            with self._lock:
                self._file_digests[path] = cached
        return cached

    def digest_for(self, model_id: str, entry: Mapping[str, Any]) -> str | None:
        """The digest rule of the module docstring; ``None`` when the weights cannot be identified."""
        if model_id in self._digests:
            return self._digests[model_id]
        reported = entry.get("digest")
        if isinstance(reported, str) and (norm := normalize_digest(reported)) is not None:
            return norm
        path = self._files.get(model_id)
        if path is None and self._is_local:
            candidate = Path(model_id)
            if candidate.is_absolute() and candidate.is_file():
                path = candidate
        if path is not None:
            if not path.exists():
                raise BackendError(f"model_files[{model_id!r}] = {path} does not exist")
            return self._file_digest(path)
        return None

    def list_models(self) -> list[ModelInfo]:
        data = self._json("GET", "/v1/models").get("data")
        if not isinstance(data, list):
            raise BackendError(f"{self._where()}: /v1/models has no 'data' list")
        found: dict[str, ModelInfo] = {}
        for entry in data:
            model_id = entry.get("id") if isinstance(entry, dict) else None
            if not isinstance(model_id, str) or not model_id:
                continue
            digest = self.digest_for(model_id, entry)
            if digest is None:
                log.warning(
                    "%s: model %r has no known digest; not serving it (pass model_digests={%r: 'sha256:…'})",
                    self._where(),
                    model_id,
                    model_id,
                )
                continue
            kind: ModelKind = self._kinds.get(model_id) or ("embedding" if "embed" in model_id.lower() else "text")
            ctx = entry.get("max_model_len", entry.get("context_length"))
            found[model_id] = ModelInfo(
                name=model_id,
                digest=digest,
                kind=kind,
                backend=self.name,
                context_length=int(ctx) if isinstance(ctx, int) else None,
            )
        with self._lock:
            self._models = found
        return list(found.values())

    def _check(self, model: str, kind: ModelKind) -> None:
        with self._lock:
            known = dict(self._models)
        if not known:
            known = {m.name: m for m in self.list_models()}
        info = known.get(model)
        if info is None or info.kind != kind:
            served = ", ".join(n for n, i in known.items() if i.kind == kind) or "none"
            raise ModelNotServed(f"{self._where()} does not serve {kind} model {model!r} (serves: {served})")

    # -- inference ------------------------------------------------------------------------------

    def generate(
        self,
        model: str,
        *,
        prompt: str | None = None,
        messages: list[ChatMessage] | None = None,
        params: GenerationParams,
        on_token: TokenCallback | None = None,
    ) -> GenerationResult:
        if (prompt is None) == (messages is None):
            raise BackendError("give exactly one of prompt or messages")
        self._check(model, "text")
        body: dict[str, Any] = {"model": model, "max_tokens": params.max_tokens, "temperature": params.temperature}
        if params.seed is not None:
            body["seed"] = params.seed
        if params.top_p is not None:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = list(params.stop)
        chat = messages is not None or self.prompt_mode == "chat"
        if messages is not None:
            body["messages"] = [{"role": m.role, "content": m.content} for m in messages]
        elif chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        path = "/v1/chat/completions" if chat else "/v1/completions"
        if on_token is None:
            return self._complete(path, body, chat=chat)
        return self._stream(path, body, chat=chat, on_token=on_token)

    def _complete(self, path: str, body: dict[str, Any], *, chat: bool) -> GenerationResult:
        data = self._json("POST", path, {**body, "stream": False})
        choices = data.get("choices") or []
        if not choices:
            raise BackendError(f"{self._where()}: {path} returned no choices")
        choice = choices[0]
        text = (choice.get("message") or {}).get("content") if chat else choice.get("text")
        usage = data.get("usage") or {}
        return GenerationResult(
            text=str(text or ""),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        )

    def _stream(self, path: str, body: dict[str, Any], *, chat: bool, on_token: TokenCallback) -> GenerationResult:
        request = {**body, "stream": True}
        if self._stream_options_ok:
            request["stream_options"] = {"include_usage": True}
        pieces: list[str] = []
        finish = "stop"
        usage: dict[str, Any] | None = None
        try:
            with self._client.stream("POST", path, json=request) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    text = self._error_text(resp)
                    if resp.status_code in (400, 422) and "stream_options" in text and "stream_options" in request:
                        self._stream_options_ok = False
                        return self._stream(path, body, chat=chat, on_token=on_token)
                    raise BackendError(f"{self._where()}: POST {path} → HTTP {resp.status_code}: {text}")
                for chunk in iter_sse_json(resp.iter_lines()):
                    piece, reason = chunk_text(chunk, chat=chat)
                    if piece:
                        pieces.append(piece)
                        on_token(piece)
                    if reason:
                        finish = "length" if reason == "length" else "stop"
                    if isinstance(chunk.get("usage"), dict):
                        usage = chunk["usage"]
        except httpx.HTTPError as e:
            raise BackendError(f"{self._where()}: POST {path} failed: {type(e).__name__}: {e}") from e
        if usage is None:
            if not self._usage_warned:
                log.warning("%s sends no usage when streaming; counting streamed pieces as tokens", self._where())
                self._usage_warned = True
            prompt_tokens, completion_tokens = 0, len(pieces)
        else:
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completion_tokens = int(usage.get("completion_tokens") or 0)
        return GenerationResult(
            text="".join(pieces),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish,
        )

    def embed(self, model: str, texts: list[str]) -> EmbeddingResult:
        self._check(model, "embedding")
        if not texts:
            return EmbeddingResult(vectors=[], prompt_tokens=0, dimensions=0)
        data = self._json("POST", "/v1/embeddings", {"model": model, "input": list(texts)})
        items = data.get("data")
        if not isinstance(items, list) or len(items) != len(texts):
            raise BackendError(f"{self._where()}: /v1/embeddings returned no or the wrong number of vectors")
        ordered = sorted(items, key=lambda d: int(d.get("index", 0)))
        vectors = [[float(x) for x in d["embedding"]] for d in ordered]
        usage = data.get("usage") or {}
        return EmbeddingResult(
            vectors=vectors,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            dimensions=len(vectors[0]) if vectors else 0,
        )

    def close(self) -> None:
        self._client.close()
