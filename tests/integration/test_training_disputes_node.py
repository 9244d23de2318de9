"""Training audits against a real node process, with the miners' training-audit loops
(``aitbc.miner.training_auditor``) on a toy deterministic runtime: an honest job passes its segment check;
a miner that skips a step in every segment is caught by the segment check, the bisection lands on the
skipped step, the referee confirms it, the miner is slashed and the client refunded. Reads: JSON-RPC
``get_training_dispute``, REST ``/v1/audits/{job}/training``, ``aitbc audits show``."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from aitbc.chain.training_audit import max_dispute_rounds
from aitbc.miner.training_auditor import SegmentRunner, TrainingAuditor
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.receipt import Receipt, ReceiptUnits, countersign_receipt, sign_receipt_as_miner
from aitbc.protocol.training import TrainingCommitment, compute_commitment_hash
from aitbc.protocol.tx import BondMiner, OpenEscrow, SettleJob, Tx, TxBase, sign_tx
from support.cli import run_cli
from support.toy_training import AuditNode, Store, ToyRunner, toy_train

DIGEST = "sha256:" + "7a" * 32
BOND = 150_000_000
PRICE = 2_000_000
STEPS, EVERY = 64, 16
SKIPPED = frozenset({5, 21, 37, 53})  # offset 5 of every segment: whichever is drawn holds a skipped step
CLOSED = ("passed", "miner_slashed", "auditor_slashed", "both_slashed", "inconclusive", "expired")


class ToyWorld:
    """Four miners on the toy runtime, each with its checkpoint store; miner 0 cheats on ``train-cheat``."""

    def __init__(self) -> None:
        self.commitments: dict[str, TrainingCommitment] = {}
        self.stores: list[Store] = [{} for _ in range(4)]
        self.runners = [
            ToyRunner(self.commitments, self.stores, self.stores[i], skips={"train-cheat": SKIPPED} if i == 0 else None)
            for i in range(4)
        ]

    def train(self, job_id: str, miner: int, skip: frozenset[int]) -> TrainingCommitment:
        commitment = toy_train(STEPS, EVERY, self.stores[miner], skip=skip)
        self.commitments[job_id] = commitment  # what the coordinator hands the auditor with the job's result
        return commitment


class World(Protocol):
    runners: Sequence[SegmentRunner]

    def train(self, job_id: str, miner: int, skip: frozenset[int]) -> TrainingCommitment: ...


class Net:
    def __init__(self, root: Path) -> None:
        self.client_key, self.coordinator = KeyPair.generate(), KeyPair.generate()
        self.miners = [KeyPair.generate() for _ in range(4)]
        self.node = AuditNode(root, [self.client_key, self.coordinator, *self.miners])
        self.chain_id = ""

    def send(self, key: KeyPair, kind: type[TxBase], **fields: Any) -> None:
        with self.node.client() as node:
            if not self.chain_id:
                self.chain_id = str(node.get_chain_info()["chain_id"])
            unsigned = kind(chain_id=self.chain_id, sender=key.address, nonce=node.next_nonce(key.address), fee=1_000,
                            **fields)  # fmt: skip
            tx: Tx = sign_tx(unsigned, key)  # type: ignore[arg-type]
            assert node.wait_for_tx(node.send_tx(tx), timeout=60)["status"] == "committed"

    def train_and_settle(self, world: World, job_id: str, miner: int, skip: frozenset[int] = frozenset()) -> None:
        commitment = world.train(job_id, miner, skip)
        height = int(self.node.rpc("get_head")["height"])
        self.send(self.client_key, OpenEscrow, job_id=job_id, coordinator=self.coordinator.address, amount=PRICE,
                  deadline_height=height + 500)  # fmt: skip
        unsigned = Receipt(
            chain_id=self.chain_id, job_id=job_id, miner=self.miners[miner].address, client=self.client_key.address,
            coordinator=self.coordinator.address, model="toy-mlp", model_digest=DIGEST, input_hash="00" * 32,
            output_hash=compute_commitment_hash(commitment),
            units=ReceiptUnits(prompt_tokens=0, completion_tokens=commitment.steps, compute_ms=900),
            unit_price=10_000, total_price=10_000 * commitment.steps, started_at_ms=1_000, finished_at_ms=2_000,
        )  # fmt: skip
        receipt = countersign_receipt(sign_receipt_as_miner(unsigned, self.miners[miner]), self.coordinator)
        self.send(self.coordinator, SettleJob, receipt=receipt)

    def play(self, job_id: str, loops: list[TrainingAuditor], timeout: float = 180.0) -> dict[str, Any]:
        """Every miner's loop polls until the job's audit closes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for loop in loops:
                loop.poll_once()
            reply = self.node.rpc("get_audit", job_id)["audit"] if self.audited(job_id) else None
            if reply is not None and reply["status"] in CLOSED:
                return dict(reply)
            time.sleep(0.2)
        raise AssertionError(f"the audit of {job_id} did not close in {timeout:.0f} s")

    def audited(self, job_id: str) -> bool:
        with httpx.Client() as http:
            body = {"jsonrpc": "2.0", "method": "get_audit", "params": [job_id], "id": 1}
            return "result" in http.post(self.node.rpc_url, json=body).json()

    def balance(self, address: str) -> int:
        return int(self.node.rpc("get_account", address)["balance"])


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    net = Net(tmp_path)
    net.node.start()
    try:
        yield net
    finally:
        net.node.stop()


