"""Verifiable training with real processes (``docs/verification.md``, ``docs/training.md``): a devnet (node,
coordinator, pool hub) whose genesis audits every settled job, and four bonded miners as
``aitbc miner run --training --node …`` processes, each with its training-audit loop.

* An honest training job (logistic regression on scikit-learn's digits) is paid on chain and its audit —
  one segment replayed by another miner from the miner's committed checkpoint — passes.
* A miner that leaves a step out of every segment (``AITBC_MINER_TRAINING_SKIP_STEPS``, a test-only switch)
  is caught by the segment check; the bisection lands on the step it left out of the drawn segment, the
  referee's one-step recomputation confirms it, the miner is slashed and the client refunded on chain.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits

from aitbc.protocol.crypto import sha256_hex
from aitbc.runtime.keyfile import read_keyfile
from aitbc.training import runtime_build
from support.audit_net import BOND, AuditNet, wait_until

DIGEST = "sha256:" + sha256_hex(runtime_build().encode())
STEPS, EVERY = 48, 16
SKIPPED = (5, 21, 37)  # the 5th step of every segment: whichever segment is drawn holds one
CLOSED = ("passed", "miner_slashed", "auditor_slashed", "both_slashed", "inconclusive", "expired")


def digits_npz() -> bytes:
    data = load_digits()
    buffer = io.BytesIO()
    np.savez(buffer, x=data.data.astype("float32") / 16, y=data.target.astype("int64"))
    return buffer.getvalue()


def submit_training(net: AuditNet, dataset_hash: str, seed: int) -> str:
    spec = {"model": "logreg", "steps": STEPS, "checkpoint_every": EVERY, "batch_size": 32, "lr_micro": 50_000,
            "seed": seed, "dataset_hash": dataset_hash, "dataset_format": "npz"}  # fmt: skip
    body = {"type": "training", "model": "logreg", "input": {"training": spec}, "constraints": {"audited": True}}
    reply = net.coordinator("POST", "/api/v1/jobs", json=body)
    assert reply.status_code in (200, 201, 202), reply.text
    return str(reply.json()["job_id"])


def completed(net: AuditNet, job_id: str) -> dict[str, Any]:
    return wait_until(lambda: (j := net.job(job_id))["state"] == "completed" and j, 300, f"job {job_id} to complete")


def closed_audit(net: AuditNet, job_id: str) -> dict[str, Any] | None:
    audit = net.audit(job_id)
    return audit if audit is not None and audit["status"] in CLOSED else None


def balance(net: AuditNet, address: str) -> int:
    return int(net.rpc("get_account", address)["balance"])


@pytest.mark.timeout(900)
def test_an_honest_training_job_is_paid_and_a_miner_faking_checkpoints_is_bisected_and_slashed(
    tmp_path: Path,
) -> None:
    net = AuditNet(tmp_path, miners=4)
    info = net.start()
    training = {"AITBC_MINER_TRAINING": "1"}
    try:
        net.bond([0, 1, 2, 3], DIGEST)
        client = read_keyfile(Path(str(info.client_key))).address
        upload = net.coordinator("POST", "/api/v1/blobs", content=digits_npz())
        assert upload.status_code == 201, upload.text
        dataset_hash = upload.json()["hash"]

        # the honest job on miner 1 alone, the faked one on miner 0 alone; then everyone audits
        net.start_miner(1, "echo", env=training)
        assert net.served_digest("logreg") == DIGEST
        honest_id = submit_training(net, dataset_hash, seed=1)
        assert completed(net, honest_id)["miner"] == net.keys[1].address
        net.stop_miner(1)
        net.start_miner(0, "echo", env=training | {"AITBC_MINER_TRAINING_SKIP_STEPS": json.dumps(SKIPPED)})
        assert net.served_digest("logreg") == DIGEST
        before = balance(net, client)
        cheat_id = submit_training(net, dataset_hash, seed=2)
        assert completed(net, cheat_id)["miner"] == net.keys[0].address
        for i in (1, 2, 3):
            net.start_miner(i, "echo", env=training)

        honest = wait_until(lambda: closed_audit(net, honest_id), 300, "the honest job's audit")
        assert honest["status"] == "passed", honest
        assert honest["job"]["charged"] > 0 and honest["job"]["miner"] == net.keys[1].address  # paid on chain

        final = wait_until(lambda: closed_audit(net, cheat_id), 400, "the training dispute to be decided")
        assert final["status"] == "miner_slashed", final
        dispute = final["training"]
        assert dispute["start_step"] + dispute["hi"] in SKIPPED and dispute["hi"] - dispute["lo"] == 1
        assert dispute["referee_hash"] == dispute["auditor_hash"] != dispute["miner_hash"]
        assert final["referees"][0] not in (net.keys[0].address, final["auditor"])
        assert final["refunded"] == final["job"]["charged"] > 0
        assert balance(net, client) == before + final["refunded"]  # paid from its deposit, refunded here
        bond = net.rpc("get_miner_bond", net.keys[0].address)["bond"]
        assert bond["amount"] == BOND - final["slashed"] and final["slashed"] == BOND // 2
        blocks = final["closed_height"] - final["selected_height"]
        print(f"\ntraining dispute: {dispute['rounds']} rounds, {blocks} blocks from the draw to the slash")
    finally:
        net.stop()
