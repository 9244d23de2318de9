"""The pool hub service (``aitbc poolhub run``) over real sockets, on SQLite and on Redis + PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from poolhub_harness import PoolHubProcess, Stores, make_stores

from aitbc.market.scoring import is_exploration_slot
from support.ports import free_port

TOKEN = "s3cret-token"
DIGEST = "sha256:" + "a" * 64
TIMEOUT_S = 1.5


def registration(miner: str, price: int = 2, region: str = "eu", **extra: Any) -> dict[str, Any]:
    return {
        "miner": miner,
        "models": [{"name": "llama3.2", "digest": DIGEST, "kind": "text", "unit_price": price}],
        "region": region,
        "hardware": {"gpu_name": "RTX 4090", "vram_gb": 24.0},
        "max_concurrency": 2,
        **extra,
    }


def job(job_id: str = "job_x", **kw: Any) -> dict[str, Any]:
    return {"job_id": job_id, "type": "inference", "model": "llama3.2", "input_chars": 100, "max_tokens": 50, **kw}


def normal_job_id() -> str:
    return next(f"job_{i}" for i in range(1000) if not is_exploration_slot(f"job_{i}", 0.1))


@pytest.fixture(scope="module", params=["sqlite", "redis+postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolHubProcess]:
    base: Path = tmp_path_factory.mktemp(f"hub-{request.param.replace('+', '-')}")
    stores: Stores = make_stores(request.param, request, base)
    process = PoolHubProcess(base / "hub", stores, token=TOKEN, miner_timeout_seconds=TIMEOUT_S)
    process.start()
    try:
        yield process
    finally:
        assert process.stop() == 0


@pytest.fixture
def api(hub: PoolHubProcess) -> Iterator[httpx.Client]:
    with hub.client() as client:
        yield client


def register(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/v1/miners", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def outcome(api: httpx.Client, miner: str, job_id: str, kind: str, **kw: Any) -> dict[str, Any]:
    response = api.post("/v1/outcomes", json={"miner": miner, "job_id": job_id, "outcome": kind, **kw})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_health_openapi_and_auth(hub: PoolHubProcess, api: httpx.Client) -> None:
    health = api.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["backend"] == ("redis+sql" if hub.stores and hub.stores.redis_url else "sql")
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/v1/miners", "/v1/heartbeat", "/v1/heartbeats", "/v1/outcomes", "/v1/match", "/v1/leaderboard"):
        assert path in paths
    with hub.client(token="wrong") as wrong:
        refused = wrong.post("/v1/miners", json=registration("ait1x"))
        assert refused.status_code == 401 and refused.json()["error"]["reason"] == "unauthorized"
        assert wrong.post("/v1/match", json={"job": job()}).status_code == 401
        assert wrong.get("/v1/miners").status_code == 200  # reads stay open


def test_bad_input_is_refused_with_a_reason(api: httpx.Client) -> None:
    bad = api.post("/v1/miners", json={**registration("ait1bad"), "models": []})
    assert bad.status_code == 422 and bad.json()["error"]["reason"] == "invalid_request"
    assert api.post("/v1/match", json={"job": job(), "limit": 0}).status_code == 422
    bad_outcome = api.post("/v1/outcomes", json={"miner": "ait1x", "job_id": "j", "outcome": "great"})
    assert bad_outcome.status_code == 422
    unknown = api.post("/v1/heartbeat", json={"miner": "ait1nobody"})
    assert unknown.status_code == 404 and unknown.json()["error"]["reason"] == "unknown_miner"
    assert api.post("/v1/outcomes", json={"miner": "ait1nobody", "job_id": "j", "outcome": "failed"}).status_code == 404
    assert api.get("/v1/miners/ait1nobody").status_code == 404
    assert api.get("/healthz").status_code == 200  # still alive


def test_match_ranks_with_reasons_and_explains_exclusions(api: httpx.Client) -> None:
    register(api, registration("ait1cheap", price=1))
    register(api, registration("ait1dear", price=8))
    register(api, registration("ait1us", price=1, region="us"))
    body = {"job": job(normal_job_id(), region="eu"), "limit": 5, "explain": True}
    reply = api.post("/v1/match", json=body).json()
    ranked = [c["miner"] for c in reply["candidates"]]
    assert ranked.index("ait1cheap") < ranked.index("ait1dear")
    assert "ait1us" not in ranked
    assert {"miner": "ait1us", "reason": "region us is not eu"} in reply["excluded"]
    top = reply["candidates"][0]
    assert top["rank"] == 1 and 0 < top["score"] <= 1
    assert set(top["factors"]) == {"success", "latency", "throughput", "price", "load", "stake", "age"}
    assert any("1/token" in r for r in top["reasons"])
    only = api.post("/v1/match", json={"job": job(normal_job_id()), "candidates": ["ait1dear", "ait1ghost"]}).json()
    assert [c["miner"] for c in only["candidates"]] == ["ait1dear"]


def test_measured_outcomes_move_a_miner_and_are_idempotent(api: httpx.Client) -> None:
    for name in ("ait1steady", "ait1flaky"):
        register(api, registration(name, price=2))
        for i in range(3):
            outcome(api, name, f"job_warm_{name}_{i}", "completed", ttft_ms=200, tokens_per_s=40)
    body = {"job": job(normal_job_id()), "candidates": ["ait1steady", "ait1flaky"]}
    before = api.post("/v1/match", json=body).json()["candidates"]
    assert {c["miner"] for c in before} == {"ait1steady", "ait1flaky"}
    first = outcome(api, "ait1flaky", "job_bad", "failed", detail="CUDA out of memory")
    assert first["recorded"] and first["stats"]["failed"] == 1
    again = outcome(api, "ait1flaky", "job_bad", "failed")
    assert not again["recorded"] and again["stats"] == first["stats"]
    after = api.post("/v1/match", json=body).json()["candidates"]
    assert [c["miner"] for c in after] == ["ait1steady", "ait1flaky"]
    detail = api.get("/v1/miners/ait1flaky").json()
    assert detail["recent_outcomes"][0]["outcome"] == "failed"
    assert detail["recent_outcomes"][0]["detail"] == "CUDA out of memory"
    assert detail["audit"][0]["action"] == "registered"


def test_a_silent_miner_drops_out_within_seconds(api: httpx.Client) -> None:
    register(api, registration("ait1quiet"))
    register(api, registration("ait1alive"))
    body = {"job": job(normal_job_id()), "candidates": ["ait1quiet", "ait1alive"], "explain": True}
    assert len(api.post("/v1/match", json=body).json()["candidates"]) == 2
    deadline = time.monotonic() + TIMEOUT_S + 1.0
    while time.monotonic() < deadline:
        assert api.post("/v1/heartbeats", json={"beats": [{"miner": "ait1alive", "load": 0}]}).status_code == 200
        time.sleep(0.2)
    reply = api.post("/v1/match", json=body).json()
    assert [c["miner"] for c in reply["candidates"]] == ["ait1alive"]
    assert any(e["miner"] == "ait1quiet" and e["reason"].startswith("offline") for e in reply["excluded"])


def test_load_from_heartbeats_excludes_a_full_miner(api: httpx.Client) -> None:
    register(api, registration("ait1full"))
    reply = api.post("/v1/heartbeats", json={"beats": [{"miner": "ait1full", "load": 2}, {"miner": "ait1ghost"}]})
    assert reply.json() == {"accepted": 1, "unknown": ["ait1ghost"]}
    body = {"job": job(normal_job_id()), "candidates": ["ait1full"], "explain": True}
    result = api.post("/v1/match", json=body).json()
    assert result["candidates"] == [] and result["excluded"] == [
        {"miner": "ait1full", "reason": "busy: 2 of 2 slots in use"}
    ]


def test_read_api_and_metrics(api: httpx.Client) -> None:
    register(api, registration("ait1reader", price=3))
    outcome(api, "ait1reader", "job_r1", "completed", ttft_ms=150, tokens_per_s=80)
    api.post("/v1/match", json={"job": job("job_r1")})
    miners = api.get("/v1/miners", params={"online": True, "model": "llama3.2"}).json()["miners"]
    reader = next(m for m in miners if m["miner"] == "ait1reader")
    assert reader["stats"]["completed"] == 1 and reader["stats"]["ttft_ms"] == 150 and reader["new"]
    board = api.get("/v1/leaderboard", params={"model": "llama3.2"}).json()["leaderboard"]
    assert [r["rank"] for r in board] == list(range(1, len(board) + 1))
    assert [r["score"] for r in board] == sorted((r["score"] for r in board), reverse=True)
    capacity = {(c["model"], c["kind"]): c for c in api.get("/v1/capacity").json()["models"]}
    assert capacity[("llama3.2", "text")]["slots"] >= 2
    prices = api.get("/v1/prices").json()["models"]
    assert prices[0]["min_unit_price"] <= prices[0]["median_unit_price"] <= prices[0]["max_unit_price"]
    text = api.get("/metrics").text
    assert 'aitbc_poolhub_capacity_slots{kind="text",model="llama3.2"}' in text
    assert "aitbc_poolhub_match_seconds_bucket" in text
    assert 'aitbc_poolhub_outcomes_total{outcome="completed"}' in text
    online = next(line for line in text.splitlines() if line.startswith("aitbc_poolhub_miners_online "))
    assert float(online.split()[1]) >= 1
    assert api.get("/v1/scoring").json()["weights"]["success"] == 0.35


def test_state_survives_a_restart(hub: PoolHubProcess, api: httpx.Client) -> None:
    register(api, registration("ait1durable", price=4))
    outcome(api, "ait1durable", "job_d1", "completed", ttft_ms=300, tokens_per_s=20)
    assert api.post("/v1/heartbeat", json={"miner": "ait1durable", "load": 1}).status_code == 200
    before = api.get("/v1/miners/ait1durable").json()
    assert before["load"] == 1
    # No wait for the 100 ms heartbeat batch: a graceful stop writes the heartbeats still pending.
    assert hub.stop() == 0
    hub.start()
    with hub.client() as fresh:
        after = fresh.get("/v1/miners/ait1durable").json()
    assert after["stats"] == before["stats"]
    assert after["models"] == before["models"] and after["registered_at_ms"] == before["registered_at_ms"]
    live = (after["load"], after["last_seen_ms"])
    if hub.stores is not None and hub.stores.redis_url:
        # Redis keeps live state for 4 x the miner timeout (6 s here): kept if the restart was quicker, else gone
        assert live in {(1, before["last_seen_ms"]), (0, None)}
    else:
        assert live == (1, before["last_seen_ms"])


def test_unreachable_stores_give_a_clear_error(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    result = subprocess.run(
        [sys.executable, "-m", "aitbc", "poolhub", "run", "--data-dir", str(tmp_path), "--redis-url", dead],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot use Redis at" in result.stderr and "Traceback" not in result.stderr
