"""Jobs paid on chain, through REAL processes: a node, a coordinator with ``--node-url``, echo miners.

The chain is the ground truth: balances, escrows and job events are read from the node, never from
the coordinator's database.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import orjson
import pytest
from coordinator_harness import (
    CoordinatorProcess,
    MinerProcess,
    echo_job,
    run_cli,
    wait_until,
)
from websockets.sync.client import connect

from aitbc.chain.params import REWARD_POOL_ADDRESS
from aitbc.client.coordinator import CoordinatorClient
from aitbc.client.node import NodeClient
from aitbc.client.payment import open_job_escrow, submit_paid_job
from aitbc.coordinator.auth import new_api_key
from aitbc.coordinator.db.repo import CoordinatorRepo
from aitbc.protocol.amounts import BASE_UNITS_PER_AITBC
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import RemoteError
from aitbc.protocol.receipt import Receipt, ReceiptUnits, countersign_receipt, sign_receipt_as_miner
from aitbc.protocol.tx import SettleJob, Transfer, sign_tx
from aitbc.runtime.keyfile import read_keyfile

if TYPE_CHECKING:
    from conftest import NodeProcess

MINER_PRICE = 1_000
"""Base units per token: large enough that the 2 % protocol fee is not rounded to zero."""
FUNDS = 100 * BASE_UNITS_PER_AITBC


@dataclass
class PaidStack:
    node: NodeProcess
    coordinator: CoordinatorProcess
    miner: MinerProcess
    base: Path

    def rpc(self) -> NodeClient:
        return self.node.client()

    def fund(self, *addresses: str, amount: int = FUNDS) -> None:
        faucet = self.node.faucet_key
        with self.rpc() as rpc:
            nonce = rpc.next_nonce(faucet.address)
            hashes = []
            for i, address in enumerate(addresses):
                tx = Transfer(
                    chain_id=self.node.chain_id,
                    sender=faucet.address,
                    nonce=nonce + i,
                    fee=1_000,
                    recipient=address,
                    amount=amount,
                )
                hashes.append(rpc.send_tx(sign_tx(tx, faucet)))
            for tx_hash in hashes:
                assert rpc.wait_for_tx(tx_hash, timeout=20)["status"] == "committed"

    def new_client(self) -> tuple[KeyPair, str]:
        """A funded client key and an API key bound to its address."""
        key = KeyPair.generate()
        self.fund(key.address)
        token, row = new_api_key(f"paid-{uuid.uuid4().hex[:6]}", key.address, 1000.0, 1000)
        CoordinatorRepo(self.coordinator.engine).insert_api_key(row)
        return key, token

    def wait_miner_live(self) -> None:
        """After a coordinator restart the miner is offline until it calls again."""

        def serving() -> bool:
            models = httpx.get(f"{self.coordinator.url}/api/v1/models", timeout=10).json()["models"]
            return any(m["name"] == "echo" for m in models)

        wait_until(serving, 30, "the echo miner to be live", interval=0.1)

    def client(self, api_key: str) -> CoordinatorClient:
        return CoordinatorClient(self.coordinator.url, api_key, timeout=30.0)

    def diagnostics(self) -> str:
        return f"--- coordinator ---\n{self.coordinator.log_text()}\n--- miner ---\n{self.miner.log_text()}"


@pytest.fixture(scope="module")
def paid(shared_node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaidStack]:
    base = tmp_path_factory.mktemp("paid")
    coordinator = CoordinatorProcess(
        base / "coordinator", lease_seconds=2.0, node_url=shared_node.rpc_url, chain_id=shared_node.chain_id
    )
    coordinator.start()
    miner = MinerProcess(coordinator, base / "miner", price=MINER_PRICE)
    stack = PaidStack(shared_node, coordinator, miner, base)
    try:
        stack.fund(coordinator.address)  # the coordinator pays the settle / refund tx fees
        miner.start()
        miner.wait_registered()
        yield stack
    finally:
        miner.stop()
        coordinator.stop()
        coordinator.dispose()


def balance(rpc: NodeClient, address: str) -> int:
    return int(rpc.get_account(address)["balance"])


def wait_escrow_closed(rpc: NodeClient, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    def closed() -> dict[str, Any] | None:
        found = rpc.get_job(job_id)
        return found if found is not None and found["escrow"]["state"] != "open" else None

    result: dict[str, Any] = wait_until(closed, timeout, f"escrow of {job_id} to close", interval=0.1)
    return result


def refusal(rpc: NodeClient, tx: Any, key: KeyPair) -> str:
    """The chain's reason for refusing a signed tx: at admission, or when the block was built."""
    try:
        tx_hash = rpc.send_tx(sign_tx(tx, key))
    except RemoteError as exc:
        return str(exc.reason)
    status = rpc.wait_for_tx(tx_hash, timeout=20)
    assert status["status"] == "rejected", status
    return str(status["reason"])


