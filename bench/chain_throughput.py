"""Chain throughput: signed transfers over JSON-RPC batches into a real node process.

What it does, in order:

1. measures this machine's raw single-core Ed25519 verify rate (PyNaCl
   ``crypto_sign_open`` on ~150-byte messages, one thread) — the baseline;
2. creates a temp data dir whose genesis funds ``--accounts`` accounts
   (deterministic keys from seeds) and pre-signs ``--txs`` transfers
   (``txs / accounts`` per account, nonces 0..n-1), pre-encoded as JSON-RPC
   ``send_tx`` batches of ``--batch`` — nothing is signed or encoded while timed;
3. starts the node (``python -m aitbc node run``) on free ports, subscribes to
   ``new_blocks`` on its WebSocket, and lets ``--workers`` client processes
   post the batches over keep-alive HTTP connections;
4. a tx's latency is from the moment its batch was sent to the arrival of the
   ``new_blocks`` event of the block that committed it (the event is emitted
   after the block is durable). Which block holds which tx is read back with
   ``get_block`` only after the run, so the measurement adds no load;
5. prints committed tx/s (first submit → last commit), latency p50/p99, the
   verify rate and the ratio, blocks and txs per block, CPU shares and the
   conditions, then stops the node with SIGINT and checks it exits cleanly.

    .venv/bin/python bench/chain_throughput.py            # 50,000 txs from 1,000 accounts
    .venv/bin/python bench/chain_throughput.py --quick    # 5,000 txs smoke run

``--profile FILE`` attaches py-spy (``pip install py-spy``) to the node for the
timed window only and writes collapsed stacks (speedscope, flamegraph.pl).

The machine is shared: the run reports how much CPU other processes took
meanwhile ("other processes"), and node CPU per committed tx, which moves far
less with that noise than tx/s does. The verify rate is the best of a
measurement before and after the run. With few blocks (``--quick``) the
committed rate is set by the block clock; the submit rate shows intake.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import multiprocessing as mp
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.bindings
import orjson
from websockets.sync.client import connect as ws_connect

from aitbc.node.init import init_data_dir
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.tx import Transfer, sign_tx, tx_to_json_obj

CHAIN_ID = "aitbc-bench"
FUNDING = 10**12  # base units per account
AMOUNT = 1_000
FEE = 1


# -- the baseline: raw single-core Ed25519 verify -------------------------------------------------------------
def measure_verify_rate(seconds: float = 1.0, rounds: int = 3) -> float:
    """Best of ``rounds`` one-thread loops of ``crypto_sign_open`` over 150-byte messages (verifies/s)."""
    samples: list[tuple[bytes, bytes]] = []
    for i in range(64):
        pk, sk = nacl.bindings.crypto_sign_seed_keypair(hashlib.sha256(b"verify-%d" % i).digest())
        message = hashlib.sha256(b"m%d" % i).digest() * 5  # 160 bytes; ~150 like a tx's signed bytes
        samples.append((nacl.bindings.crypto_sign(message[:150], sk), pk))
    best = 0.0
    open_ = nacl.bindings.crypto_sign_open
    for _ in range(rounds):
        n = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for signed, pk in samples:
                open_(signed, pk)
            n += len(samples)
        best = max(best, n / (time.perf_counter() - start))
    return best


# -- setup ---------------------------------------------------------------------------------------------------
def account_keys(n: int) -> list[KeyPair]:
    return [KeyPair.from_seed(hashlib.sha256(b"aitbc-bench-account-%d" % i).digest()) for i in range(n)]


def _sign_range(args: tuple[int, int, int, int]) -> list[bytes]:
    """Sign the txs of nonces [lo, hi) for every account; returns JSON-encoded txs, nonce-major order."""
    accounts, lo, hi, _ = args
    keys = account_keys(accounts)
    out: list[bytes] = []
    for nonce in range(lo, hi):
        for i, key in enumerate(keys):
            recipient = keys[(i + 1) % accounts].address
            tx = Transfer(
                chain_id=CHAIN_ID, sender=key.address, nonce=nonce, fee=FEE, recipient=recipient, amount=AMOUNT
            )
            out.append(orjson.dumps(tx_to_json_obj(sign_tx(tx, key))))
    return out


def presign(accounts: int, per_account: int, procs: int) -> list[bytes]:
    """All txs, ordered nonce-major (nonce 0 of every account, then nonce 1, ...), signed on ``procs`` cores."""
    step = max(1, -(-per_account // procs))
    ranges = [(accounts, lo, min(per_account, lo + step), 0) for lo in range(0, per_account, step)]
    with mp.get_context("fork").Pool(len(ranges)) as pool:
        parts = pool.map(_sign_range, ranges)
    return [tx for part in parts for tx in part]


def make_batches(txs: list[bytes], batch: int) -> list[bytes]:
    bodies = []
    for start in range(0, len(txs), batch):
        items = [
            b'{"jsonrpc":"2.0","method":"send_tx","params":[' + tx + b'],"id":' + str(start + j).encode() + b"}"
            for j, tx in enumerate(txs[start : start + batch])
        ]
        bodies.append(b"[" + b",".join(items) + b"]")
    return bodies


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def rpc(port: int, method: str, *params: Any, timeout: float = 30.0) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        body = orjson.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1})
        conn.request("POST", "/", body, {"Content-Type": "application/json"})
        reply = orjson.loads(conn.getresponse().read())
    finally:
        conn.close()
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def scrape_metrics(port: int) -> dict[str, float]:
    """The node's Prometheus metrics without labels, name -> value."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if line and not line.startswith("#") and "{" not in name:
            out[name] = float(value)
    return out


