"""An audited training job on a private dataset, with real processes (``docs/training.md``, *Private
datasets*): a devnet whose genesis audits every settled job and two bonded training miners.

The client seals the dataset to miner 0 and opts in to the audit. Miner 0 trains; the chain draws miner 1
to audit it, and miner 1 cannot read the dataset until the client re-seals it to miner 1
(``POST /api/v1/jobs/{id}/sealed-datasets``, ``aitbc job reseal``); then its replayed segment matches and
the audit passes. The coordinator holds only the two ciphertexts, never the plaintext (who may read a blob:
``tests/integration/coordinator/test_training_jobs.py``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from aitbc.client.coordinator import CoordinatorClient
from aitbc.miner.link import CoordinatorLink
from aitbc.protocol.crypto import KeyPair, sha256_hex
from aitbc.protocol.sealed import SealedBoxError, open_dataset, seal_dataset
from aitbc.training import runtime_build
from support.audit_net import AuditNet, wait_until
from support.training_data import digits_npz, make_spec

DIGEST = "sha256:" + sha256_hex(runtime_build().encode())
CLOSED = ("passed", "miner_slashed", "auditor_slashed", "both_slashed", "inconclusive", "expired")


async def _audit_input(url: str, key: KeyPair, job_id: str) -> dict[str, Any]:
    link = await CoordinatorLink.connect(url, key)
    async with link:
        status, data = await link.get(f"/api/v1/audits/{job_id}/input")
    assert status == 200, data
    return dict(data)


@pytest.mark.timeout(600)
def test_a_private_training_job_is_audited_once_its_client_reseals_the_dataset_to_the_auditor(
    tmp_path: Path,
) -> None:
    net = AuditNet(tmp_path, miners=2)
    info = net.start()
    training = {"AITBC_MINER_TRAINING": "1"}
    data = digits_npz(500)
    try:
        net.bond([0, 1], DIGEST)
        target = net.keys[0].address
        client = CoordinatorClient(str(info.coordinator_url), str(info.api_key), timeout=60.0)
        sealed_blob = client.put_blob(seal_dataset(data, target))
        spec = make_spec(data, "npz", model="logreg", steps=32, checkpoint_every=8, lr_micro=50_000)
        spec_body: dict[str, Any] = {
            **msgspec.to_builtins(spec),
            "sealed_dataset": {"miner": target, "blob": sealed_blob},
        }
        body = {"type": "training", "model": "logreg", "input": {"training": spec_body}}
        net.start_miner(0, "echo", env=training)
        assert net.served_digest("logreg") == DIGEST
        job = client.submit({**body, "constraints": {"audited": True}})
        job_id = str(job["job_id"])
        done = wait_until(lambda: (j := net.job(job_id))["state"] == "completed" and j, 300, "the job to complete")
        assert done["miner"] == target
        net.start_miner(1, "echo", env=training)
        audit = wait_until(lambda: net.audit(job_id), 120, "the audit to be drawn")
        auditor = audit["auditor"]
        assert auditor == net.keys[1].address and audit["status"] == "pending"  # it cannot read the data yet

        before = asyncio.run(_audit_input(str(info.coordinator_url), net.keys[1], job_id))
        assert before["resealed_dataset"] is None  # the auditor has only the ciphertext it cannot open
        with pytest.raises(SealedBoxError):
            open_dataset(net.keys[1], client.get_blob(sealed_blob), sha256_hex(data))

        copy = client.reseal_dataset(job_id, data, auditor)  # the client opts in: re-sealed to the auditor
        assert copy["miner"] == auditor
        after = asyncio.run(_audit_input(str(info.coordinator_url), net.keys[1], job_id))
        assert after["resealed_dataset"] == copy["blob"]
        final = wait_until(
            lambda: (a := net.audit(job_id)) is not None and a["status"] in CLOSED and a, 300, "the audit to close"
        )
        assert final["status"] == "passed", final

        blob_dir = net.data_dir / "coordinator" / "blobs"
        stored = {p.name for p in blob_dir.glob("??/*")}
        assert {sealed_blob, copy["blob"]} <= stored and sha256_hex(data) not in stored
    finally:
        net.stop()
