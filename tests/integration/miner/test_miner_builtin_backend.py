"""The builtin backend on the real models: SmolLM2-135M-Instruct (llama-cpp) and all-MiniLM-L6-v2."""

from __future__ import annotations

import math
import re

import pytest
from miner_helpers import needs_embedding, needs_text

from aitbc.miner.backends.base import ChatMessage, GenerationParams, ModelNotServed
from aitbc.miner.backends.builtin import (
    EMBEDDING_MODEL,
    TEXT_MODEL,
    BuiltinBackend,
    compute_directory_digest,
    compute_file_digest,
    find_minilm_dir,
    find_smollm2_gguf,
)
from aitbc.miner.backends.llama_batch import open_plain_llama

PROMPT = "Write one short sentence about the sea."
GREEDY = GenerationParams(max_tokens=16, temperature=0.0, seed=42)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def looks_like_english(text: str) -> bool:
    words = re.findall(r"[A-Za-z]+", text)
    return len(words) >= 3 and sum(c.isascii() for c in text) / len(text) > 0.9


@needs_text
@needs_embedding
def test_lists_exactly_its_models_with_weight_digests(builtin_backend: BuiltinBackend) -> None:
    models = {m.name: m for m in builtin_backend.list_models()}
    assert set(models) == {TEXT_MODEL, EMBEDDING_MODEL}
    gguf, minilm = find_smollm2_gguf(), find_minilm_dir()
    assert gguf is not None and minilm is not None
    assert models[TEXT_MODEL].digest == compute_file_digest(gguf)
    assert models[TEXT_MODEL].kind == "text" and models[TEXT_MODEL].backend == "builtin"
    assert models[EMBEDDING_MODEL].digest == compute_directory_digest(minilm)
    assert models[EMBEDDING_MODEL].kind == "embedding" and models[EMBEDDING_MODEL].dimensions == 384
    # the same on a fresh instance (i.e. on every run), and computed only once per instance
    assert {m.name: m.digest for m in BuiltinBackend().list_models()} == {n: m.digest for n, m in models.items()}


@needs_text
def test_generate_is_deterministic_at_temperature_zero(builtin_backend: BuiltinBackend) -> None:
    first = builtin_backend.generate(TEXT_MODEL, prompt=PROMPT, params=GREEDY)
    # an unrelated request in between must not change the next answer (no KV-cache carry-over)
    builtin_backend.generate(TEXT_MODEL, prompt="List three colours.", params=GREEDY)
    second = builtin_backend.generate(TEXT_MODEL, prompt=PROMPT, params=GREEDY)
    assert first == second
    assert first.text.strip() and looks_like_english(first.text), first.text
    assert 0 < first.completion_tokens <= GREEDY.max_tokens
    assert first.prompt_tokens > 5
    assert first.finish_reason in ("stop", "length")


