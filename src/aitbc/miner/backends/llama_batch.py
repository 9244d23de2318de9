"""Continuous batching on llama.cpp: several generations decoded together through one model.

One :class:`BatchedLlama` owns a model, one llama.cpp context with ``slots`` sequences, and a
scheduler thread. :meth:`BatchedLlama.generate` (called from any thread) queues a request and
waits; the scheduler admits queued requests into free slots and runs one ``llama_decode`` per
step holding the next token of every running sequence plus pieces of newly admitted prompts, so
four jobs cost little more per step than one (the weights are read once per step, not once per
job). A sequence leaves its slot when it ends; the next queued request takes it at the next step.

Determinism (what receipts and audits rely on): the same (model, prompt, parameters) gives the same
tokens whether it runs alone or next to other sequences, and whatever the thread count:

- each sequence has its own KV cache stream (``kv_unified=false``), cleared when it takes the slot,
  so its keys and values sit at the same cells as when it runs alone;
- llama.cpp computes every output row of a matrix product on its own, so the other rows of a step
  (other sequences' next tokens) do not change a sequence's numbers;
- a step carries the prompt of at most ONE sequence, cut into chunks of a fixed size: with the
  prompts of several sequences in one step Gemma 3's logits moved by up to ~1.0 (measured), and a
  cut that depended on the other sequences would move the chunk boundaries;
- weight repacking into "extra buffer types" (AMX / AVX repacked layouts) is off by default: those
  kernels use a different path for 1 row than for 4 rows, and the AMX one crashes llama-cpp-python
  0.3.36 on prompts of 3+ tokens on the Xeon we measured on (``extra_buffers=True`` turns it on);
- greedy decoding (temperature 0) is an argmax; sampling uses one seeded chain per request (seed
  ``params.seed``, or 0 when none is given).

Text matches ``Llama.create_chat_completion``: the same chat template (the GGUF's own), the same
tokenisation, stop strings (the template's and the caller's), the same token counts (the
end-of-generation token is not counted, the token that completes a stop string is).
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aitbc.miner.backends.base import BackendError, GenerationParams, GenerationResult
from aitbc.miner.backends.tuning import ThreadTuner

log = logging.getLogger(__name__)

TOP_K, TOP_P, MIN_P = 40, 0.95, 0.05
"""llama-cpp-python's create_completion defaults, used when temperature > 0 (``params.top_p`` overrides TOP_P)."""

PieceCallback = Callable[[str], None]


@dataclass
class _Request:
    tokens: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: list[str]
    on_piece: PieceCallback | None
    done: threading.Event = field(default_factory=threading.Event)
    slot: int = -1
    fed: int = 0
    """Prompt tokens already decoded."""
    last: int = -1
    """The last sampled token, fed at the next step."""
    completion: list[int] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)
    emitted: int = 0
    """Characters of the text already handed to ``on_piece``."""
    text: str = ""
    counted: int = 0
    finish: str = "length"
    error: BaseException | None = None
    sampler: Any = None


def split_stop(text: str, stops: list[str]) -> tuple[str, bool, int]:
    """``(text cut at the first stop string, stopped?, characters safe to emit)``.

    While no stop string has appeared, the tail that could still grow into one is held back (not
    safe to emit), so a stop string never leaks out piece by piece.
    """
    first = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    if first >= 0:
        return text[:first], True, first
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return text, False, len(text) - hold


