"""Zk receipt proofs on a real chain: a zk job settles with settle_job_zk through node, coordinator and
miner; the node refuses a forged proof (bad_zk_proof, nothing paid) and then accepts the genuine one."""

from __future__ import annotations

import msgspec
from coordinator_harness import echo_job
from test_paid_jobs import PaidStack, balance, paid, refusal, wait_escrow_closed

from aitbc.client.payment import open_job_escrow, submit_paid_job
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.receipt import Receipt, ReceiptUnits, countersign_receipt, sign_receipt_as_miner
from aitbc.protocol.tx import SettleJobZk, sign_tx
from aitbc.protocol.zk import ZkReceiptProof, get_receipt_proof_problem
from aitbc.runtime.keyfile import read_keyfile
from aitbc.wallet.receipts import verify_receipt_end_to_end
from aitbc.zk.prover import Groth16pyProver, make_receipt_proof
from aitbc.zk.toolchain import CircuitPaths, default_circuits_dir

__all__ = ["paid"]  # the module-scoped stack fixture, shared with test_paid_jobs' helpers


def test_zk_job_settles_on_chain_with_a_verified_proof(paid: PaidStack) -> None:
    key, api_key = paid.new_client()
    body = echo_job("prove my receipt on chain", constraints={"zk_proof_required": True})
    with paid.client(api_key) as client, paid.rpc() as rpc:
        job, escrow = submit_paid_job(client, rpc, key, body)
        done = client.wait(job["job_id"], timeout=90)
        assert done["state"] == "completed", (done, paid.diagnostics())
        found = wait_escrow_closed(rpc, job["job_id"], timeout=60)
        settle = rpc.call("get_tx", found["events"][-1]["tx_hash"])["tx"]
    assert found["escrow"]["state"] == "settled"
    assert settle["type"] == "settle_job_zk"
    receipt = msgspec.convert(settle["receipt"], Receipt)
    proof = msgspec.convert(settle["proof"], ZkReceiptProof)
    assert get_receipt_proof_problem(proof, receipt, escrow.amount) is None
    assert found["escrow"]["paid_to_miner"] == receipt.total_price
    # the wallet's check, by job id: the coordinator's receipt carries the proof, the chain's tx too
    with paid.client(api_key) as client, paid.rpc() as rpc:
        assert client.receipt(job["job_id"])["zk_proof"] == settle["proof"]
        report = verify_receipt_end_to_end(rpc, client, job_id=job["job_id"])
    checks = {c.name: c for c in report.checks}
    assert report.ok, report.to_json()
    assert checks["zk_proof"].outcome == "pass" and "attached and settle_job_zk" in checks["zk_proof"].detail


def test_node_refuses_a_forged_proof_and_accepts_the_genuine_one(paid: PaidStack) -> None:
    key, _ = paid.new_client()
    coordinator_key = read_keyfile(paid.coordinator.data_dir / "coordinator.key")
    miner = KeyPair.generate()
    with paid.rpc() as rpc:
        escrow = open_job_escrow(rpc, key, paid.coordinator.address, 50_000, deadline_blocks=50)
        receipt = Receipt(
            chain_id=paid.node.chain_id,
            job_id=escrow.job_id,
            miner=miner.address,
            client=key.address,
            coordinator=paid.coordinator.address,
            model="echo",
            model_digest="sha256:" + "ab" * 32,
            input_hash="00" * 32,
            output_hash="11" * 32,
            units=ReceiptUnits(prompt_tokens=10, completion_tokens=10, compute_ms=100),
            unit_price=1_000,
            total_price=20_000,
            started_at_ms=1_000,
            finished_at_ms=2_000,
        )
        receipt = countersign_receipt(sign_receipt_as_miner(receipt, miner), coordinator_key)
        genuine = make_receipt_proof(Groth16pyProver(CircuitPaths(default_circuits_dir())), receipt, escrow.amount)
        raw = bytearray(bytes.fromhex(genuine.proof))
        raw[10] ^= 0x01
        forged = msgspec.structs.replace(genuine, proof=raw.hex())

        def settle(proof: ZkReceiptProof) -> SettleJobZk:
            return SettleJobZk(
                sender=coordinator_key.address,
                nonce=rpc.next_nonce(coordinator_key.address),
                fee=1,
                chain_id=paid.node.chain_id,
                receipt=receipt,
                proof=proof,
            )

        assert refusal(rpc, settle(forged), coordinator_key) == "bad_zk_proof"
        found = rpc.get_job(escrow.job_id)
        assert found is not None and found["escrow"]["state"] == "open"
        assert balance(rpc, miner.address) == 0

        tx_hash = rpc.send_tx(sign_tx(settle(genuine), coordinator_key))
        assert rpc.wait_for_tx(tx_hash, timeout=20)["status"] == "committed"
        assert balance(rpc, miner.address) == receipt.total_price
