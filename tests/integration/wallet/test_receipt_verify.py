"""``aitbc receipt verify`` and ``receipts.verify`` against a real node, with a settle built here.

The chain side (open_escrow, settle_job) is real; the receipt is signed with test miner and
coordinator keys. For the job-id path a minimal stand-in serves the coordinator's two GETs.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest
from wallet_harness import ok, run_cli

from aitbc.client.node import NodeClient
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.receipt import (
    Receipt,
    ReceiptUnits,
    compute_receipt_hash,
    countersign_receipt,
    sign_receipt_as_miner,
)
from aitbc.protocol.tx import OpenEscrow, SettleJob, sign_tx

FEE = 1_000


def _receipt(chain_id: str, job_id: str, client: KeyPair, miner: KeyPair, coordinator: KeyPair) -> Receipt:
    receipt = Receipt(
        chain_id=chain_id,
        job_id=job_id,
        miner=miner.address,
        client=client.address,
        coordinator=coordinator.address,
        model="tiny-model",
        model_digest="sha256:" + "ab" * 32,
        input_hash="00" * 32,
        output_hash="11" * 32,
        units=ReceiptUnits(prompt_tokens=10, completion_tokens=20, compute_ms=500),
        unit_price=100,
        total_price=3_000,
        started_at_ms=1_000,
        finished_at_ms=2_000,
    )
    return countersign_receipt(sign_receipt_as_miner(receipt, miner), coordinator)


@pytest.fixture
def settled(shared_node: Any, client: NodeClient) -> dict[str, Any]:
    """An escrow opened by a client and settled on chain by its coordinator with a signed receipt."""
    payer, coordinator, miner = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    shared_node.fund(client, {payer.address: 1_000_000, coordinator.address: 100_000})
    chain_id = shared_node.chain_id
    job_id = uuid.uuid4().hex
    height = client.get_head()["height"]
    open_tx = sign_tx(
        OpenEscrow(
            chain_id=chain_id,
            sender=payer.address,
            nonce=0,
            fee=FEE,
            job_id=job_id,
            coordinator=coordinator.address,
            amount=10_000,
            deadline_height=height + 1_000,
        ),
        payer,
    )
    shared_node.wait_committed(client, [client.send_tx(open_tx)])
    receipt = _receipt(chain_id, job_id, payer, miner, coordinator)
    settle = sign_tx(
        SettleJob(chain_id=chain_id, sender=coordinator.address, nonce=0, fee=FEE, receipt=receipt), coordinator
    )
    shared_node.wait_committed(client, [client.send_tx(settle)])
    return {"receipt": receipt, "payer": payer, "miner": miner, "coordinator": coordinator, "job_id": job_id}


def _write(path: Path, receipt: Receipt) -> Path:
    body = {
        "job_id": receipt.job_id,
        "receipt_hash": compute_receipt_hash(receipt),
        "receipt": msgspec.to_builtins(receipt),
    }
    path.write_text(json.dumps(body))
    return path


def _checks(stdout: str) -> dict[str, str]:
    report = json.loads(stdout)
    return {c["name"]: c["outcome"] for c in report["checks"]}


def test_settled_receipt_verifies(shared_node: Any, settled: dict[str, Any], tmp_path: Path) -> None:
    file = _write(tmp_path / "receipt.json", settled["receipt"])
    out = ok(run_cli("receipt", "verify", str(file), "--rpc", shared_node.rpc_url))
    assert "receipt verified" in out
    for name in (
        "miner_signature",
        "coordinator_signature",
        "settle_committed",
        "settle_tx",
        "assigned_miner",
        "amounts",
    ):
        assert name in out
    checks = _checks(ok(run_cli("receipt", "verify", str(file), "--rpc", shared_node.rpc_url, "--json")))
    assert checks == {
        "miner_signature": "pass",
        "coordinator_signature": "pass",
        "receipt_accounting": "pass",
        "settle_committed": "pass",
        "settle_tx": "pass",
        "assigned_miner": "pass",
        "amounts": "pass",
        "zk_proof": "skip",
    }
    report = json.loads(ok(run_cli("receipt", "verify", str(file), "--rpc", shared_node.rpc_url, "--json")))
    assert "settled with settle_job" in next(c["detail"] for c in report["checks"] if c["name"] == "zk_proof")


def test_tampered_receipt_fails(shared_node: Any, settled: dict[str, Any], tmp_path: Path) -> None:
    receipt: Receipt = settled["receipt"]
    inflated = msgspec.structs.replace(receipt, unit_price=200, total_price=6_000)
    result = run_cli(
        "receipt", "verify", str(_write(tmp_path / "r.json", inflated)), "--rpc", shared_node.rpc_url, "--json"
    )
    assert result.returncode == 1
    checks = _checks(result.stdout)
    assert checks["miner_signature"] == "fail" and checks["coordinator_signature"] == "fail"
    assert checks["settle_committed"] == "fail"  # the chain anchored another receipt hash
    assert checks["amounts"] == "fail"
    human = run_cli("receipt", "verify", str(tmp_path / "r.json"), "--rpc", shared_node.rpc_url)
    assert human.returncode == 1 and "FAIL" in human.stdout and "NOT verified" in human.stdout


def test_unsettled_receipt_fails(shared_node: Any, client: NodeClient, tmp_path: Path) -> None:
    """Well signed, but no escrow was ever opened for it: the proof of absence shows it is not on chain."""
    receipt = _receipt(
        shared_node.chain_id, uuid.uuid4().hex, KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    )
    result = run_cli(
        "receipt", "verify", str(_write(tmp_path / "r.json", receipt)), "--rpc", shared_node.rpc_url, "--json"
    )
    assert result.returncode == 1
    checks = _checks(result.stdout)
    assert checks["miner_signature"] == "pass" and checks["settle_committed"] == "fail"


class _FakeCoordinator:
    """Serves GET /api/v1/jobs/{id} and /api/v1/jobs/{id}/receipt, as the coordinator does."""

    def __init__(self, receipt: Receipt, assigned_miner: str) -> None:
        body = {
            "job_id": receipt.job_id,
            "receipt_hash": compute_receipt_hash(receipt),
            "receipt": msgspec.to_builtins(receipt),
        }
        job = {"job_id": receipt.job_id, "state": "completed", "miner": assigned_miner, "client": receipt.client}
        routes = {f"/api/v1/jobs/{receipt.job_id}/receipt": body, f"/api/v1/jobs/{receipt.job_id}": job}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = routes.get(self.path)
                payload = json.dumps(found or {"error": {"reason": "not_found", "message": "no"}}).encode()
                self.send_response(200 if found else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_coordinator() -> Iterator[list[_FakeCoordinator]]:
    started: list[_FakeCoordinator] = []
    yield started
    for c in started:
        c.close()


def test_by_job_id_checks_the_assigned_miner(
    shared_node: Any, settled: dict[str, Any], fake_coordinator: list[_FakeCoordinator]
) -> None:
    receipt: Receipt = settled["receipt"]
    honest = _FakeCoordinator(receipt, receipt.miner)
    fake_coordinator.append(honest)
    args = ["receipt", "verify", receipt.job_id, "--rpc", shared_node.rpc_url, "--api-key", "k", "--json"]
    checks = _checks(ok(run_cli(*args, "--coordinator", honest.url)))
    assert checks["assigned_miner"] == "pass" and checks["settle_committed"] == "pass"
    # a coordinator whose records name another miner than the receipt does
    other = _FakeCoordinator(receipt, KeyPair.generate().address)
    fake_coordinator.append(other)
    result = run_cli(*args, "--coordinator", other.url)
    assert result.returncode == 1 and _checks(result.stdout)["assigned_miner"] == "fail"


def test_daemon_receipts_verify(wallet_daemon: Any, settled: dict[str, Any]) -> None:
    daemon = wallet_daemon()
    receipt = msgspec.to_builtins(settled["receipt"])
    with daemon.client() as wallet:
        report = wallet.rpc("receipts.verify", {"receipt": receipt})
        assert report["ok"] is True and report["job_id"] == settled["job_id"]
        rest = wallet.verify_receipt(receipt=receipt)
        assert rest["ok"] is True
        receipt["total_price"] = 1
        assert wallet.rpc("receipts.verify", {"receipt": receipt})["ok"] is False


@pytest.fixture(scope="module")
def prover() -> Any:
    from aitbc.zk.prover import Groth16pyProver
    from aitbc.zk.toolchain import CircuitPaths, default_circuits_dir

    return Groth16pyProver(CircuitPaths(default_circuits_dir()))


def test_zk_settled_receipt_checks_its_proof(shared_node: Any, client: NodeClient, prover: Any, tmp_path: Path) -> None:
    """Settled with settle_job_zk: the wallet re-verifies the proof (chain's and attached); a tampered one fails."""
    from aitbc.protocol.tx import SettleJobZk
    from aitbc.zk.prover import make_receipt_proof

    payer, coordinator, miner = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    shared_node.fund(client, {payer.address: 1_000_000, coordinator.address: 100_000})
    job_id = uuid.uuid4().hex
    open_tx = OpenEscrow(
        chain_id=shared_node.chain_id,
        sender=payer.address,
        nonce=0,
        fee=FEE,
        job_id=job_id,
        coordinator=coordinator.address,
        amount=10_000,
        deadline_height=client.get_head()["height"] + 1_000,
    )
    shared_node.wait_committed(client, [client.send_tx(sign_tx(open_tx, payer))])
    receipt = _receipt(shared_node.chain_id, job_id, payer, miner, coordinator)
    proof = make_receipt_proof(prover, receipt, 10_000)
    settle = SettleJobZk(
        chain_id=shared_node.chain_id, sender=coordinator.address, nonce=0, fee=FEE, receipt=receipt, proof=proof
    )
    shared_node.wait_committed(client, [client.send_tx(sign_tx(settle, coordinator))])

    # the bare receipt: the proof comes from the settle_job_zk tx on chain
    bare = _write(tmp_path / "bare.json", receipt)
    report = json.loads(ok(run_cli("receipt", "verify", str(bare), "--rpc", shared_node.rpc_url, "--json")))
    zk = next(c for c in report["checks"] if c["name"] == "zk_proof")
    assert report["ok"] is True and zk["outcome"] == "pass"
    assert "settle_job_zk" in zk["detail"] and "does not prove that any model ran" in zk["detail"]

    # the receipt file carries the proof, as the coordinator serves it
    body = json.loads(bare.read_text())
    body["zk_proof"] = msgspec.to_builtins(proof)
    (tmp_path / "with.json").write_text(json.dumps(body))
    checks = _checks(
        ok(run_cli("receipt", "verify", str(tmp_path / "with.json"), "--rpc", shared_node.rpc_url, "--json"))
    )
    assert checks["zk_proof"] == "pass"

    # a tampered attached proof fails (the chain's genuine one does not rescue it)
    raw = bytearray(bytes.fromhex(proof.proof))
    raw[10] ^= 0x01
    body["zk_proof"]["proof"] = raw.hex()
    (tmp_path / "forged.json").write_text(json.dumps(body))
    result = run_cli("receipt", "verify", str(tmp_path / "forged.json"), "--rpc", shared_node.rpc_url, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    zk = next(c for c in report["checks"] if c["name"] == "zk_proof")
    assert zk["outcome"] == "fail" and "attached proof" in zk["detail"] and "Groth16" in zk["detail"]

    # a proof whose salt does not open the commitment to this receipt fails too
    body["zk_proof"] = msgspec.to_builtins(msgspec.structs.replace(proof, salt="00" * 31 + "01"))
    (tmp_path / "salt.json").write_text(json.dumps(body))
    result = run_cli("receipt", "verify", str(tmp_path / "salt.json"), "--rpc", shared_node.rpc_url, "--json")
    assert result.returncode == 1 and _checks(result.stdout)["zk_proof"] == "fail"
