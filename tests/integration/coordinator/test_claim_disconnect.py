"""A miner that goes away in the middle of a long-poll claim (killed, or its client timed out) takes no job
with it: the coordinator notices the closed connection, ends the poll, and the next job goes to a miner that
is there — not to a lease that no one holds (``aitbc.runtime.disconnect``). A coordinator of its own, with
no miner processes, so the claims it counts as waiting are this test's, and a 30 s lease: a job stranded by
a dead claim would not come back within the test's waits."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from coordinator_harness import FakeMiner, Stack, fake_model, launch_stack, submit

CLAIM = "/api/v1/miners/claim-many"


@pytest.fixture(scope="module")
def lone_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = launch_stack(tmp_path_factory.mktemp("claim-disconnect"), miners=0, lease_seconds=30.0)
    try:
        yield stack
    finally:
        stack.stop()


def claims_waiting(url: str) -> int:
    metrics = httpx.get(url + "/metrics", timeout=10).text
    found = re.search(r"^aitbc_claims_waiting (\S+)$", metrics, re.MULTILINE)
    assert found is not None, "the coordinator exports aitbc_claims_waiting"
    return int(float(found.group(1)))


def wait_claims_waiting(url: str, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while (seen := claims_waiting(url)) != count:
        assert time.monotonic() < deadline, f"{seen} claims waiting, expected {count} within {within} s"
        time.sleep(0.05)


def raw_claim(miner: FakeMiner, url: str, chunked: bool) -> socket.socket:
    """A signed claim-many sent on a plain socket (which the test then closes, as a killed miner's would be).
    Chunked, it has no declared length and takes FastAPI's route; otherwise the coordinator's fast path."""
    headers, body = miner.sign(CLAIM, {"wait_seconds": 20, "max_jobs": 4})
    parts = urlsplit(url)
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
        payload = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    else:
        headers["Content-Length"] = str(len(body))
        payload = body
    head = f"POST {CLAIM} HTTP/1.1\r\nHost: {parts.netloc}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    conn = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10)
    conn.sendall(head.encode() + b"\r\n" + payload)
    return conn


@pytest.mark.parametrize("chunked", [False, True], ids=["fast-path", "full-stack"])
def test_a_miner_gone_mid_poll_strands_no_job(lone_stack: Stack, chunked: bool) -> None:
    model = fake_model()
    miner = lone_stack.fake_miner([model])
    url = lone_stack.url
    wait_claims_waiting(url, 0, within=10)
    conn = raw_claim(miner, url, chunked)
    wait_claims_waiting(url, 1, within=10)  # the claim is in its long poll
    conn.close()
    wait_claims_waiting(url, 0, within=5)  # ... and ends with its connection, not 20 s later
    with lone_stack.http() as http:
        job = submit(http, {"type": "inference", "model": model["name"], "input": {"prompt": "a b c"}})
        claimed = miner.claim(wait=5)
        assert claimed is not None, "the job was taken by the dead claim"
        assert claimed["job"]["job_id"] == job["job_id"]
        assert http.get(f"/api/v1/jobs/{job['job_id']}").json()["attempts"] == 1, "no attempt went to the dead claim"
    assert "lease expired" not in lone_stack.coordinator.log_text()