def wait_payment(client: CoordinatorClient, job_id: str, state: str, timeout: float = 30.0) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        job = client.job(job_id)
        return job if (job.get("payment") or {}).get("state") == state else None

    result: dict[str, Any] = wait_until(reached, timeout, f"coordinator to record {job_id} as {state}", interval=0.1)
    return result


def test_paid_job_pays_the_miner_exactly_the_receipt_total(paid: PaidStack) -> None:
    key, api_key = paid.new_client()
    with paid.client(api_key) as client, paid.rpc() as rpc:
        before = {a: balance(rpc, a) for a in (key.address, paid.miner.address, REWARD_POOL_ADDRESS)}
        job, escrow = submit_paid_job(client, rpc, key, echo_job("pay the miner exactly what the receipt says"))
        assert job["payment"]["state"] == "escrowed" and job["payment"]["escrow_amount"] == escrow.amount
        done = client.wait(job["job_id"], timeout=30)
        assert done["state"] == "completed", done
        served = client.receipt(job["job_id"])
        found = wait_escrow_closed(rpc, job["job_id"])
        after = {a: balance(rpc, a) for a in before}
    total = served["receipt"]["total_price"]
    fee = total * 200 // 10_000
    assert total > 0 and fee > 0
    on_chain = found["escrow"]
    assert on_chain["state"] == "settled" and on_chain["receipt_hash"] == served["receipt_hash"]
    assert on_chain["paid_to_miner"] == total and on_chain["protocol_fee"] == fee
    assert after[paid.miner.address] - before[paid.miner.address] == total
    assert after[REWARD_POOL_ADDRESS] - before[REWARD_POOL_ADDRESS] == fee
    assert before[key.address] - after[key.address] == total + fee + escrow.fee
    settle_tx = found["events"][-1]["tx_hash"]
    with paid.client(api_key) as client:
        view = wait_payment(client, job["job_id"], "settled")
    assert view["payment"]["tx_hash"] == settle_tx and view["payment"]["paid_to_miner"] == total
    # The same figures for people, from the CLI (read from the chain).
    cost = run_cli("job", "cost", job["job_id"], "--json", "--rpc", paid.node.rpc_url)
    assert cost.returncode == 0, cost.stderr
    assert orjson.loads(cost.stdout)["total_cost"] == total + fee + escrow.fee
    earned = run_cli("miner", "earnings", "--address", paid.miner.address, "--json", "--rpc", paid.node.rpc_url)
    assert earned.returncode == 0, earned.stderr
    summary = orjson.loads(earned.stdout)
    assert job["job_id"] in [e["job_id"] for e in summary["jobs"]]
    assert summary["balance"] == after[paid.miner.address]


def test_job_updates_subscriber_sees_escrow_opened_then_settled_for_every_job(paid: PaidStack) -> None:
    key, api_key = paid.new_client()
    jobs = 4
    with connect(paid.node.ws_url, open_timeout=10) as ws:
        subscribe = {"id": 1, "method": "subscribe", "params": ["job_updates"], "filter": {"address": key.address}}
        ws.send(orjson.dumps(subscribe))
        assert orjson.loads(ws.recv(timeout=10))["result"]["subscribed"] == ["job_updates"]
        with paid.client(api_key) as client, paid.rpc() as rpc:
            escrows = [submit_paid_job(client, rpc, key, echo_job(f"job {i}"))[1] for i in range(jobs)]
        seen: dict[str, list[str]] = {}
        seqs: list[int] = []
        event_seqs: list[int] = []
        deadline = time.monotonic() + 60
        while sum(kinds[-1:] == ["settled"] for kinds in seen.values()) < jobs:
            message = orjson.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            assert message["method"] == "job_updates"
            event = message["params"]
            seqs.append(message["seq"])
            event_seqs.append(event["event_seq"])
            assert event["client"] == key.address
            seen.setdefault(event["job_id"], []).append(event["kind"])
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "the connection's seq has a gap"
    assert event_seqs == sorted(event_seqs) and len(set(event_seqs)) == len(event_seqs)
    assert seen == {e.job_id: ["escrow_opened", "settled"] for e in escrows}


