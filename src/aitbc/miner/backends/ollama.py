"""A backend that speaks Ollama's HTTP API (default ``http://127.0.0.1:11434``) with httpx.

Endpoints used: ``GET /api/tags`` (installed models), ``POST /api/show`` (kind, context length,
embedding size, weights blob), ``POST /api/generate`` and ``POST /api/chat`` with ``"stream": true``
(NDJSON, one JSON object per line; the last has ``"done": true`` with ``done_reason``,
``prompt_eval_count`` and ``eval_count``), ``POST /api/embed``.

Names: Ollama calls a model ``name:tag``; a ``:latest`` tag is dropped from the listed name
(``llama3.2:latest`` is listed as ``llama3.2``, Ollama's own short form), and both spellings are
accepted by :meth:`OllamaBackend.generate` / :meth:`OllamaBackend.embed`. Any other model name is
refused with :class:`ModelNotServed` before anything is sent.

Digest rule: the digest of a model is the sha256 of its **weights blob** — Ollama stores every
GGUF as ``blobs/sha256-<hex>`` and ``/api/show``'s modelfile names it on its ``FROM`` line — so it
is the same ``sha256:<hex>`` the builtin and OpenAI-compatible backends compute for the same GGUF
file. Only when no blob can be found is the manifest digest from ``/api/tags`` used (it still
changes whenever the model is re-pulled or edited).

Kind: ``/api/show``'s ``capabilities`` (``embedding`` without ``completion`` → an embedding model);
servers too old to report capabilities fall back to the model family (BERT families embed).

Generation options sent: ``num_predict`` (max_tokens), ``temperature``, ``seed`` (when set),
``stop`` (when any). A plain prompt goes to ``/api/generate``, which applies the model's template,
like the builtin backend does; messages go to ``/api/chat``. Every failure — server down, HTTP
error, an ``{"error": …}`` line mid-stream, a malformed reply — becomes a :class:`BackendError`
whose message says which server and what went wrong.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Final

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

log = logging.getLogger(__name__)

DEFAULT_BASE_URL: Final = "http://127.0.0.1:11434"
_BLOB_RE: Final = re.compile(r"^FROM\s+\S*sha256[-:]([0-9a-fA-F]{64})\s*$", re.MULTILINE)
_HEX64_RE: Final = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")
_EMBEDDING_FAMILIES: Final = ("bert", "nomic-bert", "xlm-roberta", "jina-bert")


# ------------------------------------------------------------------------------- pure parsing


def iter_ndjson(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Decode Ollama's NDJSON stream: one JSON object per non-blank line.

    Raises :class:`BackendError` on a line that is not a JSON object, and on an ``{"error": …}``
    object (how Ollama reports a failure after the response has started).
    """
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise BackendError(f"malformed NDJSON line from ollama: {line[:200]!r}") from e
        if not isinstance(obj, dict):
            raise BackendError(f"NDJSON line is not an object: {line[:200]!r}")
        if "error" in obj:
            raise BackendError(f"ollama error: {obj['error']}")
        yield obj


def parse_blob_digest(modelfile: str) -> str | None:
    """``sha256:<hex>`` of the weights blob named on a modelfile's ``FROM`` line, if any."""
    m = _BLOB_RE.search(modelfile)
    return "sha256:" + m.group(1).lower() if m else None


def normalize_digest(value: str) -> str | None:
    """``sha256:<hex>`` from ``<hex>`` or ``sha256:<hex>`` (64 hex digits), else ``None``."""
    m = _HEX64_RE.match(value.strip())
    return "sha256:" + m.group(1).lower() if m else None


def short_name(full: str) -> str:
    """Ollama's short form: ``llama3.2:latest`` → ``llama3.2``; other tags are kept."""
    return full.removesuffix(":latest")


def model_kind_from_show(show: dict[str, Any]) -> ModelKind:
    caps = show.get("capabilities")
    if isinstance(caps, list) and caps:
        return "embedding" if "embedding" in caps and "completion" not in caps else "text"
    details = show.get("details") or {}
    families = [details.get("family") or "", *(details.get("families") or [])]
    return "embedding" if any(str(f).lower() in _EMBEDDING_FAMILIES for f in families) else "text"


def model_info_int(show: dict[str, Any], suffix: str) -> int | None:
    """An integer from ``model_info`` such as ``llama.context_length`` (architecture prefix varies)."""
    info = show.get("model_info") or {}
    arch = info.get("general.architecture")
    if arch and isinstance(info.get(f"{arch}.{suffix}"), int):
        return int(info[f"{arch}.{suffix}"])
    for key, value in info.items():
        if key.endswith("." + suffix) and isinstance(value, int):
            return int(value)
    return None


def ollama_options(params: GenerationParams) -> dict[str, Any]:
    options: dict[str, Any] = {"num_predict": params.max_tokens, "temperature": params.temperature}
    if params.seed is not None:
        options["seed"] = params.seed
    if params.top_p is not None:
        options["top_p"] = params.top_p
    if params.stop:
        options["stop"] = list(params.stop)
    return options


# ----------------------------------------------------------------------------------- backend


