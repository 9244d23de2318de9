"""A toy deterministic training runtime for training-audit tests, and a node process whose genesis audits
every settled job.

The toy state is 32 bytes; a step hashes it with the step number (``toy_step``); a cheating run leaves the
state alone at one step (``skip``: what a miner faking a checkpoint does). ``ToyRunner`` is a
``aitbc.miner.training_auditor.SegmentRunner``: start states come from the parties' checkpoint stores (dicts
from state hash to bytes, the hash checked), replayed states go into the runner's own store.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from aitbc.client.node import NodeClient
from aitbc.protocol.crypto import KeyPair, sha256
from aitbc.protocol.training import TrainingCommitment
from support.cli import run_cli
from support.ports import free_ports

INITIAL_STATE = b"\x00" * 32
Store = dict[str, bytes]


def toy_state_hash(state: bytes) -> str:
    return sha256(b"toy-state\x00" + state).hex()


def toy_step(state: bytes, step: int) -> bytes:
    return sha256(state + step.to_bytes(8, "big"))


def toy_train(steps: int, every: int, store: Store, skip: frozenset[int] = frozenset()) -> TrainingCommitment:
    """Run ``steps`` toy steps (leaving the state alone at the ``skip`` steps), keep every state in ``store``,
    and commit every ``every`` steps."""
    state, hashes = INITIAL_STATE, [toy_state_hash(INITIAL_STATE)]
    store[hashes[0]] = state
    for step in range(1, steps + 1):
        state = state if step in skip else toy_step(state, step)
        hashes.append(toy_state_hash(state))
        store[hashes[-1]] = state
    checkpoints = [hashes[i] for i in range(0, steps + 1, every)]
    if steps % every:
        checkpoints.append(hashes[-1])
    return TrainingCommitment(
        spec_hash="aa" * 32, dataset_hash="bb" * 32, runtime_build="toy-1", steps=steps, checkpoint_every=every,
        checkpoint_hashes=checkpoints,
    )  # fmt: skip


class ToyRunner:
    def __init__(self, commitments: dict[str, TrainingCommitment], stores: list[Store], own: Store,
                 skips: dict[str, frozenset[int]] | None = None) -> None:  # fmt: skip
        self.commitments, self.stores, self.own = commitments, stores, own
        self.skips = skips or {}
        """The steps this runner skips, by job id (a cheating miner's runtime, on its own jobs)."""
        self.steps_replayed = 0

    def commitment(self, job_id: str) -> TrainingCommitment | None:
        return self.commitments.get(job_id)

    def replay(self, job_id: str, start_step: int, end_step: int, start_hash: str) -> list[str] | None:
        state = next((s[start_hash] for s in [self.own, *self.stores] if start_hash in s), None)
        if state is None or toy_state_hash(state) != start_hash:
            return None
        hashes, skip = [start_hash], self.skips.get(job_id, frozenset())
        for step in range(start_step + 1, end_step + 1):
            state = state if step in skip else toy_step(state, step)
            hashes.append(toy_state_hash(state))
            self.own[hashes[-1]] = state
        self.steps_replayed += end_step - start_step
        return hashes


class AuditNode:
    """``aitbc node init`` with the audit parameters patched into genesis and ``keys`` funded, then
    ``aitbc node run`` on free ports."""

    def __init__(self, root: Path, keys: list[KeyPair], window_blocks: int = 40, block_time_ms: int = 300) -> None:
        self.root, self.data_dir, self.keys = root, root / "node", keys
        self.window_blocks, self.block_time_ms = window_blocks, block_time_ms
        self.proc: subprocess.Popen[bytes] | None = None
        self.rpc_port = 0

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}/"

    def start(self) -> None:
        init = run_cli("node", "init", "--data-dir", str(self.data_dir), "--block-time-ms", str(self.block_time_ms))
        assert init.returncode == 0, init.stdout + init.stderr
        genesis_path = self.data_dir / "genesis.json"
        genesis = json.loads(genesis_path.read_text())
        audit = genesis["params"]["audit"]
        audit["probability_bps"] = 10_000
        audit["audit_window_blocks"] = audit["dispute_window_blocks"] = self.window_blocks
        genesis["balances"] += [{"address": k.address, "amount": 1_000_000_000} for k in self.keys]
        genesis_path.write_text(json.dumps(genesis, indent=2))
        self.rpc_port, ws, p2p = free_ports(3)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")}
        with (self.root / "node.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "aitbc", "node", "run", "--data-dir", str(self.data_dir),
                 "--rpc-port", str(self.rpc_port), "--ws-port", str(ws), "--p2p-port", str(p2p)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, (self.root / "node.log").read_text()[-4000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.rpc_port}/healthz", timeout=1.0).status_code == 200:
                    return
            assert time.monotonic() < deadline, "node not healthy after 60 s"
            time.sleep(0.1)

    def client(self) -> NodeClient:
        return NodeClient(self.rpc_url)

    def rpc(self, method: str, *params: Any) -> Any:
        with self.client() as node:
            return node.call(method, *params)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
