"""The client API against a real coordinator with real echo miners: results, receipts, events, listing, ops."""

from __future__ import annotations

import struct

import httpx
import orjson
from coordinator_harness import Stack, check_receipt, echo_job, submit, wait_done, wait_until

from aitbc.miner.backends.echo import ECHO_DIGEST, ECHO_DIMENSIONS, ECHO_EMBED_DIGEST, EchoBackend


def test_submit_runs_to_completion_with_a_verifiable_receipt(stack: Stack) -> None:
    with stack.http() as http:
        job = submit(http, echo_job("Hello, AITBC! How are you today?", max_price=10_000))
        assert job["state"] == "queued"
        assert job["attempts"] == 0
        done = wait_done(http, job["job_id"])
        assert done["state"] == "completed", done
        checked = check_receipt(stack, http, job["job_id"])
    result = checked["result"]
    assert result["output"] == {"text": "Hello, AITBC! How are you today?"}
    assert result["model"] == "echo"
    assert result["model_digest"] == ECHO_DIGEST
    assert result["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": 6,
        "compute_ms": checked["receipt"].units.compute_ms,
    }
    assert result["total_price"] == 12  # (6 + 6) tokens x 1 base unit
    # Normally one attempt; on a badly overloaded machine the shared stack's 2 s lease can lapse once and
    # the job is run again. Either way it completes once, with one receipt.
    assert 1 <= done["attempts"] <= done["max_attempts"]
    assert len(stack.coordinator.db_receipts([job["job_id"]])) == 1
    assert done["miner"] in {m.address for m in stack.miners}
    assert done["created_at_ms"] <= done["assigned_at_ms"] <= done["started_at_ms"] <= done["finished_at_ms"]
    assert checked["receipt"].coordinator == stack.coordinator.health()["coordinator"]


def test_chat_messages_and_params_reach_the_miner(stack: Stack) -> None:
    with stack.http() as http:
        job = submit(
            http,
            {
                "type": "inference",
                "model": "echo",
                "input": {
                    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a b c"}]
                },
                "params": {"max_tokens": 3, "temperature": 0.7, "seed": 7},
            },
        )
        assert wait_done(http, job["job_id"])["state"] == "completed"
        checked = check_receipt(stack, http, job["job_id"])
    # The echo backend joins the messages and stops at max_tokens: the miner ran exactly these params.
    assert checked["result"]["output"]["text"] == "be brief a"
    assert checked["receipt"].units.completion_tokens == 3


def test_embedding_job_returns_the_vectors(stack: Stack) -> None:
    texts = ["The cat sat on the mat.", "A feline rested on a rug.", "Stock prices fell sharply."]
    with stack.http() as http:
        job = submit(http, {"type": "embedding", "model": "echo-embed", "input": {"texts": texts}})
        assert wait_done(http, job["job_id"])["state"] == "completed"
        checked = check_receipt(stack, http, job["job_id"])
    output = checked["result"]["output"]
    assert output["dimensions"] == ECHO_DIMENSIONS
    assert len(output["embeddings"]) == 3
    expected = EchoBackend().embed("echo-embed", texts).vectors
    for got, want in zip(output["embeddings"], expected, strict=True):
        as_f32 = list(struct.unpack(f"<{len(want)}f", struct.pack(f"<{len(want)}f", *want)))
        assert got == as_f32
    assert checked["result"]["model_digest"] == ECHO_EMBED_DIGEST
    assert checked["receipt"].units.completion_tokens == 0
    assert checked["receipt"].units.prompt_tokens == sum(len(t.split()) for t in texts)


def test_sdk_round_trip(stack: Stack) -> None:
    with stack.client() as client:
        models = {(m["name"], m["kind"], m["digest"]): m for m in client.models()}
        assert models[("echo", "text", ECHO_DIGEST)]["miners"] >= 2
        assert models[("echo", "text", ECHO_DIGEST)]["min_unit_price"] == 1
        assert ("echo-embed", "embedding", ECHO_EMBED_DIGEST) in models
        job = client.submit_inference("echo", "one two three")
        done = client.wait(job["job_id"], timeout=20)
        assert done["state"] == "completed"
        assert client.result(job["job_id"])["output"]["text"] == "one two three"
        assert client.receipt(job["job_id"])["receipt"]["job_id"] == job["job_id"]


