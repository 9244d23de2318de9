"""Settlement throughput: paid jobs settled per second through the whole path vs plain transfers/s.

Everything runs as real processes on loopback (``aitbc.devnet.runner.Devnet``: node, coordinator in
paid mode; plus ``--miners`` ``echo`` miners, the instant test backend), on this machine, with the load
generator sharing its cores. In order:

1. setup (untimed): a genesis that funds one client key per 1,000 jobs (each with its own API key,
   bound to its address) and the transfer accounts; every ``open_escrow`` and every transfer is signed and
   JSON-encoded before any clock starts;
2. **baseline** — plain transfers: pre-signed ``send_tx`` JSON-RPC batches of 500 posted over
   ``--transfer-connections`` keep-alive connections into the same node; committed transfers/s is
   first batch sent → arrival of the ``new_blocks`` event of the block that holds the last one;
3. **paid jobs** — the whole path for ``--jobs`` jobs, pipelined: the escrows go out in JSON-RPC
   batches (one connection, ≤ 1,000 per client key: the node's nonce window); a follower reads the
   chain's job events for the coordinator (``get_job_events``) and, for each committed escrow, a pool
   of ``--submit-concurrency`` HTTP workers submits the job (``POST /api/v1/jobs`` with its
   ``job_id``); the coordinator checks the escrow, a miner claims and runs it, the receipt comes back,
   the coordinator's payment worker sends ``settle_job``; the run ends when the follower has seen a
   ``settled`` (or ``refunded``) event for every job. Settled jobs/s is first escrow sent → arrival of
   the block event holding the last settle;
4. **deposit jobs** (``bench/settlement_deposits.py``) — ``--deposit-jobs`` plain ``POST /api/v1/jobs``
   (the product's body: no escrow, no ``job_id``, no ``max_price``) with an API key bound to a funded
   delegated deposit; the coordinator reserves at once, the miners run the jobs, the coordinator settles
   them in ``settle_batch`` txs; the run ends when every accepted job has its ``settled`` event;
5. the baseline again (the machine is shared: both transfer runs are printed, the ratios use the
   faster one, so they are the conservative figures).

The two job paths are printed side by side: settled jobs/s, CPU per settled job over every process
(node, coordinator, miners, this client), ``POST /api/v1/jobs`` latency, job finished -> its
settlement committed. Targets of the deposit path (issue 15): >= 600 settled jobs/s, <= 3 ms CPU per
settled job, POST p99 <= 20 ms, finished -> settled p50 <= 1.5 s. The machine's load average is
printed with the figures (other work on it slows every figure).

Per job, afterwards (so it costs the run nothing): the block arrival times from the WebSocket, the
heights of its ``escrow_opened`` / ``settled`` events and the coordinator's own timestamps give the
phases: escrow send → commit, commit → job accepted, accepted → claimed → finished, finished → settle
committed (the settlement lag). The CPU of each process explains where the time went.

    .venv/bin/python bench/settlement.py            # 1,500 escrow jobs + 3,000 deposit jobs (~2-3 min)
    .venv/bin/python bench/settlement.py --quick    # 300 + 600 jobs smoke run
    .venv/bin/python bench/settlement.py --jobs 0   # the deposit path and the baselines only
    .venv/bin/python bench/settlement.py --jobs 0 --deposit-rate 600   # POST latency, open loop (Poisson arrivals)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import orjson
import uvloop
from websockets.sync.client import connect as ws_connect

from aitbc.chain.escrow import compute_escrow_amount
from aitbc.chain.params import ChainParams
from aitbc.client.node import NodeClient
from aitbc.client.payment import compute_default_max_price
from aitbc.coordinator.app import open_repo
from aitbc.coordinator.auth import new_api_key
from aitbc.coordinator.config import CoordinatorSettings
from aitbc.devnet.runner import DEVNET_MINER_PRICE, Devnet, ManagedProcess
from aitbc.miner.backends.echo import ECHO_MODEL
from aitbc.node.init import init_data_dir
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.tx import OpenEscrow, sign_tx, tx_to_json_obj
from chain_throughput import (
    CHAIN_ID,
    FUNDING,
    account_keys,
    busy_cpu_seconds,
    cpu_seconds_of,
    free_ports,
    make_batches,
    pct,
    presign,
)
from settlement_deposits import (
    describe_miner_requests,
    fetch_finished,
    prepare_deposit,
    run_deposit_jobs,
    scrape_miner_requests,
)

PER_CLIENT = 1_000
"""Escrows per client key: below the node's nonce window (1,024 pending per sender)."""
ESCROW_BATCH = 250
TRANSFER_BATCH = 500
DEADLINE_BLOCKS = 900