def wait_ready(port: int, node: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.poll() is not None:
            raise RuntimeError(f"node exited early with code {node.returncode}")
        try:
            rpc(port, "get_head", timeout=2)
            return
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
    raise RuntimeError("node did not answer get_head in time")


def cpu_seconds_of(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its live descendants (the node's signature workers)."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def cpu_by_thread(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of a process, plus ``worker processes`` for all its descendants."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            name = (task / "comm").read_text().strip()
        except FileNotFoundError:
            continue
        # Python 3.11 does not name OS threads: "main" is the event loop, the rest are pool threads
        name = "event loop" if task.name == str(pid) else "other threads"
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    children = cpu_seconds_of(pid) - sum(out.values())
    if children > 0:
        out["worker processes"] = children
    return out


def busy_cpu_seconds() -> float:
    """CPU seconds spent non-idle by the whole machine so far (all processes, all cores)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# -- client workers --------------------------------------------------------------------------------------------
_BODIES: list[bytes] = []  # filled before fork; workers read their share from here


def _worker(port: int, indices: list[int], start: Any, results: Any, ready: Any) -> None:  # runs in a forked process
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"Content-Type": "application/json"}
    ready.put(os.getpid())
    start.wait()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    out: list[tuple[int, float, float, int, str | None]] = []
    for idx in indices:
        t_send = time.monotonic()
        conn.request("POST", "/", _BODIES[idx], headers)
        reply = orjson.loads(conn.getresponse().read())
        t_recv = time.monotonic()
        errors = [r["error"] for r in reply if "error" in r]
        first = None if not errors else orjson.dumps(errors[0]).decode()
        out.append((idx, t_send, t_recv, len(errors), first))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    conn.close()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    results.put((out, cpu))


# -- block watcher -----------------------------------------------------------------------------------------------
@dataclass
class Watcher:
    ws_port: int
    target: int
    blocks: list[tuple[int, int, float]] = field(default_factory=list)  # (height, tx_count, arrival)
    committed: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            with ws_connect(f"ws://127.0.0.1:{self.ws_port}/ws", max_size=None) as ws:
                ws.send(orjson.dumps({"method": "subscribe", "params": ["new_blocks"], "id": 1}).decode())
                orjson.loads(ws.recv())
                self.subscribed.set()
                while not self.done.is_set():
                    try:
                        raw = ws.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    now = time.monotonic()
                    event = orjson.loads(raw)
                    if event.get("method") != "new_blocks":
                        continue
                    header = event["params"]
                    if header["tx_count"]:
                        self.blocks.append((header["height"], header["tx_count"], now))
                        self.committed += header["tx_count"]
                        if self.committed >= self.target:
                            self.done.set()
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            self.subscribed.set()
            self.done.set()


# -- the run ---------------------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--txs", type=int, default=50_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=500, help="txs per JSON-RPC batch")
    parser.add_argument("--workers", type=int, default=4, help="client processes posting batches")
    parser.add_argument("--block-time-ms", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="smoke run: 5,000 txs from 500 accounts")
    parser.add_argument("--profile", type=Path, help="sample the node with py-spy while timed; collapsed stacks here")
    parser.add_argument("--keep", action="store_true", help="keep the temp data dir and node log")
    args = parser.parse_args()
    if args.quick:
        args.txs, args.accounts = 5_000, 500
    if args.txs % args.accounts:
        parser.error("--txs must be a multiple of --accounts")
    per_account = args.txs // args.accounts
    cores = os.cpu_count() or 1

    print(f"== chain throughput: {args.txs:,} transfers from {args.accounts:,} accounts ==", flush=True)
    verify_before = measure_verify_rate()
    print(f"raw Ed25519 verify (PyNaCl, 1 thread, 150-byte msgs): {verify_before:,.0f}/s", flush=True)

    t = time.perf_counter()
    keys = account_keys(args.accounts)
    txs = presign(args.accounts, per_account, cores)
    global _BODIES
    _BODIES = make_batches(txs, args.batch)
    print(f"pre-signed {len(txs):,} txs into {len(_BODIES)} batches in {time.perf_counter() - t:.1f}s", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="aitbc-bench-"))
    data_dir = tmp / "node"
    init_data_dir(
        data_dir,
        chain_id=CHAIN_ID,
        extra_balances={k.address: FUNDING for k in keys},
        block_time_ms=args.block_time_ms,
    )
    rpc_port, ws_port, p2p_port = free_ports(3)
    cmd = [sys.executable, "-m", "aitbc", "node", "run", "--data-dir", str(data_dir)]
    cmd += ["--rpc-port", str(rpc_port), "--ws-port", str(ws_port), "--p2p-port", str(p2p_port)]
    log_path = tmp / "node.log"
    with log_path.open("wb") as log_file:
        node = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    profiler: subprocess.Popen[bytes] | None = None
    rc: int | None = None
    try:
        wait_ready(rpc_port, node)
        watcher = Watcher(ws_port, args.txs)
        watch_thread = threading.Thread(target=watcher.run, daemon=True)
        watch_thread.start()
        watcher.subscribed.wait(30)
        if watcher.error:
            raise watcher.error

        ctx = mp.get_context("fork")
        start, results, ready = ctx.Event(), ctx.Queue(), ctx.Queue()
        shares = [list(range(w, len(_BODIES), args.workers)) for w in range(args.workers)]
        procs = [ctx.Process(target=_worker, args=(rpc_port, s, start, results, ready)) for s in shares if s]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=60)
        if args.profile:
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            profiler = subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(node.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "250",
                    "--threads",
                    "--nonblocking",
                    "-o",
                    str(args.profile),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # let py-spy attach

        metrics0 = scrape_metrics(rpc_port)
        node_cpu0 = cpu_seconds_of(node.pid)
        threads0 = cpu_by_thread(node.pid)
        busy0 = busy_cpu_seconds()
        self_cpu0 = time.process_time()
        t0 = time.monotonic()
        start.set()
        batches: list[tuple[int, float, float, int, str | None]] = []
        client_cpu = 0.0
        for _ in procs:
            part, cpu = results.get(timeout=600)
            batches.extend(part)
            client_cpu += cpu
        for p in procs:
            p.join()
        t_submitted = time.monotonic()
        rejected = sum(b[3] for b in batches)
        watcher.target = args.txs - rejected
        if watcher.committed >= watcher.target:
            watcher.done.set()
        watcher.done.wait(timeout=60 + args.txs / 1000)
        node_cpu = cpu_seconds_of(node.pid) - node_cpu0
        threads1 = cpu_by_thread(node.pid)
        busy = busy_cpu_seconds() - busy0
        client_cpu += time.process_time() - self_cpu0
        watcher.done.set()
        watch_thread.join(5)
        t_end = max((b[2] for b in watcher.blocks), default=time.monotonic())
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
        if watcher.error:
            raise watcher.error

        metrics1 = scrape_metrics(rpc_port)
        # Which block committed which tx: read back after the run, so it costs the measurement nothing.
        sent_at: dict[tuple[str, int], float] = {}
        for idx, t_send, _t_recv, _errs, _first in batches:
            for j in range(idx * args.batch, min(len(txs), (idx + 1) * args.batch)):
                sent_at[(keys[j % args.accounts].address, j // args.accounts)] = t_send
        arrival = {h: t for h, _n, t in watcher.blocks}
        latencies: list[float] = []
        for height in sorted(arrival):
            block = rpc(rpc_port, "get_block", height)
            for tx in block["txs"]:
                sent = sent_at.get((tx["sender"], tx["nonce"]))
                if sent is not None:
                    latencies.append(arrival[height] - sent)

        # Stop the node the way an operator does (Ctrl-C) and check it ends cleanly.
        node.send_signal(signal.SIGINT)
        try:
            rc = node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
            rc = node.wait()
    finally:
        for proc in (profiler, node):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    verify_after = measure_verify_rate()
    verify_rate = max(verify_before, verify_after)
    log_text = log_path.read_text(errors="replace")
    stopped_cleanly = rc == 0 and '"node stopped"' in log_text
    committed = watcher.committed
    elapsed = t_end - t0
    tps = committed / elapsed if elapsed > 0 else 0.0
    counts = [n for _h, n, _t in watcher.blocks]
    submit_elapsed = t_submitted - t0
    rtts = [b[2] - b[1] for b in batches]
    first_errors = sorted({b[4] for b in batches if b[4]})
    window = max(1e-9, elapsed)
    others = max(0.0, busy - node_cpu - client_cpu)
    ratio = tps / verify_rate
    verdict = "MEETS" if ratio >= 0.5 else "BELOW"

    print()
    print("-- result --")
    print(f"committed           {committed:,} / {args.txs:,} txs  (rejected at submit: {rejected:,})")
    print(f"committed tx/s      {tps:,.0f}   (first submit -> last commit: {elapsed:.2f}s)")
    print(f"submit rate         {args.txs / submit_elapsed:,.0f} tx/s accepted over RPC ({submit_elapsed:.2f}s)")
    if latencies:
        print(
            f"latency             p50 {pct(latencies, 50) * 1000:,.0f} ms   p99 {pct(latencies, 99) * 1000:,.0f} ms"
            f"   max {max(latencies) * 1000:,.0f} ms   (submit -> commit event, n={len(latencies):,})"
        )
    print(
        f"batch round trip    p50 {statistics.median(rtts) * 1000:,.0f} ms   p99 {pct(rtts, 99) * 1000:,.0f} ms"
        f"   ({len(rtts)} batches of {args.batch})"
    )
    print(
        f"blocks              {len(counts)} with txs; txs/block mean {statistics.mean(counts) if counts else 0:,.0f}"
        f"  min {min(counts, default=0):,}  max {max(counts, default=0):,}"
    )
    n_blocks = metrics1["aitbc_block_build_seconds_count"] - metrics0["aitbc_block_build_seconds_count"]
    build_s = metrics1["aitbc_block_build_seconds_sum"] - metrics0["aitbc_block_build_seconds_sum"]
    print(
        f"block production    {build_s / max(1, n_blocks) * 1000:,.0f} ms mean to build + persist + apply a block"
        f" ({n_blocks:.0f} blocks, {build_s / max(1e-9, elapsed) * 100:.0f}% of the run's wall time)"
    )
    print(
        f"raw verify rate     {verify_rate:,.0f}/s  (best of before {verify_before:,.0f} / after {verify_after:,.0f};"
        " 1 thread, PyNaCl crypto_sign_open, 150-byte msgs)"
    )
    print(f"ratio               {ratio:.2f} x the single-core verify rate  ({verdict} target >= 0.50)")
    if len(counts) < 4:
        print(
            f"                    (only {len(counts)} block(s): committed tx/s is set by the {args.block_time_ms} ms"
            " block clock here; the submit rate shows intake capacity)"
        )
    print(
        f"node CPU            {node_cpu / window * 100:.0f}% of one core, {node_cpu / max(1, committed) * 1e6:,.0f} us"
        " per committed tx (node process and its workers)"
    )
    split = {k: v - threads0.get(k, 0.0) for k, v in threads1.items()}
    split = {k: v for k, v in sorted(split.items(), key=lambda kv: -kv[1]) if v >= 0.01}
    print(
        "node CPU by thread  "
        + ", ".join(f"{k} {v / max(1e-9, node_cpu) * 100:.0f}%" for k, v in split.items())
        + " of the node's CPU"
    )
    print(
        f"client CPU          {client_cpu / window * 100:.0f}% of one core"
        f" ({client_cpu / max(1e-9, client_cpu + node_cpu) * 100:.0f}% of the CPU node + client used)"
    )
    print(
        f"other processes     {others / window * 100:.0f}% of one core during the run"
        f" (machine busy {busy / window / cores * 100:.0f}% of {cores} cores)"
    )
    print(f"node exit           rc={rc}  {'clean (node stopped logged)' if stopped_cleanly else 'NOT CLEAN'}")
    if first_errors:
        print(f"first rejection     {first_errors[0]}")
    print(
        f"conditions          {cores} cores, Python {platform.python_version()} ({platform.machine()}), "
        f"block time {args.block_time_ms} ms, batch {args.batch}, {args.workers} client worker processes, "
        f"{args.accounts} accounts x {per_account} txs"
    )
    if args.profile:
        print(f"profile             {args.profile} (py-spy, collapsed stacks, timed window only)")
    if args.keep:
        print(f"data dir and node log kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if stopped_cleanly and committed == args.txs - rejected else 1


if __name__ == "__main__":
    sys.exit(main())
