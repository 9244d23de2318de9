"""A devnet for audited inference as real processes: ``aitbc node init`` with the audit parameters patched
into genesis (and the miners' keys funded there), ``aitbc devnet up`` (node, coordinator, pool hub, the
client's API key and deposit), and miners started as ``aitbc miner run --node …`` processes.

Used by ``tests/e2e/test_audited_inference.py`` and ``bench/audit_overhead.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from aitbc.client.node import NodeClient
from aitbc.devnet.config import DevnetInfo, devnet_file, read_devnet_info
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.tx import BondMiner, sign_tx
from aitbc.runtime.keyfile import write_keyfile
from support.ports import free_ports

ENV = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")} | {"COLUMNS": "250", "NO_COLOR": "1"}
AITBC = 1_000_000
MINER_FUNDS = 1_000 * AITBC
BOND = 150 * AITBC
DEPOSIT_JOB_BLOCKS = 2_400
"""A deposit job's expiry in blocks (of 500 ms), for the chain and the coordinator: a 10-minute queue."""
T = TypeVar("T")


def wait_until(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(every)


class AuditNet:
    def __init__(self, root: Path, miners: int, probability_bps: int = 10_000) -> None:
        self.root = root
        self.data_dir = root / "devnet"
        self.keys = [KeyPair.generate() for _ in range(miners)]
        self.probability_bps = probability_bps
        self.proc: subprocess.Popen[bytes] | None = None
        self.miners: dict[int, subprocess.Popen[bytes]] = {}
        self.info: DevnetInfo | None = None
        self.http = httpx.Client(timeout=30.0)

    # -- start / stop ---------------------------------------------------------------------------
    def start(self) -> DevnetInfo:
        node_dir = self.data_dir / "node"
        init = subprocess.run(
            [*(sys.executable, "-m", "aitbc", "node", "init", "--data-dir", str(node_dir)), "--block-time-ms", "500"],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
            check=False,
        )
        assert init.returncode == 0, init.stdout + init.stderr
        genesis_path = node_dir / "genesis.json"
        genesis = json.loads(genesis_path.read_text())
        audit = genesis["params"]["audit"]
        audit["probability_bps"] = self.probability_bps
        # windows long enough for a loaded 2-core machine; a decided audit closes at once anyway
        audit["audit_window_blocks"] = audit["dispute_window_blocks"] = 600
        # A deposit job nobody took gives up after half its expiry (deposit_job_blocks): 600 blocks of 500 ms
        # left a job 150 s in the queue, and 200 audited jobs on two builtin miners take ~160 s on a quiet
        # 2-core machine (more in a loaded CI run). Allow the chain, and so the coordinator, 2,400 blocks.
        genesis["params"]["max_receipt_blocks"] = DEPOSIT_JOB_BLOCKS
        genesis["balances"] += [{"address": k.address, "amount": MINER_FUNDS} for k in self.keys]
        genesis_path.write_text(json.dumps(genesis, indent=2))
        for i, key in enumerate(self.keys):
            (self.root / f"miner{i}").mkdir(parents=True, exist_ok=True)
            write_keyfile(self.root / f"miner{i}" / "miner.key", key)
        rpc, ws, p2p, coordinator, poolhub, web, exchange = (str(p) for p in free_ports(7))
        log = (self.root / "devnet.log").open("ab")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "aitbc", "devnet", "up", "--data-dir", str(self.data_dir)),
                *("--rpc-port", rpc, "--ws-port", ws, "--p2p-port", p2p, "--coordinator-port", coordinator),
                *("--poolhub-port", poolhub, "--web-port", web, "--exchange-port", exchange),
                *("--miner-backend", "none", "--no-demo", "--no-exchange", "--no-web"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ENV | {"AITBC_COORDINATOR_DEPOSIT_JOB_BLOCKS": str(DEPOSIT_JOB_BLOCKS)},
        )
        log.close()
        deadline = time.monotonic() + 120
        while not devnet_file(self.data_dir).exists():
            assert self.proc.poll() is None, f"devnet up exited {self.proc.returncode}:\n{self.log('devnet.log')}"
            assert time.monotonic() < deadline, f"devnet not up after 120 s:\n{self.log('devnet.log')}"
            time.sleep(0.2)
        self.info = read_devnet_info(self.data_dir)
        return self.info

    def log(self, name: str) -> str:
        path = self.root / name
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    def start_miner(
        self, i: int, backend: str, cheat: bool = False, price: int = 1, env: dict[str, str] | None = None
    ) -> None:
        info = self.ready
        env = ENV | ({"AITBC_MINER_ECHO_CHEAT": "1"} if cheat else {}) | (env or {})
        log = (self.root / f"miner{i}.log").open("ab")
        self.miners[i] = subprocess.Popen(
            [
                *(sys.executable, "-m", "aitbc", "miner", "run", "--coordinator", str(info.coordinator_url)),
                *("--backend", backend, "--data-dir", str(self.root / f"miner{i}"), "--node", info.rpc_url),
                *("--price", str(price), "--base-units"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()

    def stop_miner(self, i: int) -> None:
        proc = self.miners.pop(i)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        for i in list(self.miners):
            self.stop_miner(i)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(Exception):
            for pid in read_devnet_info(self.data_dir).pids.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.http.close()

    @property
    def ready(self) -> DevnetInfo:
        assert self.info is not None, "start() first"
        return self.info

    # -- chain ----------------------------------------------------------------------------------
    def node(self) -> NodeClient:
        return NodeClient(self.ready.rpc_url)

    def bond(self, indexes: list[int], digest: str, amount: int = BOND) -> None:
        with self.node() as node:
            chain_id = node.get_chain_info()["chain_id"]
            hashes = []
            for i in indexes:
                key = self.keys[i]
                tx = BondMiner(
                    chain_id=chain_id, sender=key.address, nonce=node.next_nonce(key.address), fee=1000,
                    amount=amount, models=[digest],
                )  # fmt: skip
                hashes.append(node.send_tx(sign_tx(tx, key)))
            for tx_hash in hashes:
                assert node.wait_for_tx(tx_hash, timeout=60)["status"] == "committed"

    def audit(self, job_id: str) -> dict[str, Any] | None:
        reply = self.http.post(
            self.ready.rpc_url, json={"jsonrpc": "2.0", "method": "get_audit", "params": [job_id], "id": 1}
        ).json()
        return None if "error" in reply else dict(reply["result"]["audit"])

    def rpc(self, method: str, *params: Any) -> Any:
        with self.node() as node:
            return node.call(method, *params)

    # -- coordinator ----------------------------------------------------------------------------
    def coordinator(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-Api-Key": str(self.ready.api_key)}
        return self.http.request(method, f"{self.ready.coordinator_url}{path}", headers=headers, **kwargs)

    def served_digest(self, model: str) -> str:
        def digest() -> str | None:
            models = self.coordinator("GET", "/api/v1/models").json()["models"]
            return next((m["digest"] for m in models if m["name"] == model), None)

        return wait_until(digest, 180, f"a miner serving {model}")

    def submit(
        self, model: str, prompt: str, max_tokens: int = 8, audited: bool = True, max_price: int | None = None
    ) -> str:
        body: dict[str, Any] = {
            "type": "inference",
            "model": model,
            "input": {"prompt": prompt},
            "params": {"max_tokens": max_tokens},
            "constraints": {"audited": audited},
        }
        if max_price is not None:
            body["max_price"] = max_price
        reply = self.coordinator("POST", "/api/v1/jobs", json=body)
        assert reply.status_code in (200, 201, 202), reply.text
        return str(reply.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        reply = self.coordinator("GET", f"/api/v1/jobs/{job_id}")
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def events(self, job_id: str) -> list[str]:
        """The event names on the job's stream so far (``job_updates`` carries the same events)."""
        text = self.coordinator("GET", f"/api/v1/jobs/{job_id}/events").text
        return [line.removeprefix("event: ").strip() for line in text.splitlines() if line.startswith("event: ")]
