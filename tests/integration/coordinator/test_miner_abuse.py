"""Miners and clients that abuse the queue, against the real coordinator (issue 14): claim/release loops,
heartbeats naming more jobs than the miner has slots, and an API key that keeps working after revocation."""

from __future__ import annotations

import time
from typing import Any

import httpx
from coordinator_harness import Stack, fake_model, run_cli, submit


def _job(model: dict[str, Any], prompt: str = "hold me") -> dict[str, Any]:
    return {"type": "inference", "model": model["name"], "input": {"prompt": prompt}}


def test_a_claim_release_loop_counts_against_the_miner_and_frees_the_job(stack: Stack) -> None:
    model = fake_model()
    hog = stack.fake_miner([model])
    released: list[str] = []
    with stack.http() as http:
        for i in range(4):  # three free releases, then each one costs the miner a failed job
            job_id = submit(http, _job(model, f"hold me {i}"))["job_id"]
            claim = hog.claim(wait=5)
            assert claim is not None and claim["job"]["job_id"] == job_id
            assert hog.release(job_id, claim["lease"]["lease_id"]).status_code == 200
            released.append(job_id)
            # The job is not handed straight back to the miner that released it.
            assert hog.claim(wait=0) is None
        explained = http.get(f"/api/v1/jobs/{released[-1]}/match").json()["ranking"]
    mine = next(c for c in explained["candidates"] if c["miner"] == hog.address)
    assert any("1 failed" in reason for reason in mine["reasons"]), mine
    # Another miner gets the released jobs, with no attempt spent on them.
    with stack.http() as http:
        assert {http.get(f"/api/v1/jobs/{j}").json()["attempts"] for j in released} == {0}
    other = stack.fake_miner([model])
    claim = other.claim(wait=5)
    assert claim is not None and claim["job"]["job_id"] in released and claim["job"]["attempt"] == 1


def test_a_heartbeat_carries_at_most_the_miners_slots(stack: Stack) -> None:
    model = fake_model()
    miner = stack.fake_miner([model], max_concurrency=2)
    leases = {f"job_{i}": "0" * 16 for i in range(3)}
    reply = miner.post("/api/v1/miners/heartbeat", {"leases": leases})
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"]["reason"] == "invalid_input" and "at most 2 leases" in reply.json()["error"]["message"]
    within = miner.post("/api/v1/miners/heartbeat", {"leases": dict(list(leases.items())[:2])})
    assert within.status_code == 200 and set(within.json()["lost"]) == {"job_0", "job_1"}
    # The probe's 40,000 leases: refused at once, without 40,000 lookups.
    started = time.monotonic()
    flood = miner.post("/api/v1/miners/heartbeat", {"leases": {f"job_{i}": "0" * 16 for i in range(40_000)}})
    assert flood.status_code == 422 and time.monotonic() - started < 2.0


def test_a_revoked_api_key_stops_working_within_a_second(stack: Stack) -> None:
    token = stack.new_key()
    key_id = token.split("_")[1]
    with stack.http(token) as http:
        assert http.get("/api/v1/jobs").status_code == 200  # cached by the coordinator now
        revoked = run_cli("coordinator", "keys", "revoke", key_id, "--data-dir", str(stack.coordinator.data_dir))
        assert revoked.returncode == 0, revoked.stderr
        started = time.monotonic()
        while (status := http.get("/api/v1/jobs").status_code) == 200:
            assert time.monotonic() - started < 1.0, "the revoked key still works after a second"
            time.sleep(0.05)
        assert status == 401
        took = time.monotonic() - started
    assert took < 1.0
    assert httpx.get(f"{stack.url}/api/v1/jobs", headers={"X-Api-Key": token}).json()["error"]["message"] == (
        "API key revoked"
    )
