"""Continuous batching on the real models: several generations through one model instance give
exactly the text each gives alone (the audit of receipts relies on it), whatever the thread count,
the arrival order or the number of slots; Gemma 3 270M is the second built-in text model."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from miner_helpers import needs_gemma, needs_text

from aitbc.miner.backends.base import BackendError, ChatMessage, GenerationParams, GenerationResult
from aitbc.miner.backends.builtin import GEMMA_MODEL, TEXT_MODEL, BuiltinBackend, compute_file_digest
from aitbc.miner.backends.weights import find_gemma_gguf

PROMPTS = [
    "What is the capital of France?",
    "Write one short sentence about the sea.",
    "List three colours.",
    "Explain gravity to a child.",
    "Tell me a joke about cats.",
    "Name a large animal.",
]
GREEDY = GenerationParams(max_tokens=40, temperature=0.0)


def run_concurrently(
    backend: BuiltinBackend, model: str, prompts: list[str], params: GenerationParams, stagger_s: float = 0.0
) -> list[GenerationResult]:
    """Every prompt from its own thread (as the daemon's workers call the backend)."""
    results: list[GenerationResult | None] = [None] * len(prompts)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results[i] = backend.generate(model, prompt=prompts[i], params=params)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
        time.sleep(stagger_s)
    for t in threads:
        t.join()
    assert not errors, errors
    return [r for r in results if r is not None]


@pytest.fixture(scope="module")
def batched() -> Iterator[BuiltinBackend]:
    backend = BuiltinBackend(slots=4, enable_embedding=False, text_models=(TEXT_MODEL, GEMMA_MODEL))
    yield backend
    backend.close()


@needs_text
def test_batched_text_equals_single_stream_text(batched: BuiltinBackend) -> None:
    alone = [batched.generate(TEXT_MODEL, prompt=p, params=GREEDY) for p in PROMPTS]
    together = run_concurrently(batched, TEXT_MODEL, PROMPTS, GREEDY)  # 6 requests, 4 slots: 2 wait
    staggered = run_concurrently(batched, TEXT_MODEL, PROMPTS[::-1], GREEDY, stagger_s=0.05)[::-1]
    assert together == alone
    assert staggered == alone
    assert len({r.text for r in alone}) == len(PROMPTS)  # the prompts really gave different texts


@needs_text
def test_sampled_text_is_reproducible_in_a_batch(batched: BuiltinBackend) -> None:
    hot = GenerationParams(max_tokens=24, temperature=0.8, seed=7)
    alone = batched.generate(TEXT_MODEL, prompt=PROMPTS[1], params=hot)
    together = run_concurrently(batched, TEXT_MODEL, [PROMPTS[1], PROMPTS[2], PROMPTS[1]], hot)
    assert together[0] == alone and together[2] == alone
    other_seed = batched.generate(TEXT_MODEL, prompt=PROMPTS[1], params=GenerationParams(24, 0.8, seed=8))
    assert other_seed.text != alone.text


@needs_text
def test_thread_count_and_slot_count_do_not_change_the_text(batched: BuiltinBackend) -> None:
    one_thread = BuiltinBackend(n_threads=1, slots=1, enable_embedding=False)
    try:
        for prompt in PROMPTS[:3]:
            assert one_thread.generate(TEXT_MODEL, prompt=prompt, params=GREEDY) == batched.generate(
                TEXT_MODEL, prompt=prompt, params=GREEDY
            )
        assert one_thread.engine_threads() == 1
    finally:
        one_thread.close()


@needs_text
def test_an_aborted_generation_frees_its_slot_and_leaves_the_others_alone(batched: BuiltinBackend) -> None:
    class Stop(Exception):
        pass

    seen: list[str] = []

    def abort_after_two(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 2:
            raise Stop

    expected = batched.generate(TEXT_MODEL, prompt=PROMPTS[3], params=GREEDY)
    outcome: list[GenerationResult] = []
    other = threading.Thread(
        target=lambda: outcome.append(batched.generate(TEXT_MODEL, prompt=PROMPTS[3], params=GREEDY))
    )
    other.start()
    with pytest.raises(Stop):
        batched.generate(TEXT_MODEL, prompt=PROMPTS[0], params=GREEDY, on_token=abort_after_two)
    other.join()
    assert outcome == [expected] and len(seen) == 2
    # every slot is free again: a full batch still runs
    assert run_concurrently(batched, TEXT_MODEL, PROMPTS[:4], GREEDY)[3] == expected


@needs_text
def test_a_prompt_longer_than_the_context_is_refused(batched: BuiltinBackend) -> None:
    small = BuiltinBackend(n_ctx=64, slots=1, enable_embedding=False)
    try:
        with pytest.raises(BackendError, match="context window"):
            small.generate(TEXT_MODEL, prompt="word " * 200, params=GREEDY)
        near = small.generate(TEXT_MODEL, prompt="Hi", params=GenerationParams(max_tokens=500))
        assert near.finish_reason in ("stop", "length") and near.prompt_tokens + near.completion_tokens <= 64
    finally:
        small.close()


@needs_gemma
def test_gemma_is_listed_with_its_digest_and_batches_deterministically(batched: BuiltinBackend) -> None:
    models = {m.name: m for m in batched.list_models()}
    path = find_gemma_gguf()
    assert path is not None
    assert models[GEMMA_MODEL].digest == compute_file_digest(path)
    assert models[GEMMA_MODEL].digest == "sha256:" + "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    prompts = ["The capital of France is", "Water boils at", "The three primary colours are", "Once upon a time"]
    alone = [batched.generate(GEMMA_MODEL, prompt=p, params=GREEDY) for p in prompts]
    assert run_concurrently(batched, GEMMA_MODEL, prompts, GREEDY) == alone
    assert "France" in alone[0].text or "Paris" in alone[0].text, alone[0].text  # a base model continues text
    chat = batched.generate(
        GEMMA_MODEL, messages=[ChatMessage("user", "Say hello.")], params=GenerationParams(max_tokens=24)
    )
    assert "<end_of_turn>" not in chat.text and chat.completion_tokens > 0
    # the two models run side by side in one miner
    assert batched.generate(TEXT_MODEL, prompt=PROMPTS[0], params=GREEDY).text != alone[0].text