def test_forged_and_replayed_settles_are_rejected(paid: PaidStack) -> None:
    key, api_key = paid.new_client()
    coordinator_key = read_keyfile(paid.coordinator.data_dir / "coordinator.key")
    attacker = KeyPair.generate()
    paid.fund(attacker.address)
    with paid.client(api_key) as client, paid.rpc() as rpc:
        job, _ = submit_paid_job(client, rpc, key, echo_job("settle me once"))
        assert client.wait(job["job_id"], timeout=30)["state"] == "completed"
        settled = wait_escrow_closed(rpc, job["job_id"])
        settle_tx = rpc.call("get_tx", settled["events"][-1]["tx_hash"])["tx"]
        # Replayed verbatim: its nonce is spent.
        with pytest.raises(RemoteError) as replay:
            rpc.call("send_tx", settle_tx)
        assert replay.value.reason == "nonce_too_low"
        # Re-signed by the coordinator itself with a fresh nonce: the job is paid already.
        receipt = msgspec.convert(settle_tx["receipt"], Receipt)
        again = SettleJob(
            sender=coordinator_key.address,
            nonce=rpc.next_nonce(coordinator_key.address),
            fee=1,
            chain_id=paid.node.chain_id,
            receipt=receipt,
        )
        assert refusal(rpc, again, coordinator_key) == "already_settled"

        # A forged receipt for an open escrow of this coordinator: signed by a miner nobody assigned.
        escrow = open_job_escrow(rpc, key, paid.coordinator.address, 50_000, deadline_blocks=50)
        fake_miner = KeyPair.generate()
        forged = Receipt(
            chain_id=paid.node.chain_id,
            job_id=escrow.job_id,
            miner=fake_miner.address,
            client=key.address,
            coordinator=paid.coordinator.address,
            model="echo",
            model_digest=receipt.model_digest,
            input_hash="00" * 32,
            output_hash="11" * 32,
            units=ReceiptUnits(prompt_tokens=10, completion_tokens=10, compute_ms=100),
            unit_price=1_000,
            total_price=20_000,
            started_at_ms=1,
            finished_at_ms=2,
        )
        cosigned_by_attacker = countersign_receipt(sign_receipt_as_miner(forged, fake_miner), attacker)
        by_attacker = SettleJob(
            sender=attacker.address,
            nonce=rpc.next_nonce(attacker.address),
            fee=1,
            chain_id=paid.node.chain_id,
            receipt=cosigned_by_attacker,
        )
        assert refusal(rpc, by_attacker, attacker) == "not_coordinator"
        # Sent from the coordinator's account, but without the coordinator's countersignature.
        by_coordinator = SettleJob(
            sender=coordinator_key.address,
            nonce=rpc.next_nonce(coordinator_key.address),
            fee=1,
            chain_id=paid.node.chain_id,
            receipt=cosigned_by_attacker,
        )
        assert refusal(rpc, by_coordinator, coordinator_key) == "bad_receipt"
        found = rpc.get_job(escrow.job_id)
        assert found is not None and found["escrow"]["state"] == "open"
        assert balance(rpc, fake_miner.address) == 0