def _read_sse(http: httpx.Client, job_id: str) -> list[tuple[int, str, dict[str, object]]]:
    events: list[tuple[int, str, dict[str, object]]] = []
    with http.stream("GET", f"/api/v1/jobs/{job_id}/events", timeout=30.0) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        seq, name = 0, "message"
        for line in response.iter_lines():
            if line.startswith("id: "):
                seq = int(line[4:])
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((seq, name, orjson.loads(line[6:])))
    return events


def test_event_stream_delivers_status_and_tokens_in_order(stack: Stack) -> None:
    words = [f"w{i}" for i in range(40)]
    with stack.http() as http:
        job = submit(http, echo_job(" ".join(words), params={"max_tokens": 40}))
        events = _read_sse(http, job["job_id"])  # the stream ends by itself when the job is done
        result = http.get(f"/api/v1/jobs/{job['job_id']}/result").json()
    seqs = [seq for seq, _, _ in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    states = [data["state"] for _, name, data in events if name == "status"]
    assert states[0] == "queued"
    assert states[-1] == "completed"
    assert states == sorted(set(states), key=states.index), "a state never repeats"
    assert states == ["queued", "assigned", "running", "completed"]
    tokens = [data for _, name, data in events if name == "token"]
    assert [t["index"] for t in tokens] == list(range(40))
    assert "".join(str(t["text"]) for t in tokens) == result["output"]["text"] == " ".join(words)
    names = [name for _, name, _ in events]
    # Tokens come after the job started running and before the receipt; the stream ends with "completed".
    assert names.index("token") > names.index("status") and names.index("receipt") > max(
        i for i, n in enumerate(names) if n == "token"
    )
    assert events[-1][1] == "status" and events[-1][2]["state"] == "completed"
    receipt = next(data for _, name, data in events if name == "receipt")
    assert receipt["receipt_hash"] == result["receipt_hash"]


def test_event_stream_of_a_finished_job_replays_and_ends(stack: Stack) -> None:
    with stack.http() as http:
        job = submit(http, echo_job("late subscriber"))
        wait_done(http, job["job_id"])
        events = _read_sse(http, job["job_id"])
    assert events[-1][1] == "status" and events[-1][2]["state"] == "completed"
    assert [d["text"] for _, n, d in events if n == "token"] == ["late", " subscriber"]


def test_result_is_409_while_not_done_and_410_once_cancelled(stack: Stack) -> None:
    model = {"name": "fake-slowpoke", "digest": "sha256:" + "5" * 64, "kind": "text", "unit_price": 1}
    stack.fake_miner([model])  # serves the model but never claims: the job stays queued
    with stack.http() as http:
        job = submit(http, {"type": "inference", "model": "fake-slowpoke", "input": {"prompt": "x"}})
        response = http.get(f"/api/v1/jobs/{job['job_id']}/result")
        assert response.status_code == 409
        assert response.json()["error"]["reason"] == "not_ready"
        assert response.json()["error"]["state"] == "queued"
        assert http.get(f"/api/v1/jobs/{job['job_id']}/receipt").status_code == 404
        cancelled = http.post(f"/api/v1/jobs/{job['job_id']}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["state"] == "cancelled"
        response = http.get(f"/api/v1/jobs/{job['job_id']}/result")
        assert response.status_code == 410
        assert response.json()["error"]["reason"] == "job_cancelled"
        assert "cancelled" in response.json()["error"]["message"]


def test_cancel_rules(stack: Stack) -> None:
    model = {"name": "fake-cancel", "digest": "sha256:" + "6" * 64, "kind": "text", "unit_price": 1}
    fake = stack.fake_miner([model])
    with stack.http() as http:
        job = submit(http, {"type": "inference", "model": "fake-cancel", "input": {"prompt": "x"}})
        claim = fake.claim()
        assert claim is not None and claim["job"]["job_id"] == job["job_id"]
        assert http.get(f"/api/v1/jobs/{job['job_id']}").json()["state"] == "assigned"
        # Cancelling a job a miner holds works; the miner's later result is refused.
        assert http.post(f"/api/v1/jobs/{job['job_id']}/cancel").json()["state"] == "cancelled"
        output, receipt = fake.build_result(claim)
        late = fake.result(job["job_id"], claim["lease"]["lease_id"], output, receipt)
        assert late.status_code == 409
        assert late.json()["error"]["reason"] == "job_finished"
        # A second cancel, or cancelling a completed job, is refused.
        again = http.post(f"/api/v1/jobs/{job['job_id']}/cancel")
        assert again.status_code == 409 and again.json()["error"]["reason"] == "job_finished"
        finished = submit(http, echo_job("done already"))
        wait_done(http, finished["job_id"])
        refused = http.post(f"/api/v1/jobs/{finished['job_id']}/cancel")
        assert refused.status_code == 409 and refused.json()["error"]["reason"] == "job_finished"
        assert http.get(f"/api/v1/jobs/{finished['job_id']}").json()["state"] == "completed"
        assert http.post("/api/v1/jobs/job_doesnotexist/cancel").status_code == 404


def test_list_with_filters_and_cursor_pagination(stack: Stack) -> None:
    key = stack.new_key()
    with stack.http(key) as http:
        ids = [submit(http, echo_job(f"job number {i}"))["job_id"] for i in range(5)]
        for job_id in ids:
            wait_done(http, job_id)
        pages: list[list[str]] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = http.get("/api/v1/jobs", params=params)
            assert page.status_code == 200, page.text
            pages.append([j["job_id"] for j in page.json()["jobs"]])
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert [len(p) for p in pages] == [2, 2, 1]
        flat = [j for p in pages for j in p]
        assert flat == list(reversed(ids)), "newest first, each job exactly once"
        completed = http.get("/api/v1/jobs", params={"state": "completed", "model": "echo"}).json()["jobs"]
        assert sorted(j["job_id"] for j in completed) == sorted(ids)
        assert http.get("/api/v1/jobs", params={"state": "queued"}).json()["jobs"] == []
        assert http.get("/api/v1/jobs", params={"model": "echo-embed"}).json()["jobs"] == []
        bad = http.get("/api/v1/jobs", params={"cursor": "garbage"})
        assert bad.status_code == 400 and bad.json()["error"]["reason"] == "invalid_cursor"
        assert http.get("/api/v1/jobs", params={"state": "sleeping"}).status_code == 422
        assert http.get("/api/v1/jobs", params={"limit": 0}).status_code == 422
    # Another client sees none of these jobs, and cannot read them.
    with stack.http(stack.new_key()) as other:
        assert other.get("/api/v1/jobs").json()["jobs"] == []
        assert other.get(f"/api/v1/jobs/{ids[0]}").status_code == 404
        assert other.get(f"/api/v1/jobs/{ids[0]}/result").status_code == 404
        assert other.post(f"/api/v1/jobs/{ids[0]}/cancel").status_code == 404


def test_healthz_and_metrics(stack: Stack) -> None:
    with stack.http() as http:
        job = submit(http, echo_job("metrics please"))
        wait_done(http, job["job_id"])
        health = http.get("/healthz").json()
        assert health["status"] == "ok"
        assert health["coordinator"].startswith("ait1")
        assert health["chain_id"] == "aitbc-devnet"
        assert health["miners_online"] >= 2

        def scrape() -> dict[str, float]:
            text = http.get("/metrics").text
            values: dict[str, float] = {}
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    name, _, value = line.rpartition(" ")
                    values[name] = float(value)
            return values

        # Gauges are refreshed by the coordinator's sweeper (every 0.25 s).
        metrics = wait_until(lambda: (m := scrape()).get('aitbc_jobs{state="completed"}', 0) >= 1 and m, 5, "gauges")
    for name in (
        'aitbc_jobs{state="queued"}',
        'aitbc_jobs{state="completed"}',
        "aitbc_job_queue_depth",
        "aitbc_job_assignment_seconds_count",
        "aitbc_job_duration_seconds_count",
        "aitbc_job_tokens_per_second_count",
    ):
        assert name in metrics, name
    assert metrics["aitbc_job_assignment_seconds_count"] >= 1
    assert metrics["aitbc_job_duration_seconds_count"] >= 1
    assert metrics["aitbc_job_tokens_per_second_count"] >= 1
    assert 'aitbc_job_assignment_seconds_bucket{le="+Inf"}' in metrics
    assert stack.coordinator.db_counts()["receipts"] >= metrics['aitbc_jobs{state="completed"}'] >= 1


def test_openapi_documents_the_api(stack: Stack) -> None:
    spec = httpx.get(stack.url + "/openapi.json", timeout=10).json()
    for path in (
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/result",
        "/api/v1/jobs/{job_id}/receipt",
        "/api/v1/jobs/{job_id}/cancel",
        "/api/v1/jobs/{job_id}/events",
        "/api/v1/models",
        "/api/v1/miners/register",
        "/api/v1/miners/claim",
    ):
        assert path in spec["paths"], path
