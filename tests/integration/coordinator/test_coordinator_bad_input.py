"""Bad client input against the real coordinator: each gets a clear 4xx with a reason, and changes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from coordinator_harness import Stack, echo_job, fake_model, submit

from aitbc.protocol.job import MAX_PROMPT_CHARS, MAX_STOP_CHARS


@pytest.fixture
def unchanged(stack: Stack) -> Iterator[None]:
    """The store holds exactly the same jobs and receipts after the test as before it."""
    before = stack.coordinator.db_counts()
    yield
    assert stack.coordinator.db_counts() == before


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    error: dict[str, Any] = response.json()["error"]
    assert error["reason"]
    assert error["message"]
    return error


BAD_BODIES: list[tuple[str, Any]] = [
    ("empty body", {}),
    ("no model", {"type": "inference", "input": {"prompt": "hi"}}),
    ("no type", {"model": "echo", "input": {"prompt": "hi"}}),
    ("no input", {"type": "inference", "model": "echo"}),
    ("unknown type", {"type": "fine-tuning", "model": "echo", "input": {"prompt": "hi"}}),
    ("model name with spaces", {"type": "inference", "model": "echo model", "input": {"prompt": "hi"}}),
    ("input not an object", {"type": "inference", "model": "echo", "input": "hi"}),
    ("prompt not a string", {"type": "inference", "model": "echo", "input": {"prompt": 42}}),
    ("unknown field", {"type": "inference", "model": "echo", "input": {"prompt": "hi"}, "priority": 9}),
    ("unknown input field", {"type": "inference", "model": "echo", "input": {"prompt": "hi", "image": "x"}}),
    ("max_tokens 0", echo_job(params={"max_tokens": 0})),
    ("max_tokens too large", echo_job(params={"max_tokens": 100_000})),
    ("temperature too high", echo_job(params={"temperature": 9.5})),
    ("negative max_price", echo_job(max_price=-1)),
    ("max_price not a number", echo_job(max_price="lots")),
    ("ttl 0", echo_job(ttl_seconds=0)),
    ("bad chat role", {"type": "inference", "model": "echo", "input": {"messages": [{"role": "god", "content": "x"}]}}),
    ("inference without prompt or messages", {"type": "inference", "model": "echo", "input": {}}),
    ("prompt and messages", {"type": "inference", "model": "echo",
                             "input": {"prompt": "a", "messages": [{"role": "user", "content": "b"}]}}),
    ("empty prompt", echo_job("   ")),
    ("inference with texts", {"type": "inference", "model": "echo", "input": {"prompt": "a", "texts": ["b"]}}),
    ("embedding without texts", {"type": "embedding", "model": "echo-embed", "input": {"prompt": "a"}}),
    ("embedding with no texts", {"type": "embedding", "model": "echo-embed", "input": {"texts": []}}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body"), BAD_BODIES, ids=[c for c, _ in BAD_BODIES])
@pytest.mark.usefixtures("unchanged")
def test_missing_or_wrong_fields_are_422(stack: Stack, case: str, body: Any) -> None:
    with stack.http() as http:
        error = error_of(http.post("/api/v1/jobs", json=body), 422)
    assert error["reason"] in {"invalid_request", "invalid_input"}, case


def test_a_stop_string_longer_than_miners_take_is_422_and_never_reaches_a_miner(stack: Stack) -> None:
    # Submission used to accept it; every miner then refused the job as retryable, so it bounced between
    # miners, each one's score dropped, and the client was refunded. The limit is now one declaration.
    model = fake_model()
    miner = stack.fake_miner([model])
    body = {"type": "inference", "model": model["name"], "input": {"prompt": "hi"}, "params": {"stop": ["x" * 100]}}
    before = stack.coordinator.db_counts()
    with stack.http() as http:
        error = error_of(http.post("/api/v1/jobs", json=body), 422)
        assert error["reason"] == "invalid_request"
        assert error["message"].startswith("params.stop[0]: ")
        assert str(MAX_STOP_CHARS) in error["message"]
        assert error["details"][0]["loc"] == ["body", "params", "stop", 0]
        # through the full stack too (no Content-Length: the fast path hands such requests on)
        streamed = http.post(
            "/api/v1/jobs", content=iter([orjson.dumps(body)]), headers={"Content-Type": "application/json"}
        )
        assert error_of(streamed, 422)["message"] == error["message"]
    assert stack.coordinator.db_counts() == before, "nothing was stored"
    assert miner.claim() is None, "the miner serving the model is offered nothing"
    body["params"] = {"stop": ["x" * MAX_STOP_CHARS]}
    with stack.http() as http:
        accepted = submit(http, body)
        claim = miner.claim()
        assert claim is not None and claim["job"]["job_id"] == accepted["job_id"]
        assert claim["job"]["input"]["params"]["stop"] == ["x" * MAX_STOP_CHARS]
        miner.release(accepted["job_id"], claim["lease"]["lease_id"])
        assert http.post(f"/api/v1/jobs/{accepted['job_id']}/cancel").status_code == 200


def test_a_body_that_is_not_json_is_422(stack: Stack) -> None:
    with stack.http() as http:
        response = http.post("/api/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    error_of(response, 422)


@pytest.mark.usefixtures("unchanged")
def test_unknown_model_is_422_unknown_model(stack: Stack) -> None:
    with stack.http() as http:
        error = error_of(http.post("/api/v1/jobs", json=echo_job(model="no-such-model")), 422)
        assert error["reason"] == "unknown_model"
        assert "no-such-model" in error["message"]
        assert "echo" in error["message"], "the message names the models that are available"
        # The right name for the wrong kind of job is unknown too (echo-embed is an embedding model).
        error = error_of(http.post("/api/v1/jobs", json=echo_job(model="echo-embed")), 422)
        assert error["reason"] == "unknown_model"
        # So is a served model pinned to a digest no miner has.
        pinned = echo_job(model_digest="sha256:" + "0" * 64)
        error = error_of(http.post("/api/v1/jobs", json=pinned), 422)
        assert error["reason"] == "unknown_model"


@pytest.mark.usefixtures("unchanged")
def test_oversized_prompt_is_413(stack: Stack) -> None:
    with stack.http() as http:
        error = error_of(http.post("/api/v1/jobs", json=echo_job("x" * (MAX_PROMPT_CHARS + 1))), 413)
        assert error["reason"] == "input_too_large"
        texts = {"type": "embedding", "model": "echo-embed", "input": {"texts": ["y" * 1_000] * 40}}
        assert error_of(http.post("/api/v1/jobs", json=texts), 413)["reason"] == "input_too_large"
        # A body beyond the transport limit is refused before it is read.
        huge = b'{"type": "inference", "model": "echo", "input": {"prompt": "' + b"z" * (3 * 1024 * 1024) + b'"}}'
        response = http.post("/api/v1/jobs", content=huge, headers={"Content-Type": "application/json"})
        assert error_of(response, 413)["reason"] == "too_large"


@pytest.mark.usefixtures("unchanged")
def test_bad_or_missing_api_key_is_401(stack: Stack) -> None:
    prefix, key_id, secret = stack.api_key.split("_")
    tokens: list[str | None] = [
        None,
        "",
        "garbage",
        f"{prefix}_{key_id}",
        f"{prefix}_{key_id}_{'0' * len(secret)}",
        f"{prefix}_ffffffffffff_{secret}",
    ]
    for token in tokens:
        headers = {} if token is None else {"X-Api-Key": token}
        with httpx.Client(base_url=stack.url, headers=headers, timeout=10) as http:
            for method, path in (("POST", "/api/v1/jobs"), ("GET", "/api/v1/jobs"), ("GET", "/api/v1/jobs/job_x")):
                response = http.request(method, path, json=echo_job() if method == "POST" else None)
                error = error_of(response, 401)
                assert error["reason"] == "unauthorized", (token, path)


def test_rate_limit_is_429_with_retry_after(stack: Stack) -> None:
    # 2 requests at once, then one per second: the third request in a row is refused (unless the first
    # two took a second, which the assertion on the job count would show).
    token = stack.coordinator.create_key_cli("--name", "tiny", "--rate", "1", "--burst", "2")
    before = stack.coordinator.db_counts()
    with stack.http(token) as http:
        accepted = [submit(http, echo_job(f"allowed {i}"))["job_id"] for i in range(2)]
        response = http.post("/api/v1/jobs", json=echo_job("one too many"))
        error = error_of(response, 429)
        assert error["reason"] == "rate_limited"
        retry_after = float(response.headers["Retry-After"])
        assert 0 < retry_after <= 1.0 + 0.05
        # The refused submission created nothing. (The accepted ones' rows follow their 201s by group commit:
        # the intake log. This reads the database file from outside, so it waits for them first.)
        deadline = time.monotonic() + 10
        while stack.coordinator.db_counts()["jobs"] < before["jobs"] + 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stack.coordinator.db_counts()["jobs"] == before["jobs"] + 2
        # After the advertised wait a request passes again (reads and writes share the budget).
        time.sleep(retry_after + 0.05)
        listed = http.get("/api/v1/jobs")
        assert listed.status_code == 200, listed.text
        assert sorted(j["job_id"] for j in listed.json()["jobs"]) == sorted(accepted)
    # Another key is not affected by this key's limit.
    with stack.http() as http:
        assert http.get("/api/v1/jobs", params={"limit": 1}).status_code == 200
