"""create_backend, and the builtin backend's honesty when a runtime is missing (no model loads here)."""

from __future__ import annotations

import logging

import pytest

from aitbc.miner.backends import builtin, create_backend
from aitbc.miner.backends.base import BackendError, GenerationParams, ModelNotServed
from aitbc.miner.backends.builtin import BuiltinBackend
from aitbc.miner.backends.ollama import OllamaBackend
from aitbc.miner.backends.openai_compat import OpenAICompatBackend


def test_create_backend_by_name() -> None:
    b = create_backend("builtin", enable_text=False, enable_embedding=False)
    assert isinstance(b, BuiltinBackend) and b.name == "builtin"
    o = create_backend("ollama", base_url="http://127.0.0.1:1")
    assert isinstance(o, OllamaBackend) and o.base_url == "http://127.0.0.1:1"
    a = create_backend("openai", base_url="http://127.0.0.1:1/v1", api_key="k")
    assert isinstance(a, OpenAICompatBackend) and a.base_url == "http://127.0.0.1:1"
    for backend in (b, o, a):
        backend.close()


def test_create_backend_rejects_unknown_names_and_options() -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend("vllm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="base_url"):
        create_backend("openai")
    with pytest.raises(ValueError, match="bad option"):
        create_backend("ollama", colour="blue")


def test_openai_backend_refuses_malformed_operator_digests() -> None:
    with pytest.raises(ValueError, match="sha256"):
        OpenAICompatBackend("http://127.0.0.1:1", model_digests={"m": "name:m@http://x"})


def test_builtin_without_runtimes_lists_nothing_and_refuses(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(builtin, "is_importable", lambda *modules: False)
    with caplog.at_level(logging.WARNING):
        b = BuiltinBackend()
    assert b.list_models() == []
    assert "llama-cpp-python is not installed" in caplog.text
    assert "sentence-transformers/torch are not installed" in caplog.text
    with pytest.raises(ModelNotServed):
        b.generate(builtin.TEXT_MODEL, prompt="hi", params=GenerationParams())
    with pytest.raises(ModelNotServed):
        b.embed(builtin.EMBEDDING_MODEL, ["hi"])


def test_builtin_refuses_other_model_names_without_loading_anything() -> None:
    b = BuiltinBackend(enable_text=False, enable_embedding=False)
    with pytest.raises(ModelNotServed, match=r"llama3\.2"):
        b.generate("llama3.2", prompt="hi", params=GenerationParams())
    with pytest.raises(ModelNotServed):
        b.embed("nomic-embed-text", ["hi"])


def test_builtin_refuses_unknown_text_models_and_bad_slots() -> None:
    with pytest.raises(BackendError, match="unknown builtin text model"):
        BuiltinBackend(text_models=("gpt-5",), enable_embedding=False)
    with pytest.raises(BackendError, match="slots"):
        BuiltinBackend(slots=0, enable_embedding=False)
    b = BuiltinBackend(slots=3, n_threads=1, enable_text=False, enable_embedding=False)
    assert (b.slots, b.thread_candidates) == (3, (1,))


def test_miner_offers_the_builtin_slots_unless_concurrency_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from aitbc.miner.config import MinerSettings
    from aitbc.miner.runner import backend_options, with_backend_concurrency

    monkeypatch.delenv("AITBC_MINER_MAX_CONCURRENCY", raising=False)
    backend = BuiltinBackend(slots=3, enable_text=False, enable_embedding=False)
    assert with_backend_concurrency(MinerSettings(), backend).max_concurrency == 1  # no text model: 1
    backend._text_specs = {builtin.TEXT_MODEL: builtin.TEXT_MODELS[builtin.TEXT_MODEL]}
    backend._text_ok = {builtin.TEXT_MODEL: True}
    assert with_backend_concurrency(MinerSettings(), backend).max_concurrency == 3
    assert with_backend_concurrency(MinerSettings(max_concurrency=7), backend).max_concurrency == 7
    monkeypatch.setenv("AITBC_MINER_MAX_CONCURRENCY", "5")
    assert with_backend_concurrency(MinerSettings(), backend).max_concurrency == 5
    options = backend_options(MinerSettings(slots=2, omp_spincount=100, text_models=("gemma3-270m",)), None, None)
    assert options == {
        "n_threads": None,
        "slots": 2,
        "text_models": ("gemma3-270m",),
        "gpu_layers": None,
        "omp_spincount": "100",
    }
