"""The ``ollama`` backend over real HTTP against tests/support/ollama_server.py (Ollama's API in
front of the same real BuiltinBackend; no Ollama binary is installable here)."""

from __future__ import annotations

import math

import httpx
import pytest
from miner_helpers import needs_embedding, needs_text

from aitbc.miner.backends import create_backend
from aitbc.miner.backends.base import ChatMessage, GenerationParams, ModelNotServed
from aitbc.miner.backends.builtin import EMBEDDING_MODEL, TEXT_MODEL, BuiltinBackend
from aitbc.miner.backends.ollama import OllamaBackend

PARAMS = GenerationParams(max_tokens=16, temperature=0.0, seed=42)


@pytest.fixture(scope="module")
def ollama(ollama_url: str) -> OllamaBackend:
    backend = create_backend("ollama", base_url=ollama_url)
    assert isinstance(backend, OllamaBackend)
    return backend


@needs_text
@needs_embedding
def test_lists_models_with_the_weights_digest(ollama: OllamaBackend, builtin_backend: BuiltinBackend) -> None:
    got = {m.name: m for m in ollama.list_models()}
    want = {m.name: m for m in builtin_backend.list_models()}
    assert set(got) == set(want)
    for name, m in got.items():
        assert m.digest == want[name].digest  # blob digest from /api/show, not the manifest digest of /api/tags
        assert m.kind == want[name].kind and m.backend == "ollama"
    assert got[EMBEDDING_MODEL].dimensions == 384
    assert got[TEXT_MODEL].context_length == want[TEXT_MODEL].context_length


@needs_text
def test_generate_streams_ndjson_and_matches_the_model_run_directly(
    ollama: OllamaBackend, builtin_backend: BuiltinBackend
) -> None:
    pieces: list[str] = []
    r = ollama.generate(TEXT_MODEL, prompt="Name a fruit.", params=PARAMS, on_token=pieces.append)
    direct = builtin_backend.generate(TEXT_MODEL, prompt="Name a fruit.", params=PARAMS)
    assert len(pieces) > 1 and "".join(pieces) == r.text
    assert r == direct  # same text, same prompt_eval_count / eval_count, same done_reason


@needs_text
def test_chat_and_the_latest_tag(ollama: OllamaBackend, builtin_backend: BuiltinBackend) -> None:
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say hello.")]
    r = ollama.generate(f"{TEXT_MODEL}:latest", messages=messages, params=PARAMS)
    assert r == builtin_backend.generate(TEXT_MODEL, messages=messages, params=PARAMS)
    assert r.text.strip()


@needs_text
def test_length_limit_is_reported(ollama: OllamaBackend) -> None:
    r = ollama.generate(TEXT_MODEL, prompt="Tell me a long story.", params=GenerationParams(max_tokens=3))
    assert (r.finish_reason, r.completion_tokens) == ("length", 3)


@needs_embedding
def test_embed(ollama: OllamaBackend) -> None:
    r = ollama.embed(EMBEDDING_MODEL, ["A cat sits on the mat", "A kitten is lying on a rug", "Quarterly tax filing"])
    assert r.dimensions == 384 and len(r.vectors) == 3 and r.prompt_tokens > 0

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.prod(
            math.sqrt(sum(x * x for x in v)) for v in (a, b)
        )

    assert cos(r.vectors[0], r.vectors[1]) > cos(r.vectors[0], r.vectors[2])


def test_refuses_models_it_lacks(ollama: OllamaBackend) -> None:
    with pytest.raises(ModelNotServed):
        ollama.generate("llama3.2", prompt="Hello, AITBC!", params=PARAMS)
    with pytest.raises(ModelNotServed):
        ollama.embed("nomic-embed-text", ["x"])


def test_the_test_server_answers_404_like_ollama(ollama_url: str) -> None:
    r = httpx.post(f"{ollama_url}/api/generate", json={"model": "llama3.2", "prompt": "hi"})
    assert r.status_code == 404 and "not found" in r.json()["error"]
