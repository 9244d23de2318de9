"""Consensus throughput: a local network of BFT validators under a steady offered tx load.

What it does, in order:

1. measures this machine's raw single-core Ed25519 verify rate (PyNaCl, one
   thread) — the baseline the result is reported against;
2. creates ``--validators`` validator data dirs (one genesis, ``aitbc.devnet.network``)
   funding ``--accounts`` accounts, and pre-signs ``rate * seconds`` transfers,
   pre-encoded as JSON-RPC ``send_tx`` batches — nothing is signed while timed;
3. starts the validators (each dials every other on its p2p port) at
   ``--block-time-ms``, subscribes to ``new_blocks`` on validator 0's WebSocket,
   and posts the batches round-robin to the validators, paced to the offered
   rate (each tx reaches the others by gossip);
4. a tx's commit latency is from the moment its batch was sent to the arrival
   of the ``new_blocks`` event (at validator 0) of the block that holds it;
   which block holds which tx is read back with ``get_block`` after the run;
5. prints committed tx/s (first send → last commit), latency p50/p99, blocks,
   txs per block, blocks that needed more than one round, the verify rate and
   the ratio, and the conditions.

    .venv/bin/python bench/consensus.py                      # 4 validators, 1,500 tx/s offered for 20 s
    .venv/bin/python bench/consensus.py --rate 600 --seconds 10
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nacl.bindings
import orjson
from websockets.sync.client import connect as ws_connect

from aitbc.devnet.network import ValidatorNetwork
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.tx import Transfer, sign_tx, tx_to_json_obj

FUNDING = 10**12
FEE = 1


def measure_verify_rate(seconds: float = 0.5, rounds: int = 3) -> float:
    pk, sk = nacl.bindings.crypto_sign_seed_keypair(b"\x01" * 32)
    signed = nacl.bindings.crypto_sign(b"m" * 150, sk)
    best = 0.0
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(200):
                nacl.bindings.crypto_sign_open(signed, pk)
            n += 200
        best = max(best, n / (time.perf_counter() - start))
    return best


def account_keys(n: int) -> list[KeyPair]:
    return [KeyPair.from_seed(hashlib.sha256(b"aitbc-consensus-bench-%d" % i).digest()) for i in range(n)]


def _sign_range(args: tuple[str, int, int, int]) -> list[bytes]:
    chain_id, accounts, lo, hi = args
    keys = account_keys(accounts)
    out: list[bytes] = []
    for nonce in range(lo, hi):
        for i, key in enumerate(keys):
            tx = Transfer(
                chain_id=chain_id,
                sender=key.address,
                nonce=nonce,
                fee=FEE,
                recipient=keys[(i + 1) % accounts].address,
                amount=1,
            )
            out.append(orjson.dumps(tx_to_json_obj(sign_tx(tx, key))))
    return out


def presign(chain_id: str, accounts: int, per_account: int) -> list[bytes]:
    procs = max(1, os.cpu_count() or 1)
    step = max(1, -(-per_account // procs))
    ranges = [(chain_id, accounts, lo, min(per_account, lo + step)) for lo in range(0, per_account, step)]
    with mp.get_context("fork").Pool(len(ranges)) as pool:
        parts = pool.map(_sign_range, ranges)
    return [tx for part in parts for tx in part]


def make_batch(txs: list[bytes], first_id: int) -> bytes:
    items = [
        b'{"jsonrpc":"2.0","method":"send_tx","params":[' + tx + b'],"id":' + str(first_id + j).encode() + b"}"
        for j, tx in enumerate(txs)
    ]
    return b"[" + b",".join(items) + b"]"


@dataclass
class Watcher:
    ws_url: str
    arrivals: dict[int, float] = field(default_factory=dict)
    committed: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with ws_connect(self.ws_url, max_size=None) as ws:
            ws.send(orjson.dumps({"method": "subscribe", "params": ["new_blocks"], "id": 1}).decode())
            orjson.loads(ws.recv())
            self.subscribed.set()
            while not self.stop.is_set():
                try:
                    raw = ws.recv(timeout=0.5)
                except TimeoutError:
                    continue
                now = time.monotonic()
                event = orjson.loads(raw)
                if event.get("method") == "new_blocks":
                    header = event["params"]
                    self.arrivals[int(header["height"])] = now
                    self.committed += int(header["tx_count"])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def rpc(url: str, method: str, *params: object) -> object:
    reply = httpx.post(url, json={"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}, timeout=30)
    return reply.json()["result"]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--rate", type=int, default=1_500, help="offered tx/s")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--accounts", type=int, default=600)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--block-time-ms", type=int, default=1_000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    verify_before = measure_verify_rate()
    total = int(args.rate * args.seconds)
    per_account = max(1, -(-total // args.accounts))
    chain_id = "aitbc-devnet"
    keys = account_keys(args.accounts)
    print(f"pre-signing {per_account * args.accounts:,} txs …", flush=True)
    txs = presign(chain_id, args.accounts, per_account)[:total]
    batches = [make_batch(txs[i : i + args.batch], i) for i in range(0, len(txs), args.batch)]
    owners = [(orjson.loads(t)["sender"], orjson.loads(t)["nonce"]) for t in txs]
    batch_of = {owner: i // args.batch for i, owner in enumerate(owners)}

    base = Path(tempfile.mkdtemp(prefix="aitbc-consensus-bench-"))
    net = ValidatorNetwork(base, args.validators, rpc_port=29080, extra_args=["--log-level", "warning"])
    net.prepare(block_time_ms=args.block_time_ms, extra_balances={k.address: FUNDING for k in keys})
    net.start()
    watcher = Watcher(net.nodes[0].ws_url)
    threading.Thread(target=watcher.run, daemon=True).start()
    watcher.subscribed.wait(30)
    time.sleep(2 * args.block_time_ms / 1000)  # let the network settle into its rhythm

    sent_at: list[float] = [0.0] * len(batches)
    rejected = [0]

    def post(worker: int, t0: float) -> None:
        with httpx.Client(timeout=60) as client:
            for i in range(worker, len(batches), args.validators):
                due = t0 + i * args.batch / args.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sent_at[i] = time.monotonic()
                url = net.nodes[i % args.validators].rpc_url
                reply = orjson.loads(
                    client.post(url, content=batches[i], headers={"content-type": "application/json"}).content
                )
                rejected[0] += sum(1 for r in reply if "error" in r)

    t0 = time.monotonic()
    posters = [threading.Thread(target=post, args=(w, t0)) for w in range(args.validators)]
    for p in posters:
        p.start()
    for p in posters:
        p.join()
    sending_done = time.monotonic()
    deadline = sending_done + 60
    while watcher.committed < len(txs) - rejected[0] and time.monotonic() < deadline:
        time.sleep(0.2)
    watcher.stop.set()

    # which block holds which tx, and in which round it was decided
    rpc_url = net.nodes[0].rpc_url
    latencies: list[float] = []
    committed = 0
    multi_round = 0
    heights = sorted(watcher.arrivals)
    block_sizes: list[int] = []
    last_commit = t0
    for h in heights:
        block = rpc(rpc_url, "get_block", h, True)
        assert isinstance(block, dict)
        if block.get("commit") and int(block["commit"]["round"]) > 0:
            multi_round += 1
        if not block["txs"]:
            continue
        block_sizes.append(len(block["txs"]))
        for tx in block["txs"]:
            i = batch_of.get((tx["sender"], tx["nonce"]))
            if i is None or not sent_at[i]:
                continue
            committed += 1
            latencies.append(watcher.arrivals[h] - sent_at[i])
            last_commit = max(last_commit, watcher.arrivals[h])
    net.stop()
    verify_after = measure_verify_rate()
    verify = max(verify_before, verify_after)

    first_send = min(t for t in sent_at if t)
    rate = committed / (last_commit - first_send) if committed else 0.0
    print()
    load = os.getloadavg()
    print(f"conditions: {args.validators} validators on {os.cpu_count()} cores, block time {args.block_time_ms} ms,")
    print(f"  load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min; other work shares the cores)")
    print(f"  offered {args.rate:,} tx/s for {args.seconds:.0f} s ({len(txs):,} txs from {args.accounts} accounts,")
    print(f"  JSON-RPC batches of {args.batch} round-robin over the validators; gossip to the others)")
    print(f"committed: {committed:,} of {len(txs):,} ({rejected[0]} refused at submit)")
    print(f"committed tx/s (first send → last commit): {rate:,.0f}")
    if latencies:
        print(
            f"commit latency: p50 {pct(latencies, 50):.2f} s, p99 {pct(latencies, 99):.2f} s, "
            f"mean {statistics.mean(latencies):.2f} s"
        )
    print(
        f"blocks: {len(heights)}, with txs {len(block_sizes)}, txs/block median "
        f"{statistics.median(block_sizes) if block_sizes else 0:.0f}, decided after round 0: {multi_round}"
    )
    print(
        f"baseline: raw Ed25519 verify {verify:,.0f}/s on one core; committed tx/s / verify rate = {rate / verify:.3f}"
    )
    print("targets: ≥ 1,000 tx/s, p50 ≤ 1.5 s, p99 ≤ 3 s")
    if not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"data and logs kept in {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
