"""The miner API against the real coordinator, driven by hand-rolled signed requests (``FakeMiner``).

Forged and replayed signatures, reports from the wrong miner or after the lease, wrong receipts:
each is refused with a clear status and reason, and leaves the job and the store as they were.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from coordinator_harness import (
    SHARED_LEASE_SECONDS,
    Stack,
    check_receipt,
    expect,
    fake_model,
    now_ms,
    submit,
    wait_state,
)

from aitbc.miner.backends.echo import ECHO_DIGEST
from aitbc.protocol.auth import HEADER_MINER, HEADER_SIGNATURE, sign_miner_request
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.receipt import ReceiptUnits


def job_for(model: dict[str, Any], prompt: str = "a b c", **extra: Any) -> dict[str, Any]:
    job_type = "embedding" if model["kind"] == "embedding" else "inference"
    body_input = {"texts": [prompt]} if job_type == "embedding" else {"prompt": prompt}
    return {"type": job_type, "model": model["name"], "input": body_input, **extra}


def passed_over(http: Any) -> None:
    """Submit an echo job after the one under test and wait until the live echo miners complete it: by then
    they have claimed from the queue holding the earlier job, so if they could take it they would have."""
    later = submit(http, {"type": "inference", "model": "echo", "input": {"prompt": "later"}})
    wait_state(http, later["job_id"], "completed", timeout=30)


def reason(response: Any) -> str:
    return str(response.json()["error"]["reason"])


# -- signatures --------------------------------------------------------------------------------


def test_unsigned_and_unregistered_miners_are_refused(stack: Stack) -> None:
    with stack.http() as http:
        unsigned = http.post("/api/v1/miners/claim", json={"wait_seconds": 0})
        assert unsigned.status_code == 401 and reason(unsigned) == "unauthorized"
    stranger = stack.fake_miner()  # signs correctly but never registered
    response = stranger.post("/api/v1/miners/claim", {"wait_seconds": 0})
    assert response.status_code == 403 and reason(response) == "unknown_miner"


def test_forged_miner_signature_is_401_and_changes_nothing(stack: Stack) -> None:
    model = fake_model()
    victim = stack.fake_miner([model])
    attacker = KeyPair.generate()
    before = stack.coordinator.db_counts()
    with stack.http() as http:
        queued = submit(http, job_for(model))
        # A claim in the victim's name, signed by another key.
        headers, body = victim.sign("/api/v1/miners/claim", {"wait_seconds": 0}, key=attacker)
        headers[HEADER_MINER] = victim.address
        forged = victim.send("/api/v1/miners/claim", headers, body)
        assert forged.status_code == 401 and reason(forged) == "unauthorized"
        assert "signature" in forged.json()["error"]["message"]
        job = http.get(f"/api/v1/jobs/{queued['job_id']}").json()
        assert job["state"] == "queued" and job["attempts"] == 0
        # A result in the victim's name for the job it really holds.
        claim = victim.claim()
        assert claim is not None
        output, receipt = victim.build_result(claim)
        path = f"/api/v1/miners/jobs/{queued['job_id']}/result"
        payload = {"lease_id": claim["lease"]["lease_id"], "output": output, "receipt": receipt}
        headers, body = victim.sign(path, payload, key=attacker)
        headers[HEADER_MINER] = victim.address
        forged = victim.send(path, headers, body)
        assert forged.status_code == 401 and reason(forged) == "unauthorized"
        # A signature made for another body does not carry over.
        good_headers, _ = victim.sign(path, {**payload, "lease_id": "other"})
        tampered = victim.send(path, good_headers, body)
        assert tampered.status_code == 401
        job = http.get(f"/api/v1/jobs/{queued['job_id']}").json()
        assert job["state"] == "assigned" and job["miner"] == victim.address
        assert stack.coordinator.db_counts() == {**before, "jobs": before["jobs"] + 1}
        # The real miner's own request still goes through.
        ok = victim.send(path, *victim.sign(path, payload))
        assert ok.status_code == 200, ok.text


def test_replayed_miner_request_is_401(stack: Stack) -> None:
    model = fake_model()
    miner = stack.fake_miner([model], max_concurrency=4)
    with stack.http() as http:
        first = submit(http, job_for(model, "first"))
        second = submit(http, job_for(model, "second"))
        headers, body = miner.sign("/api/v1/miners/claim", {"wait_seconds": 0})
        claimed = miner.send("/api/v1/miners/claim", headers, body)
        assert claimed.status_code == 200
        assert claimed.json()["job"]["job_id"] == first["job_id"]
        replay = miner.send("/api/v1/miners/claim", headers, body)
        assert replay.status_code == 401 and reason(replay) == "unauthorized"
        assert "replay" in replay.json()["error"]["message"]
        # The replay claimed nothing: the second job is still waiting.
        job = http.get(f"/api/v1/jobs/{second['job_id']}").json()
        assert job["state"] == "queued" and job["attempts"] == 0 and job["miner"] is None


def test_stale_or_future_timestamps_are_401(stack: Stack) -> None:
    miner = stack.fake_miner([fake_model()])
    for skew in (-60_000, 60_000):
        body = b'{"wait_seconds":0}'
        headers = sign_miner_request(
            miner.key, stack.coordinator.chain_id, "POST", "/api/v1/miners/claim", body, now_ms() + skew
        )
        headers["Content-Type"] = "application/json"
        response = miner.send("/api/v1/miners/claim", headers, body)
        assert response.status_code == 401 and "window" in response.json()["error"]["message"]
    # A garbage signature is refused as well.
    headers, body = miner.sign("/api/v1/miners/claim", {"wait_seconds": 0})
    headers[HEADER_SIGNATURE] = "00" * 64
    assert miner.send("/api/v1/miners/claim", headers, body).status_code == 401


# -- who may report --------------------------------------------------------------------------------


def test_result_for_a_job_assigned_to_another_miner_is_409(stack: Stack) -> None:
    model = fake_model()
    holder = stack.fake_miner([model])
    other = stack.fake_miner([model])
    before = stack.coordinator.db_counts()
    with stack.http() as http:
        job = submit(http, job_for(model))
        claim = holder.claim()
        assert claim is not None and claim["job"]["job_id"] == job["job_id"]
        lease_id = claim["lease"]["lease_id"]
        # The other miner, even knowing the lease id, cannot deliver or report progress.
        output, receipt = other.build_result(claim)
        refused = other.result(job["job_id"], lease_id, output, receipt)
        assert refused.status_code == 409 and reason(refused) == "not_assigned_to_you"
        assert other.progress(job["job_id"], lease_id, ["x"]).status_code == 409
        assert reason(other.release(job["job_id"], lease_id)) == "not_assigned_to_you"
        view = http.get(f"/api/v1/jobs/{job['job_id']}").json()
        assert view["state"] == "assigned" and view["miner"] == holder.address
        assert http.get(f"/api/v1/jobs/{job['job_id']}/receipt").status_code == 404
        assert stack.coordinator.db_counts() == {**before, "jobs": before["jobs"] + 1}
        # The holder completes it; its receipt is the only one.
        output, receipt = holder.build_result(claim)
        expect(holder.result(job["job_id"], lease_id, output, receipt))
        check_receipt(stack, http, job["job_id"])
    assert len(stack.coordinator.db_receipts([job["job_id"]])) == 1


def test_result_after_the_lease_expired_is_refused(stack: Stack) -> None:
    model = fake_model()
    miner = stack.fake_miner([model])
    with stack.http() as http:
        job = submit(http, job_for(model))
        claim = miner.claim()
        assert claim is not None
        lease_id = claim["lease"]["lease_id"]
        assert claim["lease"]["lease_seconds"] == SHARED_LEASE_SECONDS
        expect(miner.progress(job["job_id"], lease_id, ["a"]))
        # The miner goes silent past its lease: the job is requeued (the attempt counts).
        time.sleep(SHARED_LEASE_SECONDS)
        requeued = wait_state(http, job["job_id"], "queued", timeout=5)
        assert requeued["attempts"] == 1 and requeued["miner"] is None
        assert "missed its lease" in requeued["error"]
        output, receipt = miner.build_result(claim)
        late = miner.result(job["job_id"], lease_id, output, receipt)
        assert late.status_code == 409
        # Whether the sweeper had already requeued the job when the result arrived decides the wording.
        assert reason(late) in {"lease_expired", "lease_lost", "not_assigned_to_you"}
        assert miner.progress(job["job_id"], lease_id).status_code == 409
        # The same miner takes the job again under a new lease: the old lease stays dead.
        again = miner.claim()
        assert again is not None and again["job"]["job_id"] == job["job_id"]
        assert again["job"]["attempt"] == 2
        late = miner.result(job["job_id"], lease_id, output, receipt)
        assert late.status_code == 409 and reason(late) == "lease_lost"
        heartbeat = miner.post("/api/v1/miners/heartbeat", {"leases": {job["job_id"]: lease_id}})
        assert heartbeat.json()["lost"] == [job["job_id"]]
        assert http.get(f"/api/v1/jobs/{job['job_id']}/receipt").status_code == 404
        # Under the live lease the result is accepted.
        output, receipt = miner.build_result(again)
        expect(miner.result(job["job_id"], again["lease"]["lease_id"], output, receipt))
        done = http.get(f"/api/v1/jobs/{job['job_id']}").json()
        assert done["state"] == "completed" and done["attempts"] == 2
    assert len(stack.coordinator.db_receipts([job["job_id"]])) == 1


def test_heartbeat_keeps_a_silent_job_alive(stack: Stack) -> None:
    model = fake_model()
    miner = stack.fake_miner([model])
    with stack.http() as http:
        job = submit(http, job_for(model))
        claim = miner.claim()
        assert claim is not None
        lease_id = claim["lease"]["lease_id"]
        deadline = time.monotonic() + SHARED_LEASE_SECONDS * 1.6
        while time.monotonic() < deadline:
            beat = miner.post("/api/v1/miners/heartbeat", {"leases": {job["job_id"]: lease_id}})
            assert beat.status_code == 200 and job["job_id"] in beat.json()["extended"]
            time.sleep(SHARED_LEASE_SECONDS / 4)
        view = http.get(f"/api/v1/jobs/{job['job_id']}").json()
        assert view["state"] == "running" and view["attempts"] == 1


# -- receipts ------------------------------------------------------------------------------------


OTHER_KEY = KeyPair.generate()
WRONG_RECEIPTS: dict[str, tuple[str, dict[str, Any]]] = {
    "forged receipt signature": ("bad_miner_signature", {"signer": OTHER_KEY}),
    "wrong job": ("wrong_job", {"job_id": "job_someotherjob"}),
    "wrong model": ("wrong_model", {"model": "not-the-model"}),
    "wrong model digest": ("wrong_model_digest", {"model_digest": "sha256:" + "9" * 64}),
    "wrong input hash": ("input_hash_mismatch", {"input_hash": "0" * 64}),
    "output differs from the receipt": ("output_hash_mismatch", {"output_text": "something else"}),
    "total is not units x price": ("price_mismatch", {"total_price": 999}),
    "compute longer than wall time": (
        "units_inconsistent",
        {"units": ReceiptUnits(prompt_tokens=1, completion_tokens=1, compute_ms=60_000)},
    ),
    "too many tokens for the compute time": (
        "units_inconsistent",
        {"units": ReceiptUnits(prompt_tokens=1, completion_tokens=5_000, compute_ms=1)},
    ),
    "started long before assignment": ("timing_inconsistent", {"started_at_ms": 1_000}),
    "finished in the future": ("timing_inconsistent", {"finished_at_ms": 4_000_000_000_000}),
    "another coordinator": ("wrong_coordinator", {"coordinator": OTHER_KEY.address}),
}


@pytest.mark.parametrize("case", list(WRONG_RECEIPTS))
def test_a_result_with_a_wrong_receipt_is_422_with_its_reason(stack: Stack, case: str) -> None:
    expected, changes = WRONG_RECEIPTS[case]
    model = fake_model(price=2)
    miner = stack.fake_miner([model])
    with stack.http() as http:
        job = submit(http, job_for(model, "one two three"))
        claim = miner.claim()
        assert claim is not None
        lease_id = claim["lease"]["lease_id"]
        # (build_result keeps the total at units x price, so only the rule under test fails)
        output, receipt = miner.build_result(claim, **changes)
        before = stack.coordinator.db_counts()
        refused = miner.result(job["job_id"], lease_id, output, receipt)
        assert refused.status_code == 422, refused.text
        assert reason(refused) == expected
        # Nothing changed: the job is still the miner's, with no receipt ...
        view = http.get(f"/api/v1/jobs/{job['job_id']}").json()
        assert view["state"] == "assigned" and view["miner"] == miner.address
        assert stack.coordinator.db_counts() == before
        # ... and a correct result still completes it.
        output, receipt = miner.build_result(claim)
        accepted = miner.result(job["job_id"], lease_id, output, receipt)
        assert accepted.status_code == 200, accepted.text
        check_receipt(stack, http, job["job_id"])


def test_malformed_results_are_422(stack: Stack) -> None:
    model = fake_model()
    miner = stack.fake_miner([model])
    with stack.http() as http:
        job = submit(http, job_for(model))
        claim = miner.claim()
        assert claim is not None
        lease_id = claim["lease"]["lease_id"]
        output, receipt = miner.build_result(claim)
        broken = {k: v for k, v in receipt.items() if k != "output_hash"}
        response = miner.result(job["job_id"], lease_id, output, broken)
        assert response.status_code == 422 and reason(response) == "invalid_request"  # breaks the message type
        assert response.json()["error"]["message"].startswith("receipt: ")
        vectors = {"dimensions": 1, "vectors_f32": "0000803f"}
        response = miner.result(job["job_id"], lease_id, vectors, receipt)
        assert response.status_code == 422 and reason(response) == "bad_result"
        response = miner.post(f"/api/v1/miners/jobs/{job['job_id']}/result", {"lease_id": lease_id})
        assert response.status_code == 422
        assert http.get(f"/api/v1/jobs/{job['job_id']}").json()["state"] == "assigned"


# -- matching -------------------------------------------------------------------------------------


def test_a_miner_that_lacks_the_model_never_takes_the_job(stack: Stack) -> None:
    only_here = fake_model()
    holder = stack.fake_miner([only_here])
    with stack.http() as http:
        job = submit(http, job_for(only_here))
        # Two live echo miners long-poll for work the whole time; neither may take this job. A later job they
        # can serve completing shows they were offered the queue after it (an event, not a sleep).
        passed_over(http)
        view = http.get(f"/api/v1/jobs/{job['job_id']}").json()
        assert view["state"] == "queued" and view["attempts"] == 0 and view["miner"] is None
        claim = holder.claim()
        assert claim is not None and claim["job"]["job_id"] == job["job_id"]
    for miner in stack.miners:
        assert job["job_id"] not in miner.log_text()


def test_a_miner_never_substitutes_another_build_of_the_model(stack: Stack) -> None:
    # A fake miner serves "echo" with different weights; a job pinned to those weights must wait for
    # it, although two echo miners serve a model of the same name.
    other_build = fake_model(name="echo")
    assert other_build["digest"] != ECHO_DIGEST
    holder = stack.fake_miner([other_build])
    with stack.http() as http:
        job = submit(http, {**job_for(other_build), "model_digest": other_build["digest"]})
        passed_over(http)
        assert http.get(f"/api/v1/jobs/{job['job_id']}").json()["state"] == "queued"
        claim = holder.claim()
        assert claim is not None and claim["job"]["job_id"] == job["job_id"]
        assert claim["job"]["model_digest"] == other_build["digest"]
        # A receipt claiming the echo miners' digest instead is refused.
        output, receipt = holder.build_result(claim, model_digest=ECHO_DIGEST)
        refused = holder.result(job["job_id"], claim["lease"]["lease_id"], output, receipt)
        assert refused.status_code == 422 and reason(refused) == "wrong_model_digest"
        holder.release(job["job_id"], claim["lease"]["lease_id"])
        http.post(f"/api/v1/jobs/{job['job_id']}/cancel")


def test_a_miner_gets_no_more_jobs_than_its_concurrency(stack: Stack) -> None:
    model = fake_model()
    miner = stack.fake_miner([model], max_concurrency=1)
    with stack.http() as http:
        first = submit(http, job_for(model, "first"))
        second = submit(http, job_for(model, "second"))
        claim = miner.claim()
        assert claim is not None and claim["job"]["job_id"] == first["job_id"]
        assert miner.claim() is None, "a second job while the first runs would exceed max_concurrency=1"
        # Handing the job back frees the slot without counting the attempt.
        expect(miner.release(first["job_id"], claim["lease"]["lease_id"]))
        released = http.get(f"/api/v1/jobs/{first['job_id']}").json()
        assert released["state"] == "queued" and released["attempts"] == 0
        # The freed slot takes the next job: the one it handed back waits out its cooldown for others
        # (release_cooldown_seconds, aitbc.market.conduct).
        again = miner.claim()
        assert again is not None and again["job"]["job_id"] == second["job_id"]
        output, receipt = miner.build_result(again)
        expect(miner.result(second["job_id"], again["lease"]["lease_id"], output, receipt))
        assert miner.claim() is None
        http.post(f"/api/v1/jobs/{first['job_id']}/cancel")


def test_long_poll_claim_wakes_on_submission(stack: Stack) -> None:
    import threading

    model = fake_model()
    miner = stack.fake_miner([model])
    got: dict[str, Any] = {}

    def poll() -> None:
        start = time.monotonic()
        got["claim"] = miner.claim(wait=10)
        got["waited"] = time.monotonic() - start

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)  # the miner is now waiting inside the long poll
    with stack.http() as http:
        job = submit(http, job_for(model))
    thread.join(timeout=15)
    assert got["claim"] is not None and got["claim"]["job"]["job_id"] == job["job_id"]
    assert got["waited"] < 5, "the claim returned when the job arrived, not at the end of its wait"


def test_claim_many_and_batched_results_judge_each_job_on_its_own(stack: Stack) -> None:
    """One long-poll hands out several jobs (within the miner's free slots); one results request delivers
    several, and a bad receipt in it is refused with its reason while the others complete."""
    model = fake_model()
    miner = stack.fake_miner([model], max_concurrency=3)
    with stack.http() as http:
        jobs = [submit(http, job_for(model, f"batch {i}")) for i in range(4)]
        response = miner.post("/api/v1/miners/claim-many", {"wait_seconds": 0, "max_jobs": 8})
        assert response.status_code == 200, response.text
        claimed = response.json()["assignments"]
        assert len(claimed) == 3, "no more jobs than the miner's free slots"
        assert {c["job"]["job_id"] for c in claimed} <= {j["job_id"] for j in jobs}
        items = []
        for i, claim in enumerate(claimed):
            output, receipt = miner.build_result(claim)
            if i == 1:
                receipt = {**receipt, "total_price": receipt["total_price"] + 1}  # breaks the price arithmetic
            items.append({"job_id": claim["job"]["job_id"], "lease_id": claim["lease"]["lease_id"], "output": output,
                          "receipt": receipt})  # fmt: skip
        answer = miner.post("/api/v1/miners/results", {"results": items})
        assert answer.status_code == 200, answer.text
        results = {r["job_id"]: r for r in answer.json()["results"]}
        bad = claimed[1]["job"]["job_id"]
        assert results[bad]["error"]["status"] == 422 and "receipt_hash" not in results[bad]
        for claim in (claimed[0], claimed[2]):
            job_id = claim["job"]["job_id"]
            assert "receipt_hash" in results[job_id]
            assert http.get(f"/api/v1/jobs/{job_id}").json()["state"] == "completed"
        assert http.get(f"/api/v1/jobs/{bad}").json()["state"] != "completed"
        empty = miner.post("/api/v1/miners/results", {"results": []})
        assert empty.status_code == 422
        for job in jobs:
            http.post(f"/api/v1/jobs/{job['job_id']}/cancel")
