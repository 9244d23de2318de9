"""The deposit path of ``bench/settlement.py``: plain ``POST /api/v1/jobs`` paid from a deposit, settled in batches.

Setup (untimed): one client opens a delegated deposit with the coordinator big enough for every job and
its API key is bound to it. Timed: ``--submit-concurrency`` HTTP workers post the product's body
(no ``job_id``, no ``max_price``: the coordinator reserves the worst case) as fast as the coordinator
answers; miners claim, run and report; the coordinator settles completed jobs in ``settle_batch`` txs;
a follower reads the chain's job events until every accepted job has its ``settled`` event. Settled
jobs/s is first POST sent -> arrival of the block event holding the last settlement.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from aitbc.chain.deposits import compute_job_charge
from aitbc.chain.params import ChainParams
from aitbc.client.deposit import open_deposit
from aitbc.client.node import NodeClient
from aitbc.coordinator.app import open_repo
from aitbc.coordinator.auth import new_api_key
from aitbc.coordinator.config import CoordinatorSettings
from aitbc.coordinator.db.deposit_repo import DepositRepo
from aitbc.protocol.crypto import KeyPair


@dataclass
class DepositRun:
    total: int
    t0: float = 0.0
    accepted: dict[str, float] = field(default_factory=dict)
    """job id -> when its POST answered 201."""
    post_rtt: list[float] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    settled: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: dict[str, dict[str, Any]] = field(default_factory=dict)
    posts_done: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def check_done(self) -> None:
        if self.posts_done and all(j in self.settled or j in self.rejected for j in self.accepted):
            self.done.set()


def prepare_deposit(
    node_url: str,
    coordinator_dir: Any,
    client: KeyPair,
    coordinator: str,
    jobs: int,
    max_price: int,
    params: ChainParams,
) -> tuple[str, str]:
    """Open a deposit covering ``jobs`` worst-case charges and bind a fresh API key to it: (api key, deposit id)."""
    amount = jobs * compute_job_charge(max_price, params) * 2
    with NodeClient(node_url) as node:
        opened = open_deposit(node, client, coordinator, amount, cap_per_period=amount, period_blocks=100_000)
    repo = open_repo(CoordinatorSettings(data_dir=coordinator_dir))
    try:
        token, key = new_api_key("bench-deposit", client.address, 1_000_000.0, 1_000_000)
        repo.insert_api_key(key)
        DepositRepo(repo.engine).bind(key.id, opened.deposit_id, int(time.time() * 1000))
    finally:
        repo.engine.dispose()
    return token, opened.deposit_id


async def _post_jobs(
    coord_url: str, body: bytes, api_key: str, run: DepositRun, todo: Any, interval: float | None = None, seed: int = 0
) -> None:
    """One keep-alive connection posting pre-encoded requests: a load generator as light as the coordinator
    allows (httpx cost ~3 ms of this process's CPU per request; its CPU is counted in the figures).

    ``interval``: open loop, one POST every ``interval`` seconds on average on this connection (exponential
    gaps from ``seed``), its latency counted
    from when it was due (so a slow answer that delays the next POST counts against the coordinator);
    None: closed loop, each POST as soon as the previous one is answered."""
    host, port = coord_url.removeprefix("http://").split(":")
    request = (
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nX-Api-Key: {api_key}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection(host, int(port))
    arrivals = random.Random(seed)
    try:
        # Poisson arrivals on each connection (so Poisson in all): the connections do not fire in step, which
        # would send them as one burst every ``interval`` and measure the burst's queue, not the rate.
        due = time.time() + (arrivals.expovariate(1 / interval) if interval is not None else 0.0)
        for i in todo:
            if interval is not None:
                await asyncio.sleep(max(0.0, due - time.time()))
                sent = due
                due += arrivals.expovariate(1 / interval)
            else:
                sent = time.time()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            content = await reader.readexactly(length)
            if status == 201:
                run.accepted[orjson.loads(content)["job_id"]] = time.time()
                run.post_rtt.append(time.time() - sent)
            else:
                run.refused[i] = f"HTTP {status}: {content[:300].decode(errors='replace')}"
    finally:
        writer.close()


async def _follow(node: httpx.AsyncClient, url: str, coordinator: str, cursor: int, run: DepositRun) -> None:
    while not run.done.is_set():
        body = orjson.dumps(
            {"jsonrpc": "2.0", "method": "get_job_events", "params": [cursor, coordinator, 1_000], "id": 1}
        )
        page = orjson.loads((await node.post(url, content=body, headers={"Content-Type": "application/json"})).content)
        page = page["result"]
        for event in page["events"]:
            if not event.get("deposit_id"):
                continue
            if event["kind"] == "settled":
                run.settled[event["job_id"]] = event
            elif event["kind"] == "settle_rejected":
                run.rejected[event["job_id"]] = event
        cursor = int(page["next_seq"])
        run.check_done()
        if len(page["events"]) < 1_000:
            await asyncio.sleep(0.05)


async def run_deposit_jobs(
    node_url: str, coord_url: str, coordinator: str, api_key: str, body: dict[str, Any], jobs: int, concurrency: int,
    timeout: float, rate: float | None = None,
) -> DepositRun:  # fmt: skip
    """``rate``: POSTs per second over all ``concurrency`` connections (open loop); None: closed loop."""
    run = DepositRun(total=jobs)
    raw = orjson.dumps(body)
    async with httpx.AsyncClient(timeout=120) as follower, httpx.AsyncClient(base_url=coord_url) as coord:
        head = orjson.dumps({"jsonrpc": "2.0", "method": "get_job_events", "params": [0, coordinator, 1], "id": 1})
        reply = orjson.loads((await follower.post(node_url, content=head)).content)
        cursor = int(reply["result"]["last_seq"])
        await coord.get("/healthz")
        follow = asyncio.create_task(_follow(follower, node_url, coordinator, cursor, run))
        todo = iter(range(jobs))
        run.t0 = time.time()
        interval = None if rate is None else concurrency / rate
        posters = (_post_jobs(coord_url, raw, api_key, run, todo, interval, seed) for seed in range(concurrency))
        await asyncio.gather(*posters)
        run.posts_done = True
        run.check_done()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.done.wait(), timeout)
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
    return run


async def fetch_finished(coord_url: str, api_key: str, job_ids: list[str], concurrency: int) -> dict[str, int]:
    """Each job's ``finished_at_ms`` as the coordinator recorded it (read after the run)."""
    out: dict[str, int] = {}
    todo = iter(job_ids)

    async def worker(client: httpx.AsyncClient) -> None:
        for job_id in todo:
            response = await client.get(f"/api/v1/jobs/{job_id}", headers={"X-Api-Key": api_key})
            if response.status_code == 200 and response.json().get("finished_at_ms"):
                out[job_id] = int(response.json()["finished_at_ms"])

    async with httpx.AsyncClient(base_url=coord_url, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return out


_REQUEST_SERIES = {
    "aitbc_claims_total": "claims",
    "aitbc_job_assignment_seconds_count": "claimed jobs",
    "aitbc_result_requests_total": "result requests",
    "aitbc_jobs_finished_total": "finished jobs",
}


def scrape_miner_requests(coord_url: str) -> dict[str, float]:
    """The coordinator's counters of miners' requests (``/metrics``), summed over their labels; the claims'
    empty ones also apart, as "empty claims"."""
    text = httpx.get(f"{coord_url}/metrics", timeout=10).text
    counts = dict.fromkeys([*_REQUEST_SERIES.values(), "empty claims"], 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        series = name.split("{", 1)[0]
        if series in _REQUEST_SERIES:
            counts[_REQUEST_SERIES[series]] += float(value)
            if series == "aitbc_claims_total" and 'outcome="empty"' in name:
                counts["empty claims"] += float(value)
    return counts


def describe_miner_requests(before: dict[str, float], after: dict[str, float]) -> str:
    """How many jobs a claim and a result request carried during the run (fewer requests: less CPU per job)."""
    d = {k: after[k] - before[k] for k in after}
    claims, results = max(1.0, d["claims"]), max(1.0, d["result requests"])
    return (
        f"{d['claims']:,.0f} claims ({d['claimed jobs'] / claims:.1f} jobs each, {d['empty claims'] / claims:.0%}"
        f" empty), {d['result requests']:,.0f} result requests ({d['finished jobs'] / results:.1f} results each)"
    )
