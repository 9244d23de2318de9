"""Audited inference with real processes (``docs/verification.md``): a devnet (node, coordinator, pool hub)
whose genesis audits every settled job (p = 1), and miners as ``aitbc miner run --node …`` processes that
audit each other.

* A cheating miner (the echo backend forging its outputs: ``AITBC_MINER_ECHO_CHEAT``, a test-only switch)
  is audited, disputed by its auditor, outvoted by both referees, slashed, and the client refunded on
  chain; its pool hub score falls; the job's event stream carries the audit.
* Honest miners on the builtin backend pass every audited job with no dispute: ``AUDITED_JOBS`` (20) in
  the default suite; the 200-job run is ``-m slow``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from aitbc.miner.backends.echo import ECHO_DIGEST
from aitbc.protocol.auth import sign_miner_request
from aitbc.runtime.keyfile import read_keyfile
from support.audit_net import BOND, AuditNet, wait_until

AUDITED_JOBS = int(os.environ.get("AITBC_E2E_AUDITED_JOBS", "20"))
CLOSED = ("passed", "miner_slashed", "auditor_slashed", "inconclusive", "expired")


def closed_audit(net: AuditNet, job_id: str) -> dict[str, Any] | None:
    audit = net.audit(job_id)
    return audit if audit is not None and audit["status"] in CLOSED else None


def balance(net: AuditNet, address: str) -> int:
    return int(net.rpc("get_account", address)["balance"])


@pytest.mark.timeout(600)
def test_a_cheating_miner_is_audited_disputed_slashed_and_the_client_refunded(tmp_path: Path) -> None:
    net = AuditNet(tmp_path, miners=4)
    info = net.start()
    try:
        cheater = net.keys[0].address
        net.bond([0, 1, 2, 3], ECHO_DIGEST)
        client = read_keyfile(Path(str(info.client_key))).address
        before = balance(net, client)
        net.start_miner(0, "echo", cheat=True)
        net.served_digest("echo")

        def bonded() -> int:
            models = net.coordinator("GET", "/api/v1/models").json()["models"]
            return int(next(m["bonded_miners"] for m in models if m["name"] == "echo"))

        wait_until(bonded, 30, "the coordinator to read the bond")  # /models shows the bonded miners
        job_id = net.submit("echo", "the quick brown fox jumps over the lazy dog")
        job = wait_until(lambda: (j := net.job(job_id))["state"] == "completed" and j, 120, "the job to complete")
        assert job["miner"] == cheater and job["constraints"]["audited"] is True
        result = net.coordinator("GET", f"/api/v1/jobs/{job_id}/result").json()
        assert result["output"]["text"].startswith("forged"), result

        selected = wait_until(lambda: net.audit(job_id), 120, "the job's settlement and audit draw")
        assert selected["auditor"] in {k.address for k in net.keys[1:]}
        for i in (1, 2, 3):  # the honest miners come up (they audit; no jobs are left to take)
            net.start_miner(i, "echo")
        final = wait_until(lambda: closed_audit(net, job_id), 240, "the dispute to be decided")
        assert final["status"] == "miner_slashed", final
        assert len(final["referees"]) == 2 and all(
            r["output_hash"] == final["auditor_output"] for r in final["reports"]
        )
        assert final["auditor_output"] != final["job"]["output_hash"]
        assert final["refunded"] == final["job"]["charged"] > 0
        assert balance(net, client) == before + final["refunded"]
        bond = net.rpc("get_miner_bond", cheater)["bond"]
        assert bond["amount"] == BOND - final["slashed"] and final["slashed"] == BOND // 2

        assert "audit" in net.events(job_id)
        # the audit input is only for the drawn auditor or a referee, and only while the audit is open
        path = f"/api/v1/audits/{job_id}/input"
        assert httpx.get(f"{info.coordinator_url}{path}").status_code == 401
        for key, wanted in ((net.keys[0], 403), (net.keys[1], 403)):
            signed = sign_miner_request(key, info.chain_id, "GET", path, b"", int(time.time() * 1000))
            assert httpx.get(f"{info.coordinator_url}{path}", headers=signed).status_code == wanted
        path = "/api/v1/audits/no-such-job/input"
        signed = sign_miner_request(net.keys[1], info.chain_id, "GET", path, b"", int(time.time() * 1000))
        assert httpx.get(f"{info.coordinator_url}{path}", headers=signed).status_code == 404
        hub = httpx.get(f"{info.poolhub_url}/v1/miners/{cheater}").json()
        stats = wait_until(
            lambda: (
                (s := httpx.get(f"{info.poolhub_url}/v1/miners/{cheater}").json()["stats"])["receipt_rejected"] and s
            ),
            30,
            "the slash in the pool hub's statistics",
        )
        assert stats["reliability"] < 0.75 and hub["stake"] == BOND
    finally:
        net.stop()


def run_honest(tmp_path: Path, jobs: int) -> None:
    net = AuditNet(tmp_path, miners=2)
    net.start()
    try:
        net.start_miner(0, "builtin")
        net.start_miner(1, "builtin")
        digest = net.served_digest("smollm2-135m-instruct")
        # an audited job waits while no miner is bonded; an unaudited one runs at once
        first = net.submit("smollm2-135m-instruct", "Name a colour and a number. Case 0.")
        plain = net.submit("smollm2-135m-instruct", "Say hello.", audited=False)
        wait_until(lambda: net.job(plain)["state"] == "completed", 120, "the unaudited job")
        assert net.job(first)["state"] == "queued"
        net.bond([0, 1], digest)
        ids = [first]
        ids += [net.submit("smollm2-135m-instruct", f"Name a colour and a number. Case {i}.") for i in range(1, jobs)]
        for job_id in ids:
            wait_until(lambda j=job_id: net.job(j)["state"] == "completed", 600, f"job {job_id}", every=0.5)
        audits = [wait_until(lambda j=i: closed_audit(net, j), 600, f"the audit of {i}") for i in ids]
        statuses = [a["status"] for a in audits]
        assert statuses == ["passed"] * jobs, {s: statuses.count(s) for s in set(statuses)}
        assert net.rpc("get_audits", "disputed")["audits"] == []
    finally:
        net.stop()


@pytest.mark.timeout(900)
def test_honest_builtin_miners_pass_every_audited_job(tmp_path: Path) -> None:
    run_honest(tmp_path, AUDITED_JOBS)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_honest_builtin_miners_pass_200_audited_jobs(tmp_path: Path) -> None:
    run_honest(tmp_path, 200)
