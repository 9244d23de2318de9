"""``job_updates`` over the coordinator's WebSocket, and the OpenAI routes paying from a deposit.

REAL processes: a node, a coordinator with ``--node-url`` (jobs paid from API keys' deposits, settled
on chain in batches) and an echo miner that takes 40 ms per token, so a job streams for a while.
A WebSocket client sees a job's status changes, its tokens, its receipt and its payment in order with
no sequence gap; after a reconnect with ``after_seq`` it gets exactly the events it missed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import openai
import orjson
import pytest
from coordinator_harness import CoordinatorProcess, MinerProcess
from test_deposit_jobs import deposit_client
from test_paid_jobs import MINER_PRICE, PaidStack
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

if TYPE_CHECKING:
    from conftest import NodeProcess

pytestmark = pytest.mark.timeout(180)
WORDS = [f"word{i}" for i in range(40)]
WS_PER_KEY = 16
"""The coordinator's default ``ws_max_connections_per_key``."""


@pytest.fixture(scope="module")
def wstack(shared_node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaidStack]:
    base = tmp_path_factory.mktemp("job-updates")
    coordinator = CoordinatorProcess(
        base / "coordinator", lease_seconds=5.0, node_url=shared_node.rpc_url, chain_id=shared_node.chain_id
    )
    coordinator.start()
    miner = MinerProcess(coordinator, base / "miner", price=MINER_PRICE, token_delay=0.04)
    stack = PaidStack(shared_node, coordinator, miner, base)
    try:
        stack.fund(coordinator.address)
        miner.start()
        miner.wait_registered()
        yield stack
    finally:
        miner.stop()
        coordinator.stop()
        coordinator.dispose()


def ws_url(stack: PaidStack) -> str:
    return stack.coordinator.url.replace("http://", "ws://") + "/api/v1/ws"


def subscribe(ws: ClientConnection, **job_filter: Any) -> dict[str, Any]:
    ws.send(orjson.dumps({"id": 1, "method": "subscribe", "params": ["job_updates"], "filter": job_filter}).decode())
    reply: dict[str, Any] = orjson.loads(ws.recv(timeout=10))
    return reply


