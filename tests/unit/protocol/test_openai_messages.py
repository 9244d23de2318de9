"""OpenAI-compatible requests decode into their structs with the job contract's limits and map onto jobs."""

from __future__ import annotations

import msgspec
import pytest

from aitbc.protocol.errors import InvalidRequest
from aitbc.protocol.job import MAX_STOPS, MAX_TOKENS_LIMIT, compute_input_hash
from aitbc.protocol.job_messages import decode_message
from aitbc.protocol.openai_messages import (
    DEFAULT_CHAT_MAX_TOKENS,
    DEFAULT_COMPLETION_MAX_TOKENS,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    ChunkDelta,
    CompletionRequest,
    EmbeddingRequest,
    compute_chat_job,
    compute_completion_job,
    compute_embedding_job,
    compute_finish_reason,
    split_model,
)


def chat(**fields: object) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return decode_message(ChatCompletionRequest, msgspec.json.encode(body))


def rejected(kind: type, body: dict[str, object]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        decoded = decode_message(kind, msgspec.json.encode(body))
        {ChatCompletionRequest: compute_chat_job, CompletionRequest: compute_completion_job}.get(
            kind, compute_embedding_job
        )(decoded)
    return caught.value


def test_chat_maps_roles_params_and_defaults() -> None:
    job = compute_chat_job(
        chat(
            messages=[
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": "ok"},
            ],
            temperature=0.7,
            top_p=0.9,
            seed=3,
            stop="\n",
            user="u1",
        )
    )
    assert job.type == "inference" and job.model == "m" and job.model_digest is None
    assert [(m.role, m.content) for m in job.input.messages or []] == [
        ("system", "be brief"),
        ("user", "ab"),
        ("assistant", "ok"),
    ]
    params = job.to_job_input().params
    assert (params.max_tokens, params.temperature_milli, params.top_p_milli, params.seed, params.stop) == (
        DEFAULT_CHAT_MAX_TOKENS,
        700,
        900,
        3,
        ["\n"],
    )
    assert compute_chat_job(chat()).params.temperature == 0.0  # greedy unless asked: auditable re-runs


def test_max_completion_tokens_wins_and_must_agree() -> None:
    assert compute_chat_job(chat(max_completion_tokens=9)).params.max_tokens == 9
    assert compute_chat_job(chat(max_tokens=9, max_completion_tokens=9)).params.max_tokens == 9
    error = rejected(ChatCompletionRequest, {"model": "m", "messages": [], "max_tokens": 1})
    assert error.field == "messages"
    with pytest.raises(InvalidRequest) as caught:
        compute_chat_job(chat(max_tokens=8, max_completion_tokens=9))
    assert caught.value.field == "max_completion_tokens"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"n": 2}, "n"),
        ({"n": 0}, "n"),
        ({"max_tokens": MAX_TOKENS_LIMIT + 1}, "max_tokens"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"seed": -1}, "seed"),
        ({"stop": ["x"] * (MAX_STOPS + 1)}, "stop"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"user": "u" * 300}, "user"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"functions": []}, ""),
    ],
)
def test_bad_chat_parameters_name_their_field(fields: dict[str, object], field: str) -> None:
    body: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    error = rejected(ChatCompletionRequest, body)
    assert error.field == field, error
    if not field:
        assert "functions" in error.message


def test_model_digest_pin() -> None:
    assert split_model("smollm2@sha256:ab") == ("smollm2", "sha256:ab")
    assert split_model("org/model:tag") == ("org/model:tag", None)
    job = compute_chat_job(chat(model="m@sha256:" + "0" * 64))
    assert (job.model, job.model_digest) == ("m", "sha256:" + "0" * 64)


def test_completion_and_embedding_jobs() -> None:
    completion = compute_completion_job(
        decode_message(CompletionRequest, b'{"model":"m","prompt":"once upon","stream":true}')
    )
    assert completion.input.prompt == "once upon"
    assert completion.params.max_tokens == DEFAULT_COMPLETION_MAX_TOKENS
    one = compute_embedding_job(decode_message(EmbeddingRequest, b'{"model":"e","input":"a"}'))
    many = compute_embedding_job(decode_message(EmbeddingRequest, b'{"model":"e","input":["a","b"]}'))
    assert (one.type, one.input.texts, many.input.texts) == ("embedding", ["a"], ["a", "b"])
    assert rejected(EmbeddingRequest, {"model": "e", "input": [1, 2]}).field == "input[0]"
    assert rejected(EmbeddingRequest, {"model": "e", "input": []}).field == "input"
    assert (
        rejected(EmbeddingRequest, {"model": "e", "input": "a", "encoding_format": "int8"}).field == "encoding_format"
    )


def test_same_request_same_job_input_hash() -> None:
    a = compute_chat_job(chat(temperature=0.5, stop=["x"])).to_job_input()
    b = compute_chat_job(chat(temperature=0.5, stop="x")).to_job_input()
    c = compute_chat_job(chat(temperature=0.5, stop="x", top_p=0.5)).to_job_input()
    assert compute_input_hash(a) == compute_input_hash(b) != compute_input_hash(c)


def test_finish_reason_from_receipt_units() -> None:
    assert compute_finish_reason(16, 16) == "length"
    assert compute_finish_reason(3, 16) == "stop"


def test_chunk_omits_usage_unless_asked() -> None:
    chunk = ChatCompletionChunk(
        id="j", created=1, model="m", system_fingerprint=None, choices=[ChunkChoice(delta=ChunkDelta(content="x"))]
    )
    assert b"usage" not in msgspec.json.encode(chunk)
    asked = msgspec.structs.replace(chunk, usage=None)
    assert b'"usage":null' in msgspec.json.encode(asked)
