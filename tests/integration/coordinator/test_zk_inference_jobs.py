"""EXPERIMENTAL zk-inference through REAL processes: a node, a paid coordinator, a miner started with
``--zk-inference``. The miner generates the EZKL proving key into its data dir, runs the ONNX model and
proves it; the job settles on chain; ``aitbc receipt verify`` checks the EZKL proof against the committed
circuit and that the receipt's output hash is the hash of the proven outputs; a tampered proof fails.

One proving job (setup ≈ 10-30 s once, proving ≈ 8-28 s here): the only test in CI that proves with EZKL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("ezkl", reason="the zkml extra (ezkl, onnx) is not installed")

from coordinator_harness import CoordinatorProcess, MinerProcess, run_cli
from test_paid_jobs import MINER_PRICE, PaidStack, wait_escrow_closed

from aitbc.client.payment import submit_paid_job
from aitbc.protocol.zkml import compute_zk_inference_output_hash
from aitbc.protocol.zkml_input import ZKML_MODEL
from aitbc.wallet.receipts import verify_receipt_end_to_end

if TYPE_CHECKING:
    from conftest import NodeProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def zk_paid(shared_node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaidStack]:
    base = tmp_path_factory.mktemp("zkml")
    coordinator = CoordinatorProcess(
        base / "coordinator", lease_seconds=5.0, node_url=shared_node.rpc_url, chain_id=shared_node.chain_id
    )
    coordinator.start()
    miner = MinerProcess(coordinator, base / "miner", price=MINER_PRICE, extra_args=("--zk-inference",))
    stack = PaidStack(shared_node, coordinator, miner, base)
    try:
        stack.fund(coordinator.address)
        miner.start()
        miner.wait_registered()
        yield stack
    finally:
        miner.stop()
        coordinator.stop()
        coordinator.dispose()


def test_zk_inference_job_is_proved_settled_and_verified(zk_paid: PaidStack, tmp_path: Path) -> None:
    key, api_key = zk_paid.new_client()
    models = {(m["name"], m["kind"]) for m in zk_paid.client(api_key).models()}
    assert (ZKML_MODEL, "zk-inference") in models and ("echo", "text") in models
    body = {"type": "zk-inference", "model": ZKML_MODEL, "input": {"texts": ["0.1,-0.2,0.3,0.4"]}}
    with zk_paid.client(api_key) as client, zk_paid.rpc() as rpc:
        job, _ = submit_paid_job(client, rpc, key, body)
        done = client.wait(job["job_id"], timeout=180)
        assert done["state"] == "completed", (done, zk_paid.diagnostics())
        result = client.result(job["job_id"])
        receipt = client.receipt(job["job_id"])
        found = wait_escrow_closed(rpc, job["job_id"], timeout=60)
    assert found["escrow"]["state"] == "settled"
    assert (zk_paid.miner.data_dir / "zkml").is_dir()  # the proving key was generated and cached there
    output = result["output"]
    assert output["experimental"] is True and len(output["proofs"]) == 1 and len(output["outputs"][0]) == 2
    assert receipt["receipt"]["output_hash"] == compute_zk_inference_output_hash(output["proofs"])
    assert receipt["receipt"]["units"]["prompt_tokens"] == 1  # one proven run

    args = ["--rpc", zk_paid.node.rpc_url, "--coordinator", zk_paid.coordinator.url, "--api-key", api_key]
    verified = run_cli("receipt", "verify", job["job_id"], *args, "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    checks = {c["name"]: c for c in json.loads(verified.stdout)["checks"]}
    assert checks["zkml_proof"]["outcome"] == "pass" and "EXPERIMENTAL" in checks["zkml_proof"]["detail"]
    assert checks["settle_committed"]["outcome"] == "pass"

    # a receipt file with the result and the job's input: the proofs must be about that input
    file = {**receipt, "output": output, "input": body["input"]}
    with zk_paid.rpc() as rpc:
        report = verify_receipt_end_to_end(rpc, None, receipt_obj=file)
        assert report.ok, report.to_json()
        other = verify_receipt_end_to_end(rpc, None, receipt_obj={**file, "input": {"texts": ["0.1,-0.2,0.3,0.5"]}})
        assert not other.ok
        # a tampered EZKL proof (same public instances, other proof bytes) fails
        proof = dict(output["proofs"][0])
        proof["proof"] = list(proof["proof"])
        proof["proof"][40] ^= 1
        proof["hex_proof"] = "0x" + bytes(proof["proof"]).hex()
        tampered = verify_receipt_end_to_end(rpc, None, receipt_obj={**file, "output": {**output, "proofs": [proof]}})
    check = next(c for c in tampered.checks if c.name == "zkml_proof")
    assert check.outcome == "fail" and "do not verify" in check.detail