def read_until(ws: ClientConnection, stop: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Messages until ``stop(message)`` is true (inclusive)."""
    messages: list[dict[str, Any]] = []
    while True:
        message = orjson.loads(ws.recv(timeout=timeout))
        messages.append(message)
        if stop(message):
            return messages


def is_settled(message: dict[str, Any]) -> bool:
    params = message["params"]
    return params["event"] == "payment" and params["data"]["state"] == "settled"


def test_status_tokens_receipt_payment_in_order_and_resume_without_loss(wstack: PaidStack) -> None:
    _, token, _ = deposit_client(wstack)
    headers = {"X-Api-Key": token}
    with httpx.Client(base_url=wstack.coordinator.url, headers=headers, timeout=30) as http:
        with connect(ws_url(wstack), additional_headers=headers) as first:
            reply = subscribe(first)  # every job of this key
            assert reply["result"]["subscribed"] == ["job_updates"]
            body = {"type": "inference", "model": "echo", "input": {"prompt": " ".join(WORDS)}}
            submitted = http.post("/api/v1/jobs", json={**body, "params": {"max_tokens": 64}})
            assert submitted.status_code == 201, submitted.text
            job_id = submitted.json()["job_id"]
            assert submitted.json()["payment"]["state"] == "reserved"
            # the first connection sees the start and a few tokens, then drops
            before = read_until(first, lambda m: m["params"]["event"] == "token" and m["params"]["data"]["index"] == 4)
        last_seen = before[-1]["params"]["event_seq"]

        # the job goes on while nobody listens; the second connection resumes after the last event seen
        with connect(ws_url(wstack), additional_headers=headers) as second:
            assert "result" in subscribe(second, after_seq=last_seen)
            after = read_until(second, is_settled)
        # and a third, naming the job, replays its whole history
        with connect(ws_url(wstack), additional_headers={"Authorization": f"Bearer {token}"}) as third:
            assert "result" in subscribe(third, job_id=job_id, after_seq=0)
            whole = read_until(third, is_settled)

    for connection in (before, after, whole):  # per-connection numbering: 1, 2, 3 … with no gap
        assert [m["seq"] for m in connection] == list(range(1, len(connection) + 1))
        assert all(m["method"] == "job_updates" and m["params"]["job_id"] == job_id for m in connection)
    events = [m["params"] for m in before + after]
    assert [e["job_seq"] for e in events] == list(range(1, len(events) + 1)), "no event lost or repeated"
    assert [e["event_seq"] for e in events] == sorted({e["event_seq"] for e in events})
    assert [e["job_seq"] for e in (m["params"] for m in whole)] == [e["job_seq"] for e in events]
    assert [m["params"] for m in whole] == events

    kinds = [e["event"] for e in events]
    states = [e["data"]["state"] for e in events if e["event"] == "status"]
    assert states[0] == "queued" and states[-1] == "completed" and "running" in states
    tokens = [e["data"] for e in events if e["event"] == "token"]
    assert [t["index"] for t in tokens] == list(range(len(WORDS)))
    assert "".join(t["text"] for t in tokens) == " ".join(WORDS)
    receipt_at = kinds.index("receipt")
    completed_at = max(i for i, e in enumerate(events) if e["event"] == "status")
    assert max(i for i, k in enumerate(kinds) if k == "token") < receipt_at < completed_at
    payments = [e["data"] for e in events if e["event"] == "payment"]
    assert min(i for i, k in enumerate(kinds) if k == "payment") > completed_at
    paid_states = [p["state"] for p in payments]
    assert paid_states[-1] == "settled" and set(paid_states[:-1]) == {"batching"}, paid_states
    assert payments[-1]["tx_hash"] and payments[-1]["paid_to_miner"] > 0
    assert events[receipt_at]["data"]["receipt"]["job_id"] == job_id


def test_subscriptions_are_confined_to_the_key(wstack: PaidStack) -> None:
    _, token, _ = deposit_client(wstack)
    _, other, _ = deposit_client(wstack)
    with connect(ws_url(wstack), additional_headers={"X-Api-Key": token}) as ws:
        with httpx.Client(base_url=wstack.coordinator.url, headers={"X-Api-Key": other}, timeout=30) as http:
            foreign = http.post("/api/v1/jobs", json={"type": "inference", "model": "echo", "input": {"prompt": "x"}})
        assert foreign.status_code == 201
        error = subscribe(ws, job_id=foreign.json()["job_id"])
        assert error["error"]["code"] == -32004  # someone else's job is not found
        assert subscribe(ws, after_seq=10**18 + 1)["result"]["subscribed"] == ["job_updates"]
        stale = subscribe(ws, after_seq=1)
        assert stale["error"]["code"] == -32005  # a resume point from before this process: refused, not a gap
        ws.send("not json")
        assert orjson.loads(ws.recv(timeout=10))["error"]["code"] == -32700
        ws.send(orjson.dumps({"id": 2, "method": "subscribe", "params": ["new_blocks"]}).decode())
        assert orjson.loads(ws.recv(timeout=10))["error"]["code"] == -32602
    with (
        pytest.raises(ConnectionClosed) as refused,
        connect(ws_url(wstack), additional_headers={"X-Api-Key": "aitbc_00_00"}) as ws,
    ):
        ws.recv(timeout=10)
    assert refused.value.rcvd is not None and refused.value.rcvd.code == 1008
    assert "API key" in refused.value.rcvd.reason


def test_connections_per_key_and_message_size_are_bounded(wstack: PaidStack) -> None:
    key = wstack.coordinator.insert_key(1000.0, 1000)
    headers = {"X-Api-Key": key}
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(connect(ws_url(wstack), additional_headers=headers)) for _ in range(WS_PER_KEY)]
        for ws in held:
            assert subscribe(ws)["result"]["subscribed"] == ["job_updates"]
        with pytest.raises(ConnectionClosed) as refused, connect(ws_url(wstack), additional_headers=headers) as ws:
            ws.recv(timeout=10)
        assert refused.value.rcvd is not None and refused.value.rcvd.code == 1013
    with connect(ws_url(wstack), additional_headers=headers) as ws:  # slots freed on close
        assert "result" in subscribe(ws)
        ws.send("x" * (65 * 1024))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_openai_chat_is_paid_from_the_deposit(wstack: PaidStack) -> None:
    _, token, deposit_id = deposit_client(wstack)
    client = openai.OpenAI(base_url=wstack.coordinator.url + "/v1", api_key=token, max_retries=0)
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "paid words here"}])
    assert reply.choices[0].message.content == "paid words here"
    assert reply.id.startswith("dj-")  # a deposit job: its id carries its settlement deadline
    with httpx.Client(base_url=wstack.coordinator.url, headers={"X-Api-Key": token}, timeout=30) as http:
        job = http.get(f"/api/v1/jobs/{reply.id}").json()
        assert job["payment"]["state"] in ("reserved", "batching", "settled")
        assert http.get("/api/v1/account").json()["deposit_id"] == deposit_id
    # a key with no deposit on a paying coordinator: 402 in OpenAI's shape
    unbound = wstack.coordinator.insert_key(1000.0, 1000)
    broke = openai.OpenAI(base_url=wstack.coordinator.url + "/v1", api_key=unbound, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        broke.chat.completions.create(model="echo", messages=[{"role": "user", "content": "free?"}])
    assert caught.value.status_code == 402
    assert caught.value.body["type"] == "insufficient_quota"  # type: ignore[index]