class OllamaBackend:
    """Runs models on an Ollama server; lists only what ``/api/tags`` says is installed."""

    name = "ollama"

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = 300.0,
        connect_timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
        )
        self._lock = threading.Lock()
        self._models: dict[str, tuple[str, ModelInfo]] = {}
        """Listed name → (Ollama's full name, info), from the last :meth:`list_models`."""

    # -- http helpers ---------------------------------------------------------------------------

    def _fail(self, what: str, e: Exception) -> BackendError:
        return BackendError(f"ollama at {self.base_url}: {what} failed: {type(e).__name__}: {e}")

    @staticmethod
    def _error_text(resp: httpx.Response) -> str:
        try:
            body = resp.json()
        except ValueError:
            return resp.text[:300] or resp.reason_phrase
        if isinstance(body, dict) and "error" in body:
            return str(body["error"])
        return str(body)[:300]

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            resp = self._client.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise self._fail(f"{method} {path}", e) from e
        if resp.status_code >= 400:
            raise BackendError(
                f"ollama at {self.base_url}: {method} {path} → HTTP {resp.status_code}: {self._error_text(resp)}"
            )
        try:
            data = resp.json()
        except ValueError as e:
            raise BackendError(f"ollama at {self.base_url}: {method} {path} returned non-JSON") from e
        if not isinstance(data, dict):
            raise BackendError(f"ollama at {self.base_url}: {method} {path} returned {type(data).__name__}")
        return data

    # -- models ---------------------------------------------------------------------------------

    def list_models(self) -> list[ModelInfo]:
        tags = self._json("GET", "/api/tags")
        entries = tags.get("models")
        if not isinstance(entries, list):
            raise BackendError(f"ollama at {self.base_url}: /api/tags has no 'models' list")
        found: dict[str, tuple[str, ModelInfo]] = {}
        for entry in entries:
            full = (entry.get("model") or entry.get("name")) if isinstance(entry, dict) else None
            if not isinstance(full, str) or not full:
                continue
            show = self._json("POST", "/api/show", {"model": full})
            digest = parse_blob_digest(str(show.get("modelfile") or ""))
            if digest is None:
                digest = normalize_digest(str(entry.get("digest") or ""))
            if digest is None:
                log.warning("ollama: model %s has no digest; not serving it", full)
                continue
            kind = model_kind_from_show(show)
            info = ModelInfo(
                name=short_name(full),
                digest=digest,
                kind=kind,
                backend=self.name,
                context_length=model_info_int(show, "context_length"),
                dimensions=model_info_int(show, "embedding_length") if kind == "embedding" else None,
            )
            found[info.name] = (full, info)
        with self._lock:
            self._models = found
        return [info for _, info in found.values()]

    def _resolve(self, model: str, kind: ModelKind) -> str:
        """Ollama's full name for a served model of this kind, or :class:`ModelNotServed`."""
        with self._lock:
            known = dict(self._models)
        if not known:
            self.list_models()
            with self._lock:
                known = dict(self._models)
        hit = known.get(short_name(model))
        if hit is None or hit[1].kind != kind:
            served = ", ".join(n for n, (_, i) in known.items() if i.kind == kind) or "none"
            raise ModelNotServed(f"ollama at {self.base_url} does not serve {kind} model {model!r} (serves: {served})")
        return hit[0]

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
        full = self._resolve(model, "text")
        body: dict[str, Any] = {"model": full, "stream": True, "options": ollama_options(params)}
        if messages is not None:
            path = "/api/chat"
            body["messages"] = [{"role": m.role, "content": m.content} for m in messages]
        else:
            path = "/api/generate"
            body["prompt"] = prompt
        pieces: list[str] = []
        final: dict[str, Any] | None = None
        try:
            with self._client.stream("POST", path, json=body) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    text = self._error_text(resp)
                    if resp.status_code == 404 and "not found" in text:
                        raise ModelNotServed(f"ollama at {self.base_url}: {text}")
                    raise BackendError(f"ollama at {self.base_url}: POST {path} → HTTP {resp.status_code}: {text}")
                for obj in iter_ndjson(resp.iter_lines()):
                    piece = (obj.get("message") or {}).get("content") if messages is not None else obj.get("response")
                    if piece:
                        pieces.append(str(piece))
                        if on_token is not None:
                            on_token(str(piece))
                    if obj.get("done"):
                        final = obj
                        break
        except httpx.HTTPError as e:
            raise self._fail(f"POST {path}", e) from e
        if final is None:
            raise BackendError(f"ollama at {self.base_url}: stream from {path} ended without a done line")
        reason = final.get("done_reason")
        return GenerationResult(
            text="".join(pieces),
            prompt_tokens=int(final.get("prompt_eval_count") or 0),
            completion_tokens=int(final.get("eval_count") or len(pieces)),
            finish_reason="length" if reason == "length" else "stop",
        )

    def embed(self, model: str, texts: list[str]) -> EmbeddingResult:
        full = self._resolve(model, "embedding")
        if not texts:
            return EmbeddingResult(vectors=[], prompt_tokens=0, dimensions=0)
        data = self._json("POST", "/api/embed", {"model": full, "input": list(texts)})
        vectors = data.get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            raise BackendError(f"ollama at {self.base_url}: /api/embed returned no or the wrong number of vectors")
        out = [[float(x) for x in v] for v in vectors]
        return EmbeddingResult(
            vectors=out,
            prompt_tokens=int(data.get("prompt_eval_count") or 0),
            dimensions=len(out[0]) if out else 0,
        )

    def close(self) -> None:
        self._client.close()
