"""Miners that vanish mid-job: ``kill -9`` (the lease runs out, another miner finishes) and a graceful
SIGTERM (the job is handed back at once, its attempt not counted).

The slow echo miners run in a region of their own and the jobs require that region, so the shared
stack's instant echo miners never take them.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
from coordinator_harness import (
    SHARED_LEASE_SECONDS,
    CoordinatorProcess,
    FakeMiner,
    Stack,
    check_receipt,
    expect,
    fake_model,
    submit,
    wait_for_tokens,
    wait_state,
    wait_until,
)

from aitbc.miner.backends.echo import ECHO_DIGEST

TOKEN_DELAY = 0.05
WORDS = 50  # 2.5 s of generation per run


def slow_job(region: str) -> dict[str, object]:
    prompt = " ".join(f"word{i}" for i in range(WORDS))
    return {
        "type": "inference",
        "model": "echo",
        "input": {"prompt": prompt},
        "params": {"max_tokens": WORDS},
        "constraints": {"region": region},
    }


def test_kill_9_mid_job_requeues_to_the_other_miner_with_one_receipt(stack: Stack) -> None:
    region = f"kill-{uuid.uuid4().hex[:6]}"
    miners = [stack.add_miner(token_delay=TOKEN_DELAY, region=region) for _ in range(2)]
    for miner in miners:
        miner.start()
    for miner in miners:
        miner.wait_registered()
    by_address = {m.address: m for m in miners}
    with stack.http() as http:
        job = submit(http, slow_job(region))
        running = wait_state(http, job["job_id"], "running", timeout=15)
        victim = by_address[running["miner"]]
        survivor = next(m for m in miners if m is not victim)
        wait_for_tokens(stack, job["job_id"], 3)  # well into the generation
        victim.signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)  # type: ignore[union-attr]
        killed_at = time.monotonic()
        # The lease runs out, the job is requeued, and the surviving miner runs it again.
        wait_until(
            lambda: http.get(f"/api/v1/jobs/{job['job_id']}").json()["miner"] == survivor.address,
            SHARED_LEASE_SECONDS + 10,
            "the survivor to take the job",
        )
        assert time.monotonic() - killed_at >= SHARED_LEASE_SECONDS * 0.5, "requeued only after the lease ran out"
        done = wait_state(http, job["job_id"], {"completed", "failed"}, timeout=20)
        assert done["state"] == "completed", done
        assert done["attempts"] == 2
        assert done["miner"] == survivor.address
        checked = check_receipt(stack, http, job["job_id"])
        assert checked["receipt"].miner == survivor.address
        assert checked["result"]["output"]["text"] == slow_job(region)["input"]["prompt"]  # type: ignore[index]
    rows = stack.coordinator.db_receipts([job["job_id"]])
    assert len(rows) == 1 and rows[0]["miner"] == survivor.address


def test_sigterm_mid_job_hands_the_job_back_at_once(stack: Stack) -> None:
    region = f"term-{uuid.uuid4().hex[:6]}"
    miner = stack.add_miner(token_delay=TOKEN_DELAY, region=region)
    miner.start()
    miner.wait_registered()
    with stack.http() as http:
        job = submit(http, slow_job(region))
        running = wait_state(http, job["job_id"], "running", timeout=15)
        assert running["attempts"] == 1 and running["miner"] == miner.address
        wait_for_tokens(stack, job["job_id"], 3)  # the generation is under way
        miner.signal(signal.SIGTERM)
        signalled = time.monotonic()
        requeued = wait_state(http, job["job_id"], "queued", timeout=SHARED_LEASE_SECONDS * 3)
        handed_back_after = time.monotonic() - signalled
        # Handed back, not lost: the attempt does not count, and it happened well before the lease would expire.
        assert requeued["attempts"] == 0, requeued
        assert requeued["miner"] is None and requeued["error"] is None
        assert handed_back_after < SHARED_LEASE_SECONDS, f"took {handed_back_after:.2f}s"
        assert miner.proc.wait(timeout=15) == 0  # type: ignore[union-attr]
        assert "miner stopped" in miner.log_text()
        # The job is free for another miner of the region at once, as a first attempt.
        successor = stack.fake_miner([{"name": "echo", "digest": ECHO_DIGEST, "kind": "text", "unit_price": 1}],
                                     region=region)  # fmt: skip
        claim = successor.claim()
        assert claim is not None and claim["job"]["job_id"] == job["job_id"] and claim["job"]["attempt"] == 1
        output, receipt = successor.build_result(claim, text=slow_job(region)["input"]["prompt"])  # type: ignore[index]
        expect(successor.result(job["job_id"], claim["lease"]["lease_id"], output, receipt))
        check_receipt(stack, http, job["job_id"])
    assert len(stack.coordinator.db_receipts([job["job_id"]])) == 1


def test_sigterm_ends_waiting_claims_at_once_and_exits_cleanly(tmp_path: Path) -> None:
    """A stop answers miners' long-polling claims (204) instead of cancelling them after the grace period."""
    coordinator = CoordinatorProcess(tmp_path / "coordinator")
    coordinator.start()
    miners = [FakeMiner(coordinator) for _ in range(3)]
    answers: list[int] = []
    try:
        for fake in miners:
            fake.register([fake_model()])

        def long_poll(fake: FakeMiner) -> None:
            answers.append(fake.post("/api/v1/miners/claim", {"wait_seconds": 25}).status_code)

        threads = [threading.Thread(target=long_poll, args=(fake,)) for fake in miners]
        for thread in threads:
            thread.start()
        metrics_url = f"{coordinator.url}/metrics"
        wait_until(lambda: "aitbc_claims_waiting 3.0" in httpx.get(metrics_url).text, 15, "3 waiting claims")
        assert coordinator.stop() == 0
        for thread in threads:
            thread.join(10)
    finally:
        for fake in miners:
            fake.close()
        coordinator.dispose()
    assert answers == [204, 204, 204]
    log = coordinator.log_text()
    assert "graceful shutdown exceeded" not in log and "CancelledError" not in log, log