# -- block clock: when each block's commit event arrived -----------------------------------------------------
@dataclass
class BlockClock:
    """Records (tx_count, wall-clock arrival) of every ``new_blocks`` event, on a thread of its own."""

    ws_url: str
    blocks: dict[int, tuple[int, float]] = field(default_factory=dict)
    subscribed: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            with ws_connect(self.ws_url, max_size=None) as ws:
                ws.send(orjson.dumps({"method": "subscribe", "params": ["new_blocks"], "id": 1}).decode())
                orjson.loads(ws.recv())
                self.subscribed.set()
                while not self.stop.is_set():
                    try:
                        raw = ws.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    now = time.time()
                    event = orjson.loads(raw)
                    if event.get("method") == "new_blocks":
                        header = event["params"]
                        self.blocks[int(header["height"])] = (int(header["tx_count"]), now)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            self.subscribed.set()

    def head(self) -> int:
        return max(self.blocks, default=0)

    def txs_after(self, height: int) -> tuple[int, float]:
        """Txs committed in blocks above ``height`` and the arrival of the last block that held any."""
        total, last = 0, 0.0
        for h, (count, at) in list(self.blocks.items()):
            if h > height and count:
                total += count
                last = max(last, at)
        return total, last

    def arrival(self, height: int) -> float | None:
        found = self.blocks.get(height)
        return None if found is None else found[1]


# -- the baseline: plain transfers ---------------------------------------------------------------------------
@dataclass
class TransferRun:
    sent: int
    rejected: int
    committed: int
    seconds: float
    blocks: int
    node_cpu: float

    @property
    def rate(self) -> float:
        return self.committed / self.seconds if self.seconds > 0 else 0.0


async def post_batches(url: str, bodies: list[bytes], connections: int) -> tuple[float, int]:
    """Post the pre-encoded batches over ``connections`` keep-alive connections; (start time, rejected txs)."""
    todo = iter(range(len(bodies)))
    rejected = 0
    headers = {"Content-Type": "application/json"}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal rejected
        for idx in todo:
            reply = orjson.loads((await client.post(url, content=bodies[idx], headers=headers)).content)
            rejected += sum(1 for r in reply if "error" in r)

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        await client.get(url.rstrip("/") + "/healthz")  # open one connection before the clock starts
        t0 = time.time()
        await asyncio.gather(*(worker(client) for _ in range(connections)))
    return t0, rejected


def run_transfers(
    url: str, clock: BlockClock, bodies: list[bytes], count: int, connections: int, node_pid: int
) -> TransferRun:
    head = clock.head()
    cpu0 = cpu_seconds_of(node_pid)
    t0, rejected = asyncio.run(post_batches(url, bodies, connections))
    want = count - rejected
    deadline = time.monotonic() + 60 + count / 1_000
    committed, last = clock.txs_after(head)
    while committed < want and time.monotonic() < deadline:
        time.sleep(0.02)
        committed, last = clock.txs_after(head)
    blocks = sum(1 for h, (n, _) in list(clock.blocks.items()) if h > head and n)
    return TransferRun(count, rejected, committed, max(0.0, last - t0), blocks, cpu_seconds_of(node_pid) - cpu0)


# -- paid jobs ----------------------------------------------------------------------------------------------------
@dataclass
class JobPlan:
    job_ids: list[str]
    client_of: dict[str, int]
    """job id -> index of its client key (and API key)."""
    escrow_batches: list[tuple[list[str], bytes]]
    """(job ids, JSON-RPC batch body) in sending order."""
    job_bodies: dict[str, bytes]
    api_keys: list[str]


@dataclass
class JobRun:
    total: int
    t0: float = 0.0
    sent_at: dict[str, float] = field(default_factory=dict)
    opened_height: dict[str, int] = field(default_factory=dict)
    accepted_at: dict[str, float] = field(default_factory=dict)
    submit_rtt: list[float] = field(default_factory=list)
    settled: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunded: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    submit_retries: int = 0
    t_escrows_sent: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def check_done(self) -> None:
        if len(self.settled) + len(self.refunded) + len(self.failed) >= self.total:
            self.done.set()


async def node_call(client: httpx.AsyncClient, url: str, method: str, *params: Any) -> Any:
    body = orjson.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1})
    reply = orjson.loads((await client.post(url, content=body, headers={"Content-Type": "application/json"})).content)
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


async def send_escrows(node: httpx.AsyncClient, url: str, plan: JobPlan, run: JobRun) -> None:
    headers = {"Content-Type": "application/json"}
    for job_ids, body in plan.escrow_batches:
        sent = time.time()
        reply = orjson.loads((await node.post(url, content=body, headers=headers)).content)
        by_id = {r["id"]: r for r in reply}
        for i, job_id in enumerate(job_ids):
            run.sent_at[job_id] = sent
            error = by_id[i].get("error")
            if error is not None:
                run.failed[job_id] = f"escrow refused: {orjson.dumps(error).decode()}"
    run.t_escrows_sent = time.time()
    run.check_done()


async def follow_events(
    node: httpx.AsyncClient,
    url: str,
    coordinator: str,
    cursor: int,
    plan: JobPlan,
    run: JobRun,
    queue: asyncio.Queue[str],
) -> None:
    """The chain's job events naming the coordinator: committed escrows go to the submit queue."""
    while not run.done.is_set():
        page = await node_call(node, url, "get_job_events", cursor, coordinator, 1_000)
        for event in page["events"]:
            job_id = event["job_id"]
            if job_id not in plan.client_of:
                continue
            if event["kind"] == "escrow_opened":
                run.opened_height[job_id] = int(event["height"])
                queue.put_nowait(job_id)
            elif event["kind"] == "settled":
                run.settled[job_id] = event
            elif event["kind"] == "refunded":
                run.refunded[job_id] = event
        cursor = int(page["next_seq"])
        run.check_done()
        if len(page["events"]) < 1_000:
            await asyncio.sleep(0.05)


