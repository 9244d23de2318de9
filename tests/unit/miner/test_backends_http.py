"""The Ollama and OpenAI-compatible backends against scripted HTTP replies (httpx.MockTransport).

The same backends run against real servers in tests/integration/miner; these cover the edge
cases a real server will not produce on demand: missing usage, rejected fields, errors mid-stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from aitbc.miner.backends.base import BackendError, ChatMessage, GenerationParams, ModelNotServed
from aitbc.miner.backends.builtin import compute_file_digest
from aitbc.miner.backends.ollama import OllamaBackend
from aitbc.miner.backends.openai_compat import OpenAICompatBackend

HEX_BLOB = "b1" * 32
HEX_MANIFEST = "3f" * 32
P = GenerationParams(max_tokens=8, temperature=0.0, seed=1)

Handler = Callable[[httpx.Request], httpx.Response]


def ndjson(*objs: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def sse(*objs: dict[str, Any] | str) -> bytes:
    return b"".join(f"data: {o if isinstance(o, str) else json.dumps(o)}\n\n".encode() for o in objs)


# -- Ollama ----------------------------------------------------------------------------------------


def ollama_handler(requests: list[httpx.Request], *, blob: bool = True, generate: bytes | None = None) -> Handler:
    def handle(req: httpx.Request) -> httpx.Response:
        requests.append(req)
        body = json.loads(req.content) if req.content else {}
        if req.url.path == "/api/tags":
            return httpx.Response(
                200,
                json={
                    "models": [
                        {"name": "llama3.2:latest", "model": "llama3.2:latest", "digest": HEX_MANIFEST},
                        {"name": "nomic-embed-text:latest", "model": "nomic-embed-text:latest", "digest": "ab" * 32},
                        {"name": "broken:latest", "model": "broken:latest", "digest": "not-a-digest"},
                    ]
                },
            )
        if req.url.path == "/api/show":
            name = body["model"]
            if name.startswith("nomic"):
                return httpx.Response(
                    200,
                    json={
                        "capabilities": ["embedding"],
                        "model_info": {"general.architecture": "nomic-bert", "nomic-bert.embedding_length": 768},
                    },
                )
            modelfile = f"FROM /root/.ollama/models/blobs/sha256-{HEX_BLOB}\n" if blob else "FROM llama3.2\n"
            return httpx.Response(
                200,
                json={
                    "modelfile": modelfile,
                    "capabilities": ["completion"],
                    "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
                },
            )
        if req.url.path in ("/api/generate", "/api/chat"):
            key = "response" if req.url.path == "/api/generate" else "message"

            def piece(t: str) -> dict[str, Any]:
                return {key: t if key == "response" else {"role": "assistant", "content": t}, "done": False}

            content = generate or ndjson(
                piece("Hello"),
                piece(", world"),
                {**piece(""), "done": True, "done_reason": "length", "prompt_eval_count": 11, "eval_count": 2},
            )
            return httpx.Response(200, content=content, headers={"Content-Type": "application/x-ndjson"})
        if req.url.path == "/api/embed":
            return httpx.Response(200, json={"embeddings": [[0.1, 0.2]] * len(body["input"]), "prompt_eval_count": 5})
        return httpx.Response(404, text="404 page not found")

    return handle


def test_ollama_lists_models_with_blob_digests_short_names_and_kinds() -> None:
    reqs: list[httpx.Request] = []
    b = OllamaBackend("http://ollama", transport=httpx.MockTransport(ollama_handler(reqs)))
    models = {m.name: m for m in b.list_models()}
    assert set(models) == {"llama3.2", "nomic-embed-text", "broken"}
    assert models["llama3.2"].digest == f"sha256:{HEX_BLOB}"  # the weights blob, not the manifest
    assert models["llama3.2"].kind == "text" and models["llama3.2"].context_length == 131072
    assert models["nomic-embed-text"].kind == "embedding" and models["nomic-embed-text"].dimensions == 768


def test_ollama_falls_back_to_the_manifest_digest_and_skips_models_without_one() -> None:
    def handle(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/api/tags":
            return httpx.Response(
                200, json={"models": [{"model": "a:latest", "digest": HEX_MANIFEST}, {"model": "b:7b", "digest": ""}]}
            )
        return httpx.Response(200, json={"modelfile": "FROM a\n"})

    b = OllamaBackend("http://ollama", transport=httpx.MockTransport(handle))
    assert [(m.name, m.digest) for m in b.list_models()] == [("a", f"sha256:{HEX_MANIFEST}")]


def test_ollama_generate_streams_and_sends_options() -> None:
    reqs: list[httpx.Request] = []
    b = OllamaBackend("http://ollama", transport=httpx.MockTransport(ollama_handler(reqs)))
    tokens: list[str] = []
    params = GenerationParams(max_tokens=2, temperature=0.0, seed=9, stop=("\n",))
    r = b.generate("llama3.2:latest", prompt="Hi", params=params, on_token=tokens.append)
    assert tokens == ["Hello", ", world"] and r.text == "Hello, world"
    assert (r.prompt_tokens, r.completion_tokens, r.finish_reason) == (11, 2, "length")
    sent = json.loads(reqs[-1].content)
    assert reqs[-1].url.path == "/api/generate"
    assert sent == {
        "model": "llama3.2:latest",
        "stream": True,
        "prompt": "Hi",
        "options": {"num_predict": 2, "temperature": 0.0, "seed": 9, "stop": ["\n"]},
    }
    r = b.generate("llama3.2", messages=[ChatMessage("user", "Hi")], params=P)
    assert reqs[-1].url.path == "/api/chat" and r.text == "Hello, world"


def test_ollama_refuses_models_it_lacks_or_of_the_wrong_kind() -> None:
    b = OllamaBackend("http://ollama", transport=httpx.MockTransport(ollama_handler([])))
    with pytest.raises(ModelNotServed, match=r"llama3\.1"):
        b.generate("llama3.1", prompt="Hi", params=P)
    with pytest.raises(ModelNotServed):
        b.generate("nomic-embed-text", prompt="Hi", params=P)
    with pytest.raises(ModelNotServed):
        b.embed("llama3.2", ["x"])
    assert b.embed("nomic-embed-text", ["x", "y"]).vectors == [[0.1, 0.2], [0.1, 0.2]]


def test_ollama_error_line_mid_stream_and_missing_done() -> None:
    bad = ndjson({"response": "Hel", "done": False}, {"error": "CUDA error: out of memory"})
    b = OllamaBackend("http://ollama", transport=httpx.MockTransport(ollama_handler([], generate=bad)))
    with pytest.raises(BackendError, match="out of memory"):
        b.generate("llama3.2", prompt="Hi", params=P)
    cut = ndjson({"response": "Hel", "done": False})
    b = OllamaBackend("http://ollama", transport=httpx.MockTransport(ollama_handler([], generate=cut)))
    with pytest.raises(BackendError, match="without a done line"):
        b.generate("llama3.2", prompt="Hi", params=P)


def test_ollama_http_errors_become_backend_errors() -> None:
    def handle(req: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": "something broke"})

    b = OllamaBackend("http://ollama", transport=httpx.MockTransport(handle))
    with pytest.raises(BackendError, match=r"HTTP 500: something broke"):
        b.list_models()


def test_ollama_server_down_is_a_clear_backend_error() -> None:
    b = OllamaBackend("http://127.0.0.1:9", connect_timeout=1.0)
    with pytest.raises(BackendError, match=r"ollama at http://127.0.0.1:9: GET /api/tags failed"):
        b.list_models()


# -- OpenAI-compatible -----------------------------------------------------------------------------


def openai_handler(
    requests: list[httpx.Request],
    models: list[dict[str, Any]],
    *,
    stream: bytes | None = None,
    reject_stream_options: bool = False,
) -> Handler:
    def handle(req: httpx.Request) -> httpx.Response:
        requests.append(req)
        body = json.loads(req.content) if req.content else {}
        if req.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": models})
        if req.url.path in ("/v1/chat/completions", "/v1/completions"):
            chat = req.url.path == "/v1/chat/completions"
            if reject_stream_options and "stream_options" in body:
                return httpx.Response(400, json={"error": {"message": "Unrecognized field: stream_options"}})
            if not body.get("stream"):
                choice = {"message": {"role": "assistant", "content": "Hi!"}} if chat else {"text": "Hi!"}
                return httpx.Response(
                    200,
                    json={
                        "choices": [{**choice, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 9, "completion_tokens": 2},
                    },
                )

            def c(t: str, fin: str | None = None) -> dict[str, Any]:
                return {"choices": [{"delta": {"content": t}, "finish_reason": fin} if chat else {"text": t}]}

            events: list[dict[str, Any] | str] = [c("Hi"), c("!"), c("", "stop")]
            if "stream_options" in body:
                events.append({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}})
            events.append("[DONE]")
            return httpx.Response(200, content=stream or sse(*events), headers={"Content-Type": "text/event-stream"})
        if req.url.path == "/v1/embeddings":
            n = len(body["input"])
            data = [{"index": i, "embedding": [float(i), 1.0]} for i in reversed(range(n))]
            return httpx.Response(200, json={"data": data, "usage": {"prompt_tokens": 4}})
        return httpx.Response(404, json={"detail": "Not Found"})

    return handle


def test_openai_digest_rule(tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF fake weights")
    named = tmp_path / "other.gguf"
    named.write_bytes(b"other weights")
    models = [
        {"id": "explicit"},
        {"id": "reported", "digest": "cd" * 32},
        {"id": "by-file"},
        {"id": str(weights)},  # llama-cpp-python's server without an alias
        {"id": "gpt-4o-mini"},  # nothing identifies its weights: not served
        {"id": "text-embed-small", "max_model_len": 512},
    ]
    b = OpenAICompatBackend(
        "http://localhost:8000/v1",
        model_digests={"explicit": "sha256:" + "ef" * 32, "text-embed-small": "12" * 32},
        model_files={"by-file": named},
        transport=httpx.MockTransport(openai_handler([], models)),
    )
    got = {m.name: m for m in b.list_models()}
    assert got["explicit"].digest == "sha256:" + "ef" * 32
    assert got["reported"].digest == "sha256:" + "cd" * 32
    assert got["by-file"].digest == compute_file_digest(named)
    assert got[str(weights)].digest == compute_file_digest(weights)
    assert "gpt-4o-mini" not in got
    assert got["text-embed-small"].kind == "embedding" and got["text-embed-small"].context_length == 512
    with pytest.raises(ModelNotServed, match="gpt-4o-mini"):
        b.generate("gpt-4o-mini", prompt="Hi", params=P)


def test_openai_path_ids_are_hashed_only_for_local_servers_and_regular_files(tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF fake weights")
    models = [{"id": str(weights)}, {"id": str(tmp_path)}, {"id": "/dev/zero"}]
    local = OpenAICompatBackend("http://127.0.0.1:8000", transport=httpx.MockTransport(openai_handler([], models)))
    assert [m.name for m in local.list_models()] == [str(weights)]
    remote = OpenAICompatBackend("http://gpu-box:8000", transport=httpx.MockTransport(openai_handler([], models)))
    assert remote.list_models() == []


def test_openai_stream_uses_the_usage_chunk_and_sends_auth() -> None:
    reqs: list[httpx.Request] = []
    b = OpenAICompatBackend(
        "http://srv",
        api_key="sk-test",
        model_digests={"m": "ab" * 32},
        transport=httpx.MockTransport(openai_handler(reqs, [{"id": "m"}])),
    )
    tokens: list[str] = []
    r = b.generate("m", prompt="Hello", params=P, on_token=tokens.append)
    assert tokens == ["Hi", "!"] and r.text == "Hi!"
    assert (r.prompt_tokens, r.completion_tokens, r.finish_reason) == (9, 2, "stop")
    sent = json.loads(reqs[-1].content)
    assert reqs[-1].url.path == "/v1/chat/completions"
    assert reqs[-1].headers["Authorization"] == "Bearer sk-test"
    assert sent["messages"] == [{"role": "user", "content": "Hello"}]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert (sent["max_tokens"], sent["temperature"], sent["seed"]) == (8, 0.0, 1)


def test_openai_without_on_token_uses_the_exact_non_streamed_usage() -> None:
    reqs: list[httpx.Request] = []
    b = OpenAICompatBackend(
        "http://srv",
        model_digests={"m": "ab" * 32},
        prompt_mode="completion",
        transport=httpx.MockTransport(openai_handler(reqs, [{"id": "m"}])),
    )
    r = b.generate("m", prompt="Hello", params=P)
    assert (r.text, r.prompt_tokens, r.completion_tokens) == ("Hi!", 9, 2)
    assert reqs[-1].url.path == "/v1/completions" and json.loads(reqs[-1].content)["stream"] is False


def test_openai_falls_back_to_counting_pieces_when_usage_is_absent() -> None:
    stream = sse(
        {"choices": [{"delta": {"content": "A"}}]},
        {"choices": [{"delta": {"content": "B"}}]},
        {"choices": [{"delta": {"content": "C"}, "finish_reason": "length"}]},
        "[DONE]",
    )
    b = OpenAICompatBackend(
        "http://srv",
        model_digests={"m": "ab" * 32},
        transport=httpx.MockTransport(openai_handler([], [{"id": "m"}], stream=stream)),
    )
    r = b.generate("m", messages=[ChatMessage("user", "x")], params=P, on_token=lambda t: None)
    assert (r.text, r.prompt_tokens, r.completion_tokens, r.finish_reason) == ("ABC", 0, 3, "length")


def test_openai_retries_without_stream_options_when_rejected() -> None:
    reqs: list[httpx.Request] = []
    b = OpenAICompatBackend(
        "http://srv",
        model_digests={"m": "ab" * 32},
        transport=httpx.MockTransport(openai_handler(reqs, [{"id": "m"}], reject_stream_options=True)),
    )
    r = b.generate("m", prompt="x", params=P, on_token=lambda t: None)
    assert r.text == "Hi!" and r.completion_tokens == 2
    assert "stream_options" not in json.loads(reqs[-1].content)


def test_openai_error_mid_stream_and_http_errors() -> None:
    bad = sse({"choices": [{"delta": {"content": "A"}}]}, {"error": {"message": "context length exceeded"}})
    b = OpenAICompatBackend(
        "http://srv",
        model_digests={"m": "ab" * 32},
        transport=httpx.MockTransport(openai_handler([], [{"id": "m"}], stream=bad)),
    )
    with pytest.raises(BackendError, match="context length exceeded"):
        b.generate("m", prompt="x", params=P, on_token=lambda t: None)

    def unauthorized(req: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": "Invalid API key"}})

    b = OpenAICompatBackend("http://srv", transport=httpx.MockTransport(unauthorized))
    with pytest.raises(BackendError, match=r"HTTP 401: Invalid API key"):
        b.list_models()


def test_openai_embeddings_are_put_back_in_input_order() -> None:
    b = OpenAICompatBackend(
        "http://srv",
        model_digests={"e": "ab" * 32},
        model_kinds={"e": "embedding"},
        transport=httpx.MockTransport(openai_handler([], [{"id": "e"}])),
    )
    r = b.embed("e", ["a", "b", "c"])
    assert [v[0] for v in r.vectors] == [0.0, 1.0, 2.0]
    assert (r.prompt_tokens, r.dimensions) == (4, 2)
    with pytest.raises(ModelNotServed):
        b.generate("e", prompt="x", params=P)
