"""Miner bonds and audit reads against a real node: the CLI bonds and unbonds, RPC and REST show it with
proofs, bad requests get clear errors. (The whole audit flow with real miners: tests/e2e.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import msgspec

from aitbc.chain.audit_types import AuditState
from aitbc.chain.entries import is_valid_audits_proof
from aitbc.client.node import proof_from_json
from aitbc.protocol.crypto import KeyPair
from aitbc.runtime.keyfile import write_keyfile
from support.cli import run_cli

DIGEST = "sha256:" + "ab" * 32


def rpc(url: str, method: str, *params: Any) -> dict[str, Any]:
    reply: dict[str, Any] = httpx.post(
        url, json={"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}
    ).json()
    return reply


def test_bond_unbond_and_audit_reads_on_a_real_node(node_process: Any, tmp_path: Path) -> None:
    node = node_process()
    miner = KeyPair.from_seed(b"\x77" * 32)
    keys = tmp_path / "keys"
    keys.mkdir()
    write_keyfile(keys / "miner.key", miner)
    with node.client() as client:
        node.fund(client, {miner.address: 500 * 1_000_000})
    common = ["--from", "miner", "--keys-dir", str(keys), "--rpc", node.rpc_url]

    too_little = run_cli("miner", "bond", "5", "--model", DIGEST, *common)
    assert too_little.returncode != 0 and "bond_too_low" in too_little.stdout + too_little.stderr
    bonded = run_cli("miner", "bond", "150", "--model", DIGEST, *common)
    assert bonded.returncode == 0, bonded.stdout + bonded.stderr
    assert "bonded 150 AITBC" in bonded.stdout
    unbonded = run_cli("miner", "unbond", "40", *common)
    assert unbonded.returncode == 0, unbonded.stdout + unbonded.stderr

    bond = rpc(node.rpc_url, "get_miner_bond", miner.address)["result"]
    assert bond["bond"]["amount"] == 110 * 1_000_000 and bond["bond"]["models"] == [DIGEST]
    assert [u["amount"] for u in bond["bond"]["unbonding"]] == [40 * 1_000_000]
    assert bond["eligible"] is True
    rest = httpx.get(f"{node.base_url}/v1/miner-bonds/{miner.address}").json()
    assert rest["bond"] == bond["bond"]

    proof = rpc(node.rpc_url, "get_audit_proof")["result"]
    state = msgspec.convert(proof["audits"], AuditState)
    assert is_valid_audits_proof(proof["state_root"], state, proof_from_json(proof["proof"]))
    assert state.bonds[0].miner == miner.address

    assert rpc(node.rpc_url, "get_audit", "job-none")["error"]["code"] == -32004
    assert rpc(node.rpc_url, "get_audit", "bad id!")["error"]["code"] == -32602
    assert rpc(node.rpc_url, "get_audits", "maybe")["error"]["code"] == -32602
    assert rpc(node.rpc_url, "get_miner_bond", "ait1nope")["error"]["code"] == -32602
    assert httpx.get(f"{node.base_url}/v1/audits?status=maybe").status_code == 422
    assert httpx.get(f"{node.base_url}/v1/audits/job-none").status_code == 404
    assert rpc(node.rpc_url, "get_training_dispute", "job-none")["error"]["code"] == -32004
    assert rpc(node.rpc_url, "get_training_dispute", "bad id!")["error"]["code"] == -32602
    assert httpx.get(f"{node.base_url}/v1/audits/job-none/training").status_code == 404
    assert httpx.get(f"{node.base_url}/v1/miner-bonds/ait1nope").status_code == 400
    listed = run_cli("audits", "list", "--json", "--rpc", node.rpc_url)
    assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stdout + listed.stderr