async def submit_jobs(coord: httpx.AsyncClient, plan: JobPlan, run: JobRun, queue: asyncio.Queue[str]) -> None:
    while True:
        job_id = await queue.get()
        headers = {"Content-Type": "application/json", "X-Api-Key": plan.api_keys[plan.client_of[job_id]]}
        for attempt in range(50):
            sent = time.time()
            try:
                response = await coord.post("/api/v1/jobs", content=plan.job_bodies[job_id], headers=headers)
            except httpx.TransportError as exc:
                status, text = 0, str(exc)
            else:
                status, text = response.status_code, response.text
            if status < 300 and status != 0:
                run.accepted_at[job_id] = time.time()
                run.submit_rtt.append(run.accepted_at[job_id] - sent)
                break
            if status in (0, 429, 503) and attempt < 49:  # rate limit, chain briefly unreachable: retry
                run.submit_retries += 1
                await asyncio.sleep(0.1)
                continue
            run.failed[job_id] = f"submit HTTP {status}: {text[:300]}"
            run.check_done()
            break


async def run_jobs(
    node_url: str, coord_url: str, coordinator: str, plan: JobPlan, concurrency: int, timeout: float
) -> JobRun:
    run = JobRun(total=len(plan.job_ids))
    queue: asyncio.Queue[str] = asyncio.Queue()
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    async with (
        httpx.AsyncClient(timeout=120) as node,
        httpx.AsyncClient(timeout=120) as follower,
        httpx.AsyncClient(base_url=coord_url, timeout=120, limits=limits) as coord,
    ):
        cursor = int((await node_call(follower, node_url, "get_job_events", 0, coordinator, 1))["last_seq"])
        await coord.get("/healthz")
        run.t0 = time.time()
        tasks = [
            asyncio.create_task(send_escrows(node, node_url, plan, run)),
            asyncio.create_task(follow_events(follower, node_url, coordinator, cursor, plan, run, queue)),
        ]
        tasks += [asyncio.create_task(submit_jobs(coord, plan, run, queue)) for _ in range(concurrency)]
        waiter = asyncio.create_task(run.done.wait())
        pending: set[asyncio.Task[Any]] = {waiter, *tasks}
        deadline = time.monotonic() + timeout
        crashed: list[asyncio.Task[Any]] = []
        while not waiter.done() and not crashed and time.monotonic() < deadline:
            finished, pending = await asyncio.wait(
                pending, timeout=deadline - time.monotonic(), return_when=asyncio.FIRST_COMPLETED
            )
            crashed = [t for t in finished if t is not waiter and t.exception() is not None]
        for task in [waiter, *tasks]:
            task.cancel()
        await asyncio.gather(waiter, *tasks, return_exceptions=True)
        if crashed:
            raise RuntimeError("a load task failed") from crashed[0].exception()
    return run