class BatchedLlama:
    """A GGUF model served to up to ``slots`` concurrent generations by one scheduler thread."""

    def __init__(
        self,
        path: str,
        *,
        slots: int,
        n_ctx: int,
        tuner: ThreadTuner,
        gpu_layers: int = 0,
        extra_buffers: bool = False,
        chat: bool = True,
        n_batch: int = 512,
        flash_attn: bool = False,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.lib: Any = importlib.import_module("llama_cpp")
        internals: Any = importlib.import_module("llama_cpp._internals")
        importlib.import_module("llama_cpp._logger").set_verbose(False)  # llama.cpp's own logs: errors only
        lib = self.lib
        self.slots = slots
        self.n_ctx = n_ctx
        self.n_batch = max(n_batch, 2 * slots)
        self._prompt_chunk = self.n_batch - slots
        """Prompt tokens per step: always leaves room for the other sequences' next tokens."""
        self.tuner = tuner
        mparams = lib.llama_model_default_params()
        mparams.n_gpu_layers = gpu_layers
        mparams.use_extra_bufts = extra_buffers
        self.model = internals.LlamaModel(path_model=path, params=mparams, verbose=False)
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = n_ctx * slots
        cparams.n_batch = self.n_batch
        cparams.n_ubatch = self.n_batch
        cparams.n_seq_max = slots
        cparams.kv_unified = False
        # llama-cpp-python's Llama turns flash attention off unless asked; so do we, so that the
        # text is the same as the library's own create_chat_completion gives
        cparams.flash_attn_type = (
            lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        cparams.n_threads = cparams.n_threads_batch = tuner.candidates[0]
        self._ctx = lib.llama_init_from_model(self.model.model, cparams)
        if not self._ctx:
            self.model.close()
            raise BackendError(f"llama.cpp could not create a context for {path}")
        self._mem = lib.llama_get_memory(self._ctx)
        self._vocab = self.model.vocab
        self._batch = lib.llama_batch_init(self.n_batch, 0, 1)
        self._threads = -1
        self._piece_buf = ctypes.create_string_buffer(64)
        self._formatter = self._make_formatter() if chat else None
        self._queue: deque[_Request] = deque()
        self._active: dict[int, _Request] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="llama-batch", daemon=True)
        self._thread.start()

    # -- prompts --------------------------------------------------------------------------------

    def _make_formatter(self) -> Any:
        template = self.model.metadata().get("tokenizer.chat_template")
        if not template:
            return None
        fmt: Any = importlib.import_module("llama_cpp.llama_chat_format")
        eos, bos = self.model.token_eos(), self.model.token_bos()
        return fmt.Jinja2ChatFormatter(
            template=template,
            eos_token=self.model.token_get_text(eos) if eos != -1 else "",
            bos_token=self.model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )

    @property
    def has_chat_template(self) -> bool:
        return self._formatter is not None

    def encode_chat(self, messages: list[dict[str, str]]) -> tuple[list[int], list[str]]:
        """Prompt tokens and the template's stop strings, exactly as create_chat_completion makes them."""
        if self._formatter is None:
            raise BackendError("this model has no chat template")
        result = self._formatter(messages=messages)
        tokens = self.model.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return list(tokens), [s for s in stop if s]

    def encode_text(self, text: str, *, special: bool = False) -> list[int]:
        """A raw prompt (with the model's BOS token); ``special``: read ``<tags>`` as control tokens."""
        return list(self.model.tokenize(text.encode("utf-8"), add_bos=True, special=special))

    # -- the public call ------------------------------------------------------------------------

    def generate(
        self,
        tokens: list[int],
        params: GenerationParams,
        *,
        extra_stop: list[str] | None = None,
        on_piece: PieceCallback | None = None,
    ) -> GenerationResult:
        """Generate from prompt ``tokens``; blocks until done. ``on_piece`` runs on the scheduler thread.

        An exception raised by ``on_piece`` ends this generation (its slot is freed at once) and is
        re-raised here unchanged.
        """
        if not tokens:
            raise BackendError("empty prompt")
        if len(tokens) >= self.n_ctx:
            raise BackendError(f"prompt of {len(tokens)} tokens does not fit the context window ({self.n_ctx})")
        request = _Request(
            tokens=tokens,
            max_tokens=min(params.max_tokens, self.n_ctx - len(tokens)),
            temperature=params.temperature,
            top_p=TOP_P if params.top_p is None else params.top_p,
            seed=0 if params.seed is None else params.seed,
            stop=[*(extra_stop or []), *params.stop],
            on_piece=on_piece,
        )
        with self._cond:
            if self._closed:
                raise BackendError("model is closed")
            self._queue.append(request)
            self._cond.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return GenerationResult(
            text=request.text,
            prompt_tokens=len(tokens),
            completion_tokens=request.counted,
            finish_reason=request.finish,
        )

    # -- the scheduler --------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._queue and not self._active:
                    self._cond.wait()
                if self._closed:
                    break
                self._admit()
            try:
                self._step()
            except BaseException as e:  # the context is unusable after a failed decode: fail all
                log.exception("llama batch step failed")
                for request in list(self._active.values()):
                    self._finish(request, error=BackendError(f"decode failed: {e}"))
        with self._cond:
            pending = list(self._queue) + list(self._active.values())
            self._queue.clear()
        for request in pending:
            self._finish(request, error=BackendError("model is closed"))

    def _admit(self) -> None:
        free = [s for s in range(self.slots) if s not in self._active]
        while free and self._queue:
            request = self._queue.popleft()
            request.slot = free.pop(0)
            self.lib.llama_memory_seq_rm(self._mem, request.slot, -1, -1)
            request.sampler = self._make_sampler(request)
            self._active[request.slot] = request

    def _make_sampler(self, request: _Request) -> Any:
        lib = self.lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if request.temperature <= 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(TOP_K))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(request.top_p, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(MIN_P, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(request.temperature))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(request.seed & 0xFFFFFFFF))
        return chain

    def _step(self) -> None:
        lib, batch = self.lib, self._batch
        n = 0
        wants: list[tuple[_Request, int]] = []
        prompt_tokens = False

        def add(token: int, pos: int, seq: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq
            batch.logits[n] = logits
            n += 1

        # running sequences first (one token each), then ONE sequence's prompt, in chunks of a fixed
        # size: prompts of several sequences in one step change Gemma 3's numbers (measured), and a
        # chunking that depended on the other sequences would change where a prompt is split
        for request in self._active.values():
            if request.fed == len(request.tokens):
                wants.append((request, n))
                add(request.last, len(request.tokens) + len(request.completion) - 1, request.slot, True)
        for request in self._active.values():
            left = len(request.tokens) - request.fed
            if left:
                take = min(left, self._prompt_chunk)
                for i in range(request.fed, request.fed + take):
                    last = i == len(request.tokens) - 1
                    if last:
                        wants.append((request, n))
                    add(request.tokens[i], i, request.slot, last)
                request.fed += take
                prompt_tokens = True
                break
        if n == 0:
            return
        batch.n_tokens = n
        shape = 0 if prompt_tokens else n
        threads = self.tuner.best(1) if prompt_tokens else self.tuner.choose(shape)
        if threads != self._threads:
            lib.llama_set_n_threads(self._ctx, threads, threads)
            self._threads = threads
        started = time.perf_counter()
        rc = lib.llama_decode(self._ctx, batch)
        if rc != 0:
            raise BackendError(f"llama_decode returned {rc}")
        if not prompt_tokens:
            self.tuner.record(shape, threads, time.perf_counter() - started)
        for request, index in wants:
            token = int(lib.llama_sampler_sample(request.sampler, self._ctx, index))
            self._on_token(request, token)

    def _on_token(self, request: _Request, token: int) -> None:
        if self.lib.llama_vocab_is_eog(self._vocab, token):
            request.finish = "stop"
            self._finish(request)
            return
        request.completion.append(token)
        request.counted += 1
        request.last = token
        request.raw += self._piece(token)
        # bytes of a character split over tokens are left out until its last byte arrives
        text, stopped, safe = split_stop(request.raw.decode("utf-8", errors="ignore"), request.stop)
        request.text = text
        out_of_room = request.counted >= request.max_tokens
        if stopped or out_of_room:
            safe = len(text)
        if safe > request.emitted:
            piece, request.emitted = text[request.emitted : safe], safe
            if request.on_piece is not None:
                try:
                    request.on_piece(piece)
                except BaseException as e:
                    self._finish(request, error=e)
                    return
        if stopped or out_of_room:
            request.finish = "stop" if stopped else "length"
            self._finish(request)

    def _piece(self, token: int) -> bytes:
        """The token's text bytes (special tokens give none), as llama-cpp-python detokenizes."""
        n = self.lib.llama_token_to_piece(self._vocab, token, self._piece_buf, len(self._piece_buf), 0, False)
        if n < 0:
            self._piece_buf = ctypes.create_string_buffer(-n)
            n = self.lib.llama_token_to_piece(self._vocab, token, self._piece_buf, len(self._piece_buf), 0, False)
        return self._piece_buf.raw[:n]

    def _finish(self, request: _Request, error: BaseException | None = None) -> None:
        request.error = error
        if request.slot >= 0 and self._active.get(request.slot) is request:
            del self._active[request.slot]
        if request.sampler is not None:
            self.lib.llama_sampler_free(request.sampler)
            request.sampler = None
        request.done.set()

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def threads(self) -> int:
        """The thread count of the last decode step."""
        return self._threads

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        self.lib.llama_batch_free(self._batch)
        self.lib.llama_free(self._ctx)
        self.model.close()


_PLAIN_LOCK = threading.Lock()


def open_plain_llama(path: str, *, n_ctx: int, n_threads: int, flash_attn: bool, extra_buffers: bool) -> Any:
    """llama-cpp-python's own ``Llama`` with the settings :class:`BatchedLlama` uses.

    The reference the tests and ``bench/inference.py`` compare against ("raw llama-cpp-python").
    ``Llama`` has no argument for weight repacking, so llama.cpp's default model parameters are
    swapped for the duration of the load (under a lock).
    """
    lib: Any = importlib.import_module("llama_cpp")
    module: Any = importlib.import_module("llama_cpp.llama")
    with _PLAIN_LOCK:
        original = module.llama_cpp.llama_model_default_params

        def params() -> Any:
            mparams = original()
            mparams.use_extra_bufts = extra_buffers
            return mparams

        module.llama_cpp.llama_model_default_params = params
        try:
            return lib.Llama(
                path,
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                flash_attn=flash_attn,
                seed=0,
                verbose=False,
            )
        finally:
            module.llama_cpp.llama_model_default_params = original