@needs_text
def test_streamed_pieces_concatenate_to_the_text(builtin_backend: BuiltinBackend) -> None:
    pieces: list[str] = []
    streamed = builtin_backend.generate(TEXT_MODEL, prompt=PROMPT, params=GREEDY, on_token=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == streamed.text
    assert len(pieces) <= streamed.completion_tokens
    assert streamed == builtin_backend.generate(TEXT_MODEL, prompt=PROMPT, params=GREEDY)


@needs_text
def test_prompt_is_one_user_message_through_the_chat_template(builtin_backend: BuiltinBackend) -> None:
    as_prompt = builtin_backend.generate(TEXT_MODEL, prompt=PROMPT, params=GREEDY)
    as_chat = builtin_backend.generate(TEXT_MODEL, messages=[ChatMessage("user", PROMPT)], params=GREEDY)
    assert as_prompt == as_chat
    with_system = builtin_backend.generate(
        TEXT_MODEL,
        messages=[ChatMessage("system", "You answer in French."), ChatMessage("user", PROMPT)],
        params=GREEDY,
    )
    assert with_system.prompt_tokens != as_chat.prompt_tokens


@needs_text
def test_text_and_token_counts_match_llama_cpp_python(builtin_backend: BuiltinBackend) -> None:
    """Our batched engine gives the same text and ``usage`` as llama-cpp-python's own
    ``Llama.create_chat_completion`` with the same llama.cpp settings (flash attention on,
    no weight repacking)."""
    path = find_smollm2_gguf()
    assert path is not None
    ref_llm = open_plain_llama(str(path), n_ctx=2048, n_threads=2, flash_attn=True, extra_buffers=False)
    try:
        for params in (GREEDY, GenerationParams(max_tokens=32, temperature=0.0, seed=1, stop=(",", "."))):
            ours = builtin_backend.generate(TEXT_MODEL, prompt=PROMPT, params=params)
            ref_llm.reset()
            ref = ref_llm.create_chat_completion(
                messages=[{"role": "user", "content": PROMPT}],
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                seed=params.seed,
                stop=list(params.stop),
            )
            assert ours.text == ref["choices"][0]["message"]["content"]
            assert (ours.prompt_tokens, ours.completion_tokens) == (
                ref["usage"]["prompt_tokens"],
                ref["usage"]["completion_tokens"],
            )
    finally:
        ref_llm.close()


@needs_text
def test_length_and_stop_finish_reasons(builtin_backend: BuiltinBackend) -> None:
    short = builtin_backend.generate(
        TEXT_MODEL, prompt="Tell me a long story about dragons.", params=GenerationParams(max_tokens=4)
    )
    assert (short.finish_reason, short.completion_tokens) == ("length", 4)
    stopped = builtin_backend.generate(
        TEXT_MODEL, prompt=PROMPT, params=GenerationParams(max_tokens=32, temperature=0.0, seed=1, stop=(" ",))
    )
    assert stopped.finish_reason == "stop" and " " not in stopped.text


@needs_text
def test_sampling_with_a_seed_is_reproducible(builtin_backend: BuiltinBackend) -> None:
    hot = GenerationParams(max_tokens=16, temperature=0.9, seed=1234)
    assert builtin_backend.generate(TEXT_MODEL, prompt=PROMPT, params=hot) == builtin_backend.generate(
        TEXT_MODEL, prompt=PROMPT, params=hot
    )


@needs_embedding
def test_embeddings_rank_a_related_sentence_above_an_unrelated_one(builtin_backend: BuiltinBackend) -> None:
    result = builtin_backend.embed(
        EMBEDDING_MODEL, ["A cat sits on the mat", "A kitten is lying on a rug", "Quarterly tax filing deadlines"]
    )
    cat, kitten, tax = result.vectors
    assert result.dimensions == 384 and all(len(v) == 384 for v in result.vectors)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-4 for v in result.vectors)
    assert cosine(cat, kitten) > cosine(cat, tax) + 0.2
    assert cosine(cat, kitten) > cosine(kitten, tax) + 0.2
    assert result.prompt_tokens >= 3 * 5
    again = builtin_backend.embed(EMBEDDING_MODEL, ["A cat sits on the mat"])
    assert max(abs(x - y) for x, y in zip(again.vectors[0], cat, strict=True)) < 1e-5


def test_refuses_models_it_does_not_have(builtin_backend: BuiltinBackend) -> None:
    with pytest.raises(ModelNotServed):
        builtin_backend.generate("llama3.2", prompt="Hello, AITBC!", params=GREEDY)
    with pytest.raises(ModelNotServed):
        builtin_backend.generate(EMBEDDING_MODEL, prompt="Hello", params=GREEDY)
    with pytest.raises(ModelNotServed):
        builtin_backend.embed(TEXT_MODEL, ["Hello"])
    with pytest.raises(ModelNotServed):
        builtin_backend.embed("nomic-embed-text", ["Hello"])