async def fetch_jobs(coord_url: str, plan: JobPlan, job_ids: list[str], concurrency: int) -> dict[str, dict[str, Any]]:
    """The coordinator's view of each job (its timestamps), read after the run."""
    out: dict[str, dict[str, Any]] = {}
    todo = iter(job_ids)

    async def worker(client: httpx.AsyncClient) -> None:
        for job_id in todo:
            headers = {"X-Api-Key": plan.api_keys[plan.client_of[job_id]]}
            response = await client.get(f"/api/v1/jobs/{job_id}", headers=headers)
            if response.status_code == 200:
                out[job_id] = response.json()

    async with httpx.AsyncClient(base_url=coord_url, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return out


def plan_jobs(
    n: int,
    clients: list[KeyPair],
    api_keys: list[str],
    coordinator: str,
    chain_id: str,
    params: ChainParams,
    head: int,
    max_price: int,
    body: dict[str, Any],
) -> JobPlan:
    """Sign every escrow and encode every job body (before the clock starts)."""
    amount = compute_escrow_amount(max_price, params)
    run_tag = os.urandom(3).hex()
    job_ids = [f"bench_{run_tag}_{i:06d}" for i in range(n)]
    client_of = {job_id: i % len(clients) for i, job_id in enumerate(job_ids)}
    nonces = [0] * len(clients)
    signed: list[tuple[str, bytes]] = []
    for job_id in job_ids:  # round-robin over clients: each batch carries consecutive nonces of every key
        k = client_of[job_id]
        tx = OpenEscrow(
            sender=clients[k].address,
            nonce=nonces[k],
            fee=params.min_fee,
            chain_id=chain_id,
            job_id=job_id,
            coordinator=coordinator,
            amount=amount,
            deadline_height=head + DEADLINE_BLOCKS,
        )
        nonces[k] += 1
        signed.append((job_id, orjson.dumps(tx_to_json_obj(sign_tx(tx, clients[k])))))
    batches = []
    for start in range(0, n, ESCROW_BATCH):
        part = signed[start : start + ESCROW_BATCH]
        items = [
            b'{"jsonrpc":"2.0","method":"send_tx","params":[' + tx + b'],"id":' + str(i).encode() + b"}"
            for i, (_, tx) in enumerate(part)
        ]
        batches.append(([job_id for job_id, _ in part], b"[" + b",".join(items) + b"]"))
    bodies = {job_id: orjson.dumps({**body, "job_id": job_id, "max_price": max_price}) for job_id in job_ids}
    return JobPlan(job_ids, client_of, batches, bodies, api_keys)


def echo_body() -> dict[str, Any]:
    return {
        "type": "inference",
        "model": ECHO_MODEL,
        "input": {"prompt": "settle me: the quick brown fox jumps over the lazy dog"},
        "params": {"max_tokens": 16, "temperature": 0, "seed": 42},
    }


# -- processes -----------------------------------------------------------------------------------------------------
def start_miners(
    devnet: Devnet, coord_url: str, count: int, concurrency: int, claim_batch: int
) -> list[ManagedProcess]:
    miners = []
    for i in range(count):
        miner = ManagedProcess(
            f"miner-{i}",
            [
                sys.executable,
                "-m",
                "aitbc",
                "miner",
                "run",
                "--coordinator",
                coord_url,
                "--backend",
                "echo",
                "--price",
                str(DEVNET_MINER_PRICE),
                "--base-units",
                "--concurrency",
                str(concurrency),
                "--claim-batch",
                str(claim_batch),
                "--data-dir",
                str(devnet.data_dir / f"miner-{i}"),
                "--log-level",
                "warning",
            ],
            devnet.data_dir / "logs" / f"miner-{i}.log",
            f"{coord_url}/healthz",
        )
        devnet.processes.append(miner)  # stopped with the devnet
        miner.start()
        miners.append(miner)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for miner in miners:
            if miner.proc is not None and miner.proc.poll() is not None:
                raise RuntimeError(f"{miner.name} exited with code {miner.proc.returncode}; see {miner.log_path}")
        with contextlib.suppress(httpx.HTTPError, ValueError):
            models = httpx.get(f"{coord_url}/api/v1/models", timeout=2).json()["models"]
            if any(m["name"] == ECHO_MODEL and m["miners"] >= count for m in models):
                return miners
        time.sleep(0.2)
    raise RuntimeError(f"{count} echo miners did not register within 120s")


def pid_of(process: ManagedProcess) -> int:
    assert process.proc is not None
    return process.proc.pid


@contextlib.contextmanager
def timing_quietly() -> Iterator[None]:
    """No garbage collection in this client while it times requests.

    A full collection here stops the client for 25-45 ms, and every POST due meanwhile counts that pause as
    the coordinator's latency (it showed as p99 +5-10 ms). What the client holds is frozen first; its
    garbage waits until the timed run is over.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def start_profilers(prefix: Path, pids: dict[str, int], gil_only: bool) -> list[subprocess.Popen[bytes]]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    procs = []
    gil = ["--gil"] if gil_only else []
    for name, pid in pids.items():
        out = prefix.parent / f"{prefix.name}-{name}.txt"
        cmd = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "--threads", *gil]
        procs.append(subprocess.Popen([*cmd, "--nonblocking", "-o", str(out)], stdout=subprocess.DEVNULL))
    time.sleep(1.0)  # let py-spy attach
    return procs


def stop_profilers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- reporting -----------------------------------------------------------------------------------------------------
def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {pct(values, 50) * 1000:,.0f} ms   p99 {pct(values, 99) * 1000:,.0f} ms"
        f"   max {max(values) * 1000:,.0f} ms   (n={len(values):,})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_500, help="per-job escrow jobs to run and settle (0: skip)")
    parser.add_argument("--deposit-jobs", type=int, default=3_000, help="deposit jobs to run and settle (0: skip)")
    parser.add_argument("--miners", type=int, default=2, help="echo miner processes")
    parser.add_argument(
        "--miner-concurrency",
        type=int,
        default=64,
        help="jobs each miner runs at once (a slot stays taken until the job's result is stored, so with few slots"
        " the claims carry few jobs: 16 gave ~5.6 jobs per claim)",
    )
    parser.add_argument(
        "--submit-concurrency",
        type=int,
        help="client HTTP connections submitting jobs (default 32 in a closed loop; 128 in an open loop, so that a"
        " POST due while its connection still waits for an answer is rare: the client's own queue is not the"
        " coordinator's latency)",
    )
    parser.add_argument(
        "--deposit-rate",
        type=float,
        help="deposit path in open loop: POSTs per second over the submit workers, each POST's latency counted from"
        " when it was due (default: closed loop, as fast as the coordinator answers; a closed loop's POST latency is"
        " about workers / throughput)",
    )
    parser.add_argument(
        "--claim-batch", type=int, default=32, help="jobs per claim-many and results per request (1: one by one)"
    )
    parser.add_argument("--transfers", type=int, default=30_000, help="plain transfers per baseline run")
    parser.add_argument("--transfer-accounts", type=int, default=300)
    parser.add_argument("--transfer-connections", type=int, default=4)
    parser.add_argument("--block-time-ms", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 jobs, 5,000 transfers")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the node, coordinator and first miner during the job run: collapsed stacks to PROFILE-<name>.txt",
    )
    parser.add_argument(
        "--stalls",
        action="store_true",
        help="sample where the coordinator's event loop stands whenever it is 8 ms late (bench/stallwatch)",
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL (where a process's Python time goes)",
    )
    args = parser.parse_args()
    if args.submit_concurrency is None:
        args.submit_concurrency = 32 if args.deposit_rate is None else 128
    if args.quick:
        args.jobs, args.deposit_jobs, args.transfers, args.transfer_accounts = 300, 600, 5_000, 100
    if args.transfers < args.transfer_accounts:
        parser.error("every run measures its plain-transfer baseline: --transfers must be at least --transfer-accounts")
    if args.transfers % args.transfer_accounts:
        parser.error("--transfers must be a multiple of --transfer-accounts")
    if args.transfers // args.transfer_accounts > 500:
        parser.error("at most 500 transfers per account (two runs must fit the node's nonce window)")
    cores = os.cpu_count() or 1
    n_clients = max(1, -(-args.jobs // PER_CLIENT))
    print(
        f"== settlement: {args.jobs:,} escrow jobs and {args.deposit_jobs:,} deposit jobs (echo backend) vs"
        f" {args.transfers:,} plain transfers, same node; load average {os.getloadavg()[0]:.1f} ==",
        flush=True,
    )

    # -- setup: keys, genesis, pre-signed transfers --------------------------------------------------------------
    t = time.perf_counter()
    per_account = args.transfers // args.transfer_accounts
    accounts = account_keys(args.transfer_accounts)
    transfers = presign(args.transfer_accounts, 2 * per_account, cores)  # nonce-major: first half = run 1
    half = len(transfers) // 2
    transfer_runs = [make_batches(transfers[:half], TRANSFER_BATCH), make_batches(transfers[half:], TRANSFER_BATCH)]
    clients = [KeyPair.generate() for _ in range(n_clients)]
    depositor = KeyPair.generate()
    print(f"pre-signed {len(transfers):,} transfers in {time.perf_counter() - t:.1f}s", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="aitbc-settle-"))
    rpc_port, ws_port, p2p_port, coord_port = free_ports(4)
    devnet = Devnet(
        tmp,
        rpc_port=rpc_port,
        ws_port=ws_port,
        p2p_port=p2p_port,
        coordinator_port=coord_port,
        poolhub_port=None,  # in-process matching: this bench measures payment, not the pool hub
        web_port=None,
        miner_backend=None,
    )
    balances = {k.address: FUNDING for k in accounts} | {c.address: FUNDING for c in clients}
    balances[depositor.address] = FUNDING
    init_data_dir(devnet.node_dir, chain_id=CHAIN_ID, extra_balances=balances, block_time_ms=args.block_time_ms)
    (tmp / "keys").mkdir(parents=True, exist_ok=True)
    devnet.coordinator_dir.mkdir(parents=True, exist_ok=True)
    repo = open_repo(CoordinatorSettings(data_dir=devnet.coordinator_dir))
    api_keys = []
    try:
        for i, client in enumerate(clients):
            token, key = new_api_key(f"bench-{i}", client.address, 1_000_000.0, 1_000_000)
            repo.insert_api_key(key)
            api_keys.append(token)
    finally:
        repo.engine.dispose()

    clock: BlockClock | None = None
    profilers: list[subprocess.Popen[bytes]] = []
    if args.stalls:  # the coordinator loads bench/stallwatch/sitecustomize.py (see there)
        (tmp / "stalls").mkdir()
        os.environ["BENCH_LOOP_STALLS"] = str(tmp / "stalls")
        watch = str(Path(__file__).resolve().parent / "stallwatch")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (watch, os.environ.get("PYTHONPATH")) if p)
    try:
        t = time.perf_counter()
        info = devnet.start()
        assert info.coordinator_url is not None and info.coordinator_address is not None
        node_url, coord_url, coordinator = info.rpc_url, info.coordinator_url, info.coordinator_address
        miners = start_miners(devnet, coord_url, args.miners, args.miner_concurrency, args.claim_batch)
        print(f"devnet + {args.miners} miners up in {time.perf_counter() - t:.1f}s ({tmp})", flush=True)
        clock = BlockClock(info.ws_url)
        threading.Thread(target=clock.run, daemon=True).start()
        clock.subscribed.wait(30)
        if clock.error:
            raise clock.error

        with NodeClient(node_url) as node:
            chain = node.get_chain_info()
        params = msgspec.convert(chain["params"], ChainParams)
        models = httpx.get(f"{coord_url}/api/v1/models", timeout=5).json()["models"]
        body = echo_body()
        max_price = compute_default_max_price(body, models)
        plan = plan_jobs(
            args.jobs,
            clients,
            api_keys,
            coordinator,
            chain["chain_id"],
            params,
            int(chain["height"]),
            max_price,
            body,
        )

        # -- 1. baseline ------------------------------------------------------------------------------------------
        print("baseline: plain transfers ...", flush=True)
        by_name = {p.name: p for p in devnet.processes}
        node_pid = pid_of(by_name["node"])
        before = run_transfers(node_url, clock, transfer_runs[0], half, args.transfer_connections, node_pid)
        print(f"  {before.committed:,} committed at {before.rate:,.0f} tx/s", flush=True)

        # -- 2. paid jobs -----------------------------------------------------------------------------------------
        print("paid jobs: escrow -> submit -> run -> receipt -> settle ...", flush=True)
        pids = {"node": [node_pid], "coordinator": [pid_of(by_name["coordinator"])]}
        pids["miners"] = [pid_of(m) for m in miners]
        deposit_key, deposit_id = prepare_deposit(
            node_url, devnet.coordinator_dir, depositor, coordinator, args.deposit_jobs, max_price, params
        )
        cpu0 = {name: sum(cpu_seconds_of(p) for p in ps) for name, ps in pids.items()}
        if args.profile and args.jobs:
            profilers = start_profilers(args.profile, {n: ps[0] for n, ps in pids.items()}, args.profile_gil)
        busy0, self0 = busy_cpu_seconds(), time.process_time()
        head0 = clock.head()
        with timing_quietly():
            run = asyncio.run(
                run_jobs(
                    node_url,
                    coord_url,
                    coordinator,
                    plan,
                    args.submit_concurrency,
                    timeout=120 + args.jobs / 10,
                )
            )
        t_loop_end = time.time()
        cpu = {name: sum(cpu_seconds_of(p) for p in ps) - cpu0[name] for name, ps in pids.items()}
        busy, self_cpu = busy_cpu_seconds() - busy0, time.process_time() - self0
        stop_profilers(profilers)
        profilers = []
        time.sleep(0.3)  # let the last block event in
        settle_heights = [int(e["height"]) for e in run.settled.values()]
        last_settle = max((clock.arrival(h) or t_loop_end for h in settle_heights), default=t_loop_end)
        job_blocks = [n for h, (n, _) in list(clock.blocks.items()) if h > head0 and n]
        print(f"  {len(run.settled):,} settled, {len(run.refunded):,} refunded, {len(run.failed):,} failed", flush=True)

        # -- 3. deposit jobs ----------------------------------------------------------------------------------------
        print("deposit jobs: POST (reserved at once) -> run -> receipt -> settle_batch ...", flush=True)
        if args.profile and not args.jobs:  # --jobs 0 --profile: profile the deposit path instead
            profilers = start_profilers(args.profile, {n: ps[0] for n, ps in pids.items()}, args.profile_gil)
        dep_requests0 = scrape_miner_requests(coord_url)
        dep_cpu0 = {name: sum(cpu_seconds_of(p) for p in ps) for name, ps in pids.items()}
        dep_busy0, dep_self0, dep_load = busy_cpu_seconds(), time.process_time(), os.getloadavg()[0]
        with timing_quietly():
            # uvloop, as the services run: the load generator's own loop lag is counted in each POST's latency
            # (with asyncio's loop it added ~10 ms to p50 and ~25 ms to p99 at 600/s).
            dep = uvloop.run(
                run_deposit_jobs(
                    node_url,
                    coord_url,
                    coordinator,
                    deposit_key,
                    echo_body(),
                    args.deposit_jobs,
                    args.submit_concurrency,
                    timeout=120 + args.deposit_jobs / 20,
                    rate=args.deposit_rate,
                )
            )
        dep_end = time.time()
        dep_cpu = {name: sum(cpu_seconds_of(p) for p in ps) - dep_cpu0[name] for name, ps in pids.items()}
        dep_requests = describe_miner_requests(dep_requests0, scrape_miner_requests(coord_url))
        dep_busy, dep_self = busy_cpu_seconds() - dep_busy0, time.process_time() - dep_self0
        stop_profilers(profilers)
        profilers = []
        time.sleep(0.3)
        print(
            f"  {len(dep.settled):,} settled, {len(dep.rejected):,} refused entries, {len(dep.refused):,} POSTs"
            f" refused (deposit {deposit_id})",
            flush=True,
        )
        dep_finished = asyncio.run(fetch_finished(coord_url, deposit_key, list(dep.settled), 16))

        # -- 4. baseline again ------------------------------------------------------------------------------------
        print("baseline again: plain transfers ...", flush=True)
        after = run_transfers(node_url, clock, transfer_runs[1], half, args.transfer_connections, node_pid)
        print(f"  {after.committed:,} committed at {after.rate:,.0f} tx/s", flush=True)

        views = asyncio.run(fetch_jobs(coord_url, plan, list(run.settled), 16))
    finally:
        stop_profilers(profilers)
        if clock is not None:
            clock.stop.set()
        devnet.stop()

    # -- per-job phases ----------------------------------------------------------------------------------------------
    assert clock is not None

    def at(height: int | None) -> float | None:
        return None if height is None else clock.arrival(height)

    escrow_commit, to_accept, to_claim, to_finish, settle_lag, whole = [], [], [], [], [], []
    for job_id, event in run.settled.items():
        sent = run.sent_at.get(job_id)
        opened = at(run.opened_height.get(job_id))
        settled = at(int(event["height"]))
        view = views.get(job_id, {})
        created, assigned, finished = view.get("created_at_ms"), view.get("assigned_at_ms"), view.get("finished_at_ms")
        if sent is not None and opened is not None:
            escrow_commit.append(opened - sent)
        if opened is not None and created is not None:
            to_accept.append(created / 1000 - opened)
        if created is not None and assigned is not None:
            to_claim.append((assigned - created) / 1000)
        if assigned is not None and finished is not None:
            to_finish.append((finished - assigned) / 1000)
        if finished is not None and settled is not None:
            settle_lag.append(settled - finished / 1000)
        if sent is not None and settled is not None:
            whole.append(settled - sent)
    opened_at = [a for a in (at(h) for h in run.opened_height.values()) if a is not None]
    finished_at = sorted(v["finished_at_ms"] / 1000 for v in views.values() if v.get("finished_at_ms"))

    elapsed = last_settle - run.t0
    jobs_rate = len(run.settled) / elapsed if elapsed > 0 else 0.0
    transfer_rate = max(before.rate, after.rate)
    ratio = jobs_rate / transfer_rate if transfer_rate else 0.0
    paid = sum(int(e["paid_to_miner"]) for e in run.settled.values())
    fees = sum(int(e["protocol_fee"]) for e in run.settled.values())
    window = max(1e-9, t_loop_end - run.t0)
    others = max(0.0, busy - sum(cpu.values()) - self_cpu)

    print()
    print("-- result --")
    print(
        f"settled jobs        {len(run.settled):,} / {args.jobs:,}   (refunded {len(run.refunded):,},"
        f" failed {len(run.failed):,}, submit retries {run.submit_retries:,})"
    )
    print(f"settled jobs/s      {jobs_rate:,.1f}   (first escrow sent -> last settle committed: {elapsed:.2f}s)")
    print(
        f"plain transfers/s   {transfer_rate:,.0f}   (before {before.rate:,.0f} over {before.blocks} blocks,"
        f" after {after.rate:,.0f} over {after.blocks} blocks; {half:,} transfers each, rejected"
        f" {before.rejected + after.rejected:,})"
    )
    print(f"ratio               {ratio:.4f}  settled jobs/s / transfers/s")
    print(
        f"                    {ratio * 2:.4f}  chain txs of the job path / transfers/s"
        " (2 txs per paid job: open_escrow + settle_job)"
    )
    print(
        f"                    {ratio * 3:.4f}  settled jobs/s / (transfers/s / 3), counting 3 units per paid job"
        " (open, settle + the off-chain job itself)"
    )
    if opened_at:
        print(
            f"escrow phase        {len(run.opened_height):,} escrows committed {max(opened_at) - run.t0:.2f}s after"
            f" the first was sent ({len(run.opened_height) / max(1e-9, max(opened_at) - run.t0):,.0f}/s; all sent"
            f" in {run.t_escrows_sent - run.t0:.2f}s)"
        )
    if finished_at:
        span = finished_at[-1] - finished_at[0]
        print(
            f"job phase           {len(finished_at):,} jobs finished between {finished_at[0] - run.t0:.2f}s and"
            f" {finished_at[-1] - run.t0:.2f}s ({len(finished_at) / max(1e-9, span):,.0f}/s while running)"
        )
    print(f"escrow send->commit {spread(escrow_commit)}")
    print(f"commit->accepted    {spread(to_accept)}   (event follower + POST /jobs + escrow check)")
    print(f"POST /jobs          {spread(run.submit_rtt)}   (round trip seen by the client)")
    print(f"accepted->claimed   {spread(to_claim)}")
    print(f"claimed->finished   {spread(to_finish)}   (echo backend, receipt countersigned)")
    print(f"settlement lag      {spread(settle_lag)}   (job finished -> its settle_job committed)")
    print(f"whole path per job  {spread(whole)}   (escrow sent -> settle committed)")
    if job_blocks:
        print(
            f"blocks              {len(job_blocks)} with txs during the job run; txs/block mean"
            f" {statistics.mean(job_blocks):,.0f}  max {max(job_blocks):,}"
        )
    print(f"money               paid to miners {paid:,}, protocol fees {fees:,} (base units; max_price {max_price:,})")
    per_transfer = (before.node_cpu + after.node_cpu) / max(1, before.committed + after.committed)
    transfer_line = (
        f"CPU per transfer    node {per_transfer * 1000:.2f} ms (incl. its verify workers; the client only posts"
        " pre-encoded bytes)"
    )
    if not run.settled:  # no per-job escrow run (--jobs 0): its window is empty and its shares meaningless
        job_cpu = float("nan")
        print("CPU (job run)       n/a (no per-job escrow jobs settled)")
        print(transfer_line)
    else:
        print(
            "CPU (job run)       "
            + ", ".join(f"{name} {v / window * 100:.0f}%" for name, v in cpu.items())
            + f", bench client {self_cpu / window * 100:.0f}%, other processes {others / window * 100:.0f}%"
            + f" of one core (machine busy {busy / window / cores * 100:.0f}% of {cores} cores)"
        )
        per_job = {**cpu, "bench client": self_cpu}
        job_cpu = sum(per_job.values()) / len(run.settled)
        print(
            "CPU per settled job "
            + ", ".join(f"{name} {v / len(run.settled) * 1000:.1f} ms" for name, v in per_job.items())
            + f"  (total {job_cpu * 1000:.1f} ms: the machine-independent figure)"
        )
        print(f"{transfer_line}: a settled job costs {job_cpu / max(1e-9, per_transfer):,.0f}x a transfer in CPU")
    if run.failed:
        print(f"first failure       {next(iter(run.failed.values()))}")
    print(
        f"conditions          {cores} cores, Python {platform.python_version()} ({platform.machine()}),"
        f" block time {args.block_time_ms} ms, {args.jobs:,} jobs from {n_clients} client key(s),"
        f" {args.miners} echo miner(s) x concurrency {args.miner_concurrency} (claim batch {args.claim_batch}),"
        f" {args.submit_concurrency} submit"
        f" workers, escrow batches of {ESCROW_BATCH}; transfers: {args.transfer_accounts} accounts,"
        f" batches of {TRANSFER_BATCH}, {args.transfer_connections} connections; node, coordinator (SQLite),"
        " miners and this client share the machine (its garbage collector off while it times); the devnet's"
        " priorities: node and miners at nice 5, the coordinator's worker threads 10 below its event loop"
    )
    # -- the deposit path, beside the escrow path ---------------------------------------------------------------
    dep_heights = [int(e["height"]) for e in dep.settled.values()]
    dep_last = max((clock.arrival(h) or dep_end for h in dep_heights), default=dep_end)
    dep_elapsed = dep_last - dep.t0
    dep_rate = len(dep.settled) / dep_elapsed if dep_elapsed > 0 and dep.settled else 0.0
    dep_lag = [
        arrival - dep_finished[j] / 1000
        for j, e in dep.settled.items()
        if j in dep_finished and (arrival := clock.arrival(int(e["height"]))) is not None
    ]
    dep_window = max(1e-9, dep_end - dep.t0)
    dep_per_job = {**dep_cpu, "bench client": dep_self}
    dep_job_cpu = sum(dep_per_job.values()) / max(1, len(dep.settled))
    dep_batches = len(set(dep_heights))
    print()
    print("-- deposit path (plain POST /api/v1/jobs, settle_batch) --")
    print(
        f"settled jobs        {len(dep.settled):,} / {args.deposit_jobs:,}   (POSTs refused {len(dep.refused):,},"
        f" entries refused by the chain {len(dep.rejected):,}; {dep_batches} settling blocks)"
    )
    print(f"settled jobs/s      {dep_rate:,.1f}   (first POST -> last settle_batch committed: {dep_elapsed:.2f}s)")
    dep_done = sorted(ms / 1000 for j, ms in dep_finished.items() if j in dep.settled)
    if len(dep_done) > 1:
        span = max(1e-9, dep_done[-1] - dep_done[0])
        print(
            f"job phase           {len(dep_done):,} jobs finished between {dep_done[0] - dep.t0:.2f}s and"
            f" {dep_done[-1] - dep.t0:.2f}s ({len(dep_done) / span:,.0f}/s while running; the rest of the window"
            " is the last jobs' settlement)"
        )
    loop = f"open loop at {args.deposit_rate:,.0f}/s, from when due" if args.deposit_rate else "closed loop"
    print(f"POST /jobs          {spread(dep.post_rtt)}   (accepted at once: reserved on the deposit; {loop})")
    print(f"settlement lag      {spread(dep_lag)}   (job finished -> its settle_batch committed)")
    print(f"miners' requests    {dep_requests}")
    print(
        "CPU (deposit run)   "
        + ", ".join(f"{name} {v / dep_window * 100:.0f}%" for name, v in dep_cpu.items())
        + f", bench client {dep_self / dep_window * 100:.0f}% of one core (machine busy"
        f" {dep_busy / dep_window / cores * 100:.0f}% of {cores} cores; load average {dep_load:.1f} at start)"
    )
    print(
        "CPU per settled job "
        + ", ".join(f"{name} {v / max(1, len(dep.settled)) * 1000:.2f} ms" for name, v in dep_per_job.items())
        + f"  (total {dep_job_cpu * 1000:.2f} ms)"
    )
    if dep.refused:
        print(f"first refusal       {next(iter(dep.refused.values()))}")
    print()
    print("-- side by side (same node, same run) --")
    print(f"{'path':<22}{'settled jobs/s':>16}{'CPU ms/job':>12}{'POST p99 ms':>13}{'finish->settle p50 s':>22}")
    if args.jobs:
        print(
            f"{'per-job escrow':<22}{jobs_rate:>16,.1f}{job_cpu * 1000:>12.2f}"
            f"{(pct(run.submit_rtt, 99) * 1000 if run.submit_rtt else 0):>13,.1f}"
            f"{(pct(settle_lag, 50) if settle_lag else 0):>22.2f}"
        )
    else:
        print(f"{'per-job escrow':<22}{'skipped (--jobs 0)':>16}")
    print(
        f"{'deposit + batches':<22}{dep_rate:>16,.1f}{dep_job_cpu * 1000:>12.2f}"
        f"{(pct(dep.post_rtt, 99) * 1000 if dep.post_rtt else 0):>13,.1f}"
        f"{(pct(dep_lag, 50) if dep_lag else 0):>22.2f}"
    )
    print(f"{'plain transfers':<22}{transfer_rate:>16,.0f}{per_transfer * 1000:>12.2f}{'':>13}{'':>22}")
    print(
        f"ratios              deposit/escrow {f'{dep_rate / jobs_rate:.1f}x' if jobs_rate else 'n/a'} settled jobs/s,"
        f" deposit jobs/s / transfers/s {dep_rate / max(1e-9, transfer_rate):.4f};"
        " targets: >= 600 jobs/s, <= 3 ms CPU/job, POST p99 <= 20 ms, finish->settle p50 <= 1.5 s"
    )
    rc = 0 if len(run.settled) == args.jobs and len(dep.settled) == args.deposit_jobs else 1
    for found in sorted((tmp / "stalls").glob("stalls-*.txt")) if args.stalls else []:
        print(f"-- coordinator event loop ({found.name}) --")
        print(found.read_text().rstrip())
    if args.keep:
        print(f"temp dir kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