def test_client_is_refunded_when_the_miner_dies_mid_job(paid: PaidStack) -> None:
    key, api_key = paid.new_client()
    region = f"r-{uuid.uuid4().hex[:6]}"
    slow = MinerProcess(
        paid.coordinator, paid.base / f"slow-{region}", token_delay=0.3, region=region, price=MINER_PRICE
    )
    slow.start()
    try:
        slow.wait_registered()
        with paid.client(api_key) as client, paid.rpc() as rpc:
            before = balance(rpc, key.address)
            body = echo_job(" ".join(["slowly"] * 40), constraints={"region": region})
            job, escrow = submit_paid_job(client, rpc, key, body, deadline_blocks=30)
            wait_until(lambda: client.job(job["job_id"])["state"] == "running", 20, "the job to start")
            assert slow.proc is not None
            slow.proc.kill()  # no goodbye: the lease runs out, no other miner serves the region
            found = wait_escrow_closed(rpc, job["job_id"], timeout=60)
            assert found["escrow"]["state"] == "refunded"
            assert found["escrow"]["refunded"] == escrow.amount and found["escrow"]["paid_to_miner"] == 0
            assert balance(rpc, key.address) == before - escrow.fee  # everything back but the escrow tx's fee
            view = wait_payment(client, job["job_id"], "refunded")
            assert view["state"] in ("failed", "expired")
    finally:
        slow.stop()


def test_coordinator_catches_up_with_a_refund_it_missed_while_down(paid: PaidStack) -> None:
    key, api_key = paid.new_client()
    with paid.client(api_key) as client, paid.rpc() as rpc:
        # A model no miner serves... except a registered fake one that never claims (so the job is accepted).
        from coordinator_harness import FakeMiner, fake_model

        idle = FakeMiner(paid.coordinator)
        model = fake_model(price=1)
        idle.register([model])
        body = {"type": "inference", "model": model["name"], "input": {"prompt": "nobody runs this"}}
        job, escrow = submit_paid_job(client, rpc, key, body, deadline_blocks=40)
        idle.close()
        paid.coordinator.stop()
        try:
            found = wait_escrow_closed(rpc, job["job_id"], timeout=40)  # the chain refunds at the deadline by itself
            assert found["escrow"]["state"] == "refunded" and found["events"][-1]["tx_hash"] == ""
        finally:
            paid.coordinator.start(keep_port=True)
        try:
            view = wait_payment(client, job["job_id"], "refunded")
            assert view["state"] == "expired" and view["payment"]["refunded"] == escrow.amount
        finally:
            paid.wait_miner_live()


def test_paid_coordinator_refuses_jobs_without_a_fitting_escrow(paid: PaidStack) -> None:
    paid.wait_miner_live()
    key, api_key = paid.new_client()
    other, _ = paid.new_client()
    unbound = paid.coordinator.insert_key()
    http = httpx.Client(base_url=paid.coordinator.url, headers={"X-Api-Key": api_key}, timeout=30)
    with http, paid.rpc() as rpc:

        def refused(body: dict[str, Any], status: int = 402, token: str | None = None) -> str:
            response = http.post("/api/v1/jobs", json=body, headers={"X-Api-Key": token} if token else None)
            assert response.status_code == status, response.text
            return str(response.json()["error"]["reason"])

        assert refused(echo_job()) == "escrow_missing"
        assert refused(echo_job(job_id="job_nothing_on_chain")) == "escrow_missing"
        theirs = open_job_escrow(rpc, other, paid.coordinator.address, 50_000)
        assert refused(echo_job(job_id=theirs.job_id)) == "wrong_client"
        # Enough for the echo miner's worst case (1,000/token x (prompt + template + 128 tokens)): a smaller
        # escrow is refused at submission (max_price_too_low), since no live miner would take the job.
        mine = open_job_escrow(rpc, key, paid.coordinator.address, 300_000)
        assert refused(echo_job(job_id=mine.job_id, max_price=310_000)) == "price_above_escrow"
        assert refused(echo_job(job_id=mine.job_id), token=unbound) == "key_not_bound"
        elsewhere = open_job_escrow(rpc, key, KeyPair.generate().address, 50_000)
        assert refused(echo_job(job_id=elsewhere.job_id)) == "wrong_coordinator"
        cheap = open_job_escrow(rpc, key, paid.coordinator.address, 50_000)
        assert refused(echo_job(job_id=cheap.job_id)) == "max_price_too_low"
        accepted = http.post("/api/v1/jobs", json=echo_job(job_id=mine.job_id))
        assert accepted.status_code == 201, accepted.text
        assert accepted.json()["max_price"] == 300_000
        assert refused(echo_job(job_id=mine.job_id), status=409) == "duplicate_job"
        # Nothing half-written: refused submissions left no job behind.
        assert http.get(f"/api/v1/jobs/{theirs.job_id}").status_code == 404
