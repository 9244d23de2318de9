"""Wallet benchmark: unlock time at the default KDF cost, and signatures/s through the daemon vs in-process.

Everything runs on this machine, on loopback, against a real ``python -m aitbc wallet daemon``
(no node needed: signing does not touch the chain). Printed with the conditions and each
figure's in-process baseline measured in the same run, as ratios:

1. **Unlock.** Argon2id alone (``compute_key``: the baseline), a full keystore open
   (parse + Argon2id + XChaCha20-Poly1305 + key derivation) in-process, and an unlock
   through the daemon's REST API: median, min and max of ``--unlocks`` runs each, at the
   default cost (64 MiB, t=3).
2. **Signatures.** A 1-AITBC transfer signed ``--sigs`` times: in-process (``sign_tx`` with a
   ``KeyPair``: the baseline), through the daemon one request at a time (REST
   ``/v1/wallets/{name}/sign``, keep-alive), and as JSON-RPC batches of 100 ``wallet.sign_tx``;
   an empty request (``GET /healthz``) shows how much of a REST signature is HTTP.

    .venv/bin/python bench/wallet.py             # ~30 s
    .venv/bin/python bench/wallet.py --quick     # ~10 s
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import nacl
import nacl.bindings

from aitbc.client.wallet import WalletClient
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.tx import Transfer, sign_tx, tx_to_json_obj
from aitbc.wallet.keystore import DEFAULT_MEMLIMIT_KIB, DEFAULT_OPSLIMIT, compute_key, open_keystore
from aitbc.wallet.store import WalletStore

PASSPHRASE = "bench passphrase"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _times(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _fmt(ts: list[float]) -> str:
    return f"median {statistics.median(ts) * 1000:7.1f} ms   min {min(ts) * 1000:7.1f}   max {max(ts) * 1000:7.1f}"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (Linux /proc): less sensitive to other load than wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unlocks", type=int, default=15)
    parser.add_argument("--sigs", type=int, default=3000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.unlocks, args.sigs = 5, 500

    print("conditions")
    print(f"  cpu: {_cpu_model()}, {os.cpu_count()} cores; load avg {os.getloadavg()[0]:.2f} (1 min) at start")
    print(f"  python {platform.python_version()}, PyNaCl {nacl.__version__}")
    print(f"  KDF: Argon2id m={DEFAULT_MEMLIMIT_KIB // 1024} MiB, t={DEFAULT_OPSLIMIT} (the default, and the floor)")
    print("  daemon: python -m aitbc wallet daemon on 127.0.0.1 (uvicorn, one process); client: httpx, keep-alive")

    with tempfile.TemporaryDirectory() as tmp:
        wallet_dir = Path(tmp) / "wallets"
        store = WalletStore(wallet_dir)
        info = store.create("bench", PASSPHRASE)
        keystore = store.read("bench")
        salt = bytes.fromhex(keystore.kdf.salt)

        port = _free_port()
        log = (Path(tmp) / "daemon.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aitbc",
                "wallet",
                "daemon",
                "--wallet-dir",
                str(wallet_dir),
                "--port",
                str(port),
                "--max-failed-unlocks",
                "1000",
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (wallet_dir / "daemon.token").exists() and httpx.get(f"{url}/healthz").is_success:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("daemon did not start:\n" + (Path(tmp) / "daemon.log").read_text())
                time.sleep(0.05)
            token = (wallet_dir / "daemon.token").read_text().strip()
            with WalletClient(url, token) as wallet:
                # 1. unlock
                print(f"\nunlock ({args.unlocks} runs each)")
                # interleaved, so the three see the same background load
                kdf: list[float] = []
                local: list[float] = []
                remote: list[float] = []
                for _ in range(args.unlocks):
                    kdf += _times(lambda: compute_key(PASSPHRASE, salt, DEFAULT_MEMLIMIT_KIB, DEFAULT_OPSLIMIT), 1)
                    local += _times(lambda: open_keystore(keystore, PASSPHRASE), 1)
                    remote += _times(lambda: wallet.unlock("bench", PASSPHRASE, 600), 1)
                base = statistics.median(kdf)
                print(f"  Argon2id alone (baseline)    {_fmt(kdf)}")
                print(
                    f"  keystore open, in-process    {_fmt(local)}   = {statistics.median(local) / base:.2f}x baseline"
                )
                ratio = statistics.median(remote) / base
                print(f"  unlock through the daemon    {_fmt(remote)}   = {ratio:.2f}x baseline")

                # 2. signatures
                key = store.unlock("bench", PASSPHRASE)
                tx = Transfer(
                    chain_id="aitbc-bench",
                    sender=info.address,
                    nonce=0,
                    fee=1_000,
                    recipient=KeyPair.generate().address,
                    amount=1_000_000,
                )
                tx_obj = tx_to_json_obj(tx)
                print(f"\nsignatures of a transfer ({args.sigs} each)")
                t0 = time.perf_counter()
                for _ in range(args.sigs):
                    sign_tx(tx, key)
                in_process = args.sigs / (time.perf_counter() - t0)
                wallet.sign_tx("bench", tx_obj)  # warm up the connection
                t0, c0 = time.perf_counter(), _cpu_seconds(proc.pid)
                for _ in range(args.sigs):
                    wallet.sign_tx("bench", tx_obj)
                rest = args.sigs / (time.perf_counter() - t0)
                rest_cpu = (_cpu_seconds(proc.pid) - c0) / args.sigs
                t0, c0 = time.perf_counter(), _cpu_seconds(proc.pid)
                for _ in range(args.sigs):
                    wallet.health()
                empty = args.sigs / (time.perf_counter() - t0)
                empty_cpu = (_cpu_seconds(proc.pid) - c0) / args.sigs
                batches = max(1, args.sigs // 100)
                body = [
                    {"jsonrpc": "2.0", "method": "wallet.sign_tx", "params": {"name": "bench", "tx": tx_obj}, "id": i}
                    for i in range(100)
                ]
                http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60)
                t0, c0 = time.perf_counter(), _cpu_seconds(proc.pid)
                for _ in range(batches):
                    replies = http.post(f"{url}/rpc", json=body).json()
                    assert len(replies) == 100 and all("result" in r for r in replies)
                batch = batches * 100 / (time.perf_counter() - t0)
                batch_cpu = (_cpu_seconds(proc.pid) - c0) / (batches * 100)
                http.close()
                print(f"  in-process sign_tx (baseline)     {in_process:9.0f} sig/s")
                print(
                    f"  daemon REST, one per request      {rest:9.0f} sig/s   = {rest / in_process:.3f}x baseline "
                    f"({1e6 / rest:.0f} µs per request)"
                )
                print(f"  daemon JSON-RPC, batches of 100   {batch:9.0f} sig/s   = {batch / in_process:.3f}x baseline")
                print(
                    f"  daemon CPU per signature: REST {rest_cpu * 1e6:.0f} µs,"
                    f" JSON-RPC batch {batch_cpu * 1e6:.0f} µs;"
                    f" per empty GET /healthz {empty_cpu * 1e6:.0f} µs; in-process {1e6 / in_process:.0f} µs"
                )
                print(
                    f"  (an empty request, GET /healthz: {empty:.0f}/s = {1e6 / empty:.0f} µs; so HTTP is "
                    f"{rest / empty * 100:.0f} % of a REST signature)"
                )
                print(f"\nload avg {os.getloadavg()[0]:.2f} (1 min) at end")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
            log.close()


if __name__ == "__main__":
    main()
