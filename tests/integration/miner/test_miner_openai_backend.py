"""The ``openai`` backend over real HTTP against llama-cpp-python's own server running SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pytest
from miner_helpers import API_KEY, LlamaServer, needs_llama_server

from aitbc.miner.backends import create_backend
from aitbc.miner.backends.base import BackendError, ChatMessage, GenerationParams, ModelNotServed
from aitbc.miner.backends.builtin import BuiltinBackend
from aitbc.miner.backends.openai_compat import OpenAICompatBackend

pytestmark = needs_llama_server

PARAMS = GenerationParams(max_tokens=16, temperature=0.0, seed=42)


@pytest.fixture(scope="module")
def openai_backend(llama_server: LlamaServer) -> OpenAICompatBackend:
    backend = create_backend("openai", base_url=f"{llama_server.url}/v1", api_key=API_KEY)
    assert isinstance(backend, OpenAICompatBackend)
    return backend


def test_lists_the_served_gguf_with_the_same_digest_as_builtin(
    openai_backend: OpenAICompatBackend, smollm2_gguf: Path, builtin_backend: BuiltinBackend
) -> None:
    (model,) = openai_backend.list_models()
    assert model.name == str(smollm2_gguf)  # llama-cpp-python reports the --model path as the id
    assert model.kind == "text" and model.backend == "openai"
    builtin_digest = {m.name: m.digest for m in builtin_backend.list_models()}["smollm2-135m-instruct"]
    assert model.digest == builtin_digest


def test_streams_chat_tokens_over_sse(openai_backend: OpenAICompatBackend, smollm2_gguf: Path) -> None:
    pieces: list[str] = []
    r = openai_backend.generate(
        str(smollm2_gguf),
        messages=[ChatMessage("user", "Name a fruit.")],
        params=PARAMS,
        on_token=pieces.append,
    )
    assert r.text.strip() and "".join(pieces) == r.text
    assert 0 < r.completion_tokens <= PARAMS.max_tokens  # counted pieces: this server sends no stream usage
    assert r.finish_reason in ("stop", "length")


def test_non_streamed_call_reports_exact_usage(openai_backend: OpenAICompatBackend, smollm2_gguf: Path) -> None:
    r = openai_backend.generate(str(smollm2_gguf), prompt="Name a colour.", params=PARAMS)
    assert r.text.strip()
    assert r.prompt_tokens > 5 and 0 < r.completion_tokens <= PARAMS.max_tokens


def test_completion_mode_uses_v1_completions(llama_server: LlamaServer, smollm2_gguf: Path) -> None:
    backend = OpenAICompatBackend(llama_server.url, api_key=API_KEY, prompt_mode="completion")
    pieces: list[str] = []
    r = backend.generate(str(smollm2_gguf), prompt="The capital of France is", params=PARAMS, on_token=pieces.append)
    assert r.text.strip() and "".join(pieces) == r.text
    assert r.finish_reason in ("stop", "length")
    backend.close()


def test_operator_digest_overrides_and_unknown_models_are_refused(
    llama_server: LlamaServer, smollm2_gguf: Path
) -> None:
    pinned = "sha256:" + "0" * 64
    backend = OpenAICompatBackend(llama_server.url, api_key=API_KEY, model_digests={str(smollm2_gguf): pinned})
    assert [m.digest for m in backend.list_models()] == [pinned]
    with pytest.raises(ModelNotServed):
        backend.generate("llama3.2", prompt="Hello, AITBC!", params=PARAMS)
    with pytest.raises(ModelNotServed):
        backend.embed(str(smollm2_gguf), ["not an embedding model"])
    backend.close()


def test_wrong_api_key_is_a_backend_error(llama_server: LlamaServer) -> None:
    backend = OpenAICompatBackend(llama_server.url, api_key="wrong")
    with pytest.raises(BackendError, match="HTTP 401"):
        backend.list_models()
    backend.close()