def check_honest_then_cheat(net: Net, world: World, skipped: frozenset[int]) -> dict[str, Any]:
    """An honest job passes its audit; a job whose miner skipped ``skipped`` is bisected and slashed."""
    for miner in net.miners:
        net.send(miner, BondMiner, amount=BOND, models=[DIGEST])
    loops = [
        TrainingAuditor(key, net.node.rpc_url, runner) for key, runner in zip(net.miners, world.runners, strict=True)
    ]

    net.train_and_settle(world, "train-honest", 1)
    honest = net.play("train-honest", loops)
    assert honest["status"] == "passed", honest

    client_before = net.balance(net.client_key.address)
    net.train_and_settle(world, "train-cheat", 0, skip=skipped)
    final = net.play("train-cheat", loops)
    assert final["status"] == "miner_slashed", final
    dispute = final["training"]
    start = dispute["start_step"]
    assert start + dispute["hi"] in skipped and dispute["hi"] - dispute["lo"] == 1  # the bisection found it
    assert dispute["referee_hash"] == dispute["auditor_hash"] != dispute["miner_hash"]
    assert final["referees"][0] not in (net.miners[0].address, final["auditor"])
    assert final["refunded"] == final["job"]["charged"] > 0 and final["slashed"] == BOND // 2
    assert net.balance(net.client_key.address) == client_before - 1_000  # all it paid back, but its escrow tx's fee
    bond = net.node.rpc("get_miner_bond", net.miners[0].address)["bond"]
    assert bond["amount"] == BOND - final["slashed"]
    blocks = final["closed_height"] - final["selected_height"]
    assert dispute["rounds"] <= max_dispute_rounds(dispute["end_step"] - start) and blocks >= dispute["rounds"] + 3
    print(f"\ndispute: {dispute['rounds']} bisection rounds, {blocks} blocks from the draw to the slash")
    return final


@pytest.mark.timeout(400)
def test_a_toy_training_miner_that_skips_steps_is_bisected_slashed_and_its_client_refunded(net: Net) -> None:
    final = check_honest_then_cheat(net, ToyWorld(), SKIPPED)
    dispute = final["training"]

    view = net.node.rpc("get_training_dispute", "train-cheat")
    assert view["status"] == "miner_slashed" and view["awaiting"] == [] and view["hi_step"] in SKIPPED
    rest = httpx.get(f"{net.node.rpc_url}v1/audits/train-cheat/training").json()
    assert rest["dispute"] == view["dispute"]
    shown = run_cli("audits", "show", "train-cheat", "--rpc", net.node.rpc_url)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert f"after step {view['hi_step']}: miner says {dispute['miner_hash']}" in shown.stdout, shown.stdout
    assert "referee" in shown.stdout and "miner_slashed" in shown.stdout


@pytest.mark.timeout(400)
def test_on_the_training_runtime_a_faked_checkpoint_is_found_and_slashed(net: Net) -> None:
    """The same on ``aitbc.training``: logistic regression on digits, 48 steps, a checkpoint every 16; the
    cheater leaves out step 5 of every segment; start states travel between the miners' checkpoint stores
    and are checked against the agreed hashes."""
    from support.runtime_training import RuntimeWorld, digits, digits_spec

    raw, dataset = digits()
    skipped = frozenset({5, 21, 37})
    world = RuntimeWorld(digits_spec(raw, 48, 16), dataset, {"train-cheat": skipped})
    final = check_honest_then_cheat(net, world, skipped)
    assert final["training"]["end_step"] - final["training"]["start_step"] == 16
    # re-executed: one segment per audit (16 of 48 steps), the miner's answer (16), and the referee's step
    # after replaying from the segment's checkpoint to the agreed state (4 steps: the fault is the 5th)
    assert final["training"]["lo"] == 4
    assert sum(r.steps_replayed for r in world.runners) == 16 + 16 + 16 + 4 + 1
