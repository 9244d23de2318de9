"""Governance against a real node process: CLI proposals and votes, RPC/REST reads with proofs, WebSocket
events, and a parameter change that the running node applies at its height (mempool and blocks)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import orjson
from websockets.sync.client import connect

from aitbc.chain.entries import is_valid_governance_proof
from aitbc.chain.gov_types import GovernanceState
from aitbc.client.node import proof_from_json
from aitbc.protocol.crypto import KeyPair
from aitbc.runtime.keyfile import write_keyfile
from support.cli import run_cli

VOTERS = {name: KeyPair.from_seed(bytes([0x60 + i]) * 32) for i, name in enumerate(("alice", "bob", "carol"))}


def cli(node: Any, keys: Path, *args: str) -> str:
    ran = run_cli(*args, "--rpc", node.rpc_url, "--keys-dir", str(keys))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout


def read(node: Any, *args: str) -> Any:
    ran = run_cli(*args, "--json", "--rpc", node.rpc_url)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return orjson.loads(ran.stdout)


def rpc(node: Any, method: str, *params: Any) -> Any:
    reply = httpx.post(node.rpc_url, json={"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}).json()
    return reply


def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_param_change_through_the_cli_applies_at_its_height_on_a_real_node(node_process: Any, tmp_path: Path) -> None:
    node = node_process(block_time_ms=1000)  # the devnet's 30-block vote then lasts 30 s: time for the CLI calls
    keys = tmp_path / "keys"
    keys.mkdir()
    for name, key in VOTERS.items():
        write_keyfile(keys / f"{name}.key", key)
    with node.client() as client:
        node.fund(client, {k.address: 1_000 * 1_000_000 for k in VOTERS.values()})
    validator = node.validator.address
    # Stake-weighted: alice 600, bob 300 delegate to the validator; carol stays unbonded (no weight).
    cli(node, keys, "stake", "600", "--validator", validator, "--from", "alice")
    cli(node, keys, "stake", "300", "--validator", validator, "--from", "bob")

    events: list[dict[str, Any]] = []
    with connect(node.ws_url, open_timeout=10, proxy=None) as ws:
        ws.send(orjson.dumps({"method": "subscribe", "params": ["governance"], "id": 1}).decode())
        assert orjson.loads(ws.recv(timeout=5))["result"] is not None

        with node.client() as client:
            activation = client.get_head()["height"] + 40
        out = cli(
            node, keys, "gov", "propose", "--title", "cheaper jobs", "--kind", "param_change",
            "--set", "protocol_fee_bps=50", "--set", "min_fee=2", "--activation-height", str(activation),
            "--deposit", "10", "--from", "alice",
        )  # fmt: skip
        (proposal_id,) = (int(x) for x in re.findall(r"proposal (\d+):", out))
        assert "voting_period" in out
        cli(node, keys, "gov", "vote", str(proposal_id), "yes", "--from", "alice")
        cli(node, keys, "gov", "vote", str(proposal_id), "no", "--from", "bob")
        cli(node, keys, "gov", "vote", str(proposal_id), "no", "--from", "carol")  # counts nothing: no bond

        shown = read(node, "gov", "show", str(proposal_id))
        assert {v["voter"]: v["option"] for v in shown["votes"]} == {
            VOTERS["alice"].address: "yes",
            VOTERS["bob"].address: "no",
            VOTERS["carol"].address: "no",
        }
        rest = httpx.get(f"{node.base_url}/v1/gov/proposals/{proposal_id}").json()
        assert rest["proposal"]["projected"]["tally"]["yes"] == 600 * 1_000_000
        assert rest["proposal"]["projected"]["outcome"] == "passed"

        wait_until(lambda: read(node, "gov", "show", str(proposal_id))["status"] == "passed", timeout=60)
        passed = read(node, "gov", "show", str(proposal_id))
        assert passed["tally"]["yes"] == 600 * 1_000_000 and passed["tally"]["no"] == 300 * 1_000_000
        assert passed["enact_height"] == activation

        wait_until(lambda: node.client().get_head()["height"] >= activation, timeout=60)
        params = read(node, "gov", "params")
        assert params["params"]["protocol_fee_bps"] == 50 and params["params"]["min_fee"] == 2
        assert {(r["name"], r["old"], r["new"], r["height"]) for r in params["history"]} == {
            ("protocol_fee_bps", 200, 50, activation),
            ("min_fee", 1, 2, activation),
        }
        # The running node enforces the new min_fee at once: a fee of 1 is refused by its mempool.
        with node.client() as client:
            nonce = client.next_nonce(node.faucet.address)
            reply = rpc(node, "send_tx", node.transfer_json(node.faucet, VOTERS["carol"].address, 5, nonce, fee=1))
            assert reply["error"]["data"]["reason"] == "fee_too_low", reply
            assert client.get_chain_info()["params"]["min_fee"] == 2

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(e.get("kind") == "param_enacted" for e in events) < 2:
            message = orjson.loads(ws.recv(timeout=5))
            events.append(message["params"])
    statuses = [e["status"] for e in events if e.get("kind") == "proposal" and e["proposal_id"] == proposal_id]
    assert statuses == ["voting_period", "passed"]
    assert {e["name"] for e in events if e.get("kind") == "param_enacted"} == {"protocol_fee_bps", "min_fee"}


def test_governance_reads_are_proven_and_bad_requests_are_clear(node_process: Any) -> None:
    node = node_process()
    proof = rpc(node, "get_governance_proof")["result"]
    state = msgspec.convert(proof["governance"], GovernanceState)
    assert is_valid_governance_proof(proof["state_root"], state, proof_from_json(proof["proof"]))
    assert rpc(node, "get_proposal", 7)["error"]["code"] == -32004
    assert rpc(node, "get_proposal", 0)["error"]["code"] == -32602
    assert rpc(node, "get_proposal", 10**30)["error"]["code"] == -32602
    assert rpc(node, "get_proposals", "maybe")["error"]["code"] == -32602
    assert httpx.get(f"{node.base_url}/v1/gov/proposals/0").status_code == 422
    assert httpx.get(f"{node.base_url}/v1/gov/proposals/{10**30}").status_code == 422
    assert httpx.get(f"{node.base_url}/v1/gov/proposals?status=maybe").status_code == 422
    assert httpx.get(f"{node.base_url}/v1/gov/proposals/3").status_code == 404
    assert httpx.get(f"{node.base_url}/v1/gov/params").json()["params"]["protocol_fee_bps"] == 200
    bad = run_cli("gov", "propose", "--title", "x", "--kind", "param_change", "--set", "staking.authority_power=1",
                  "--rpc", node.rpc_url)  # fmt: skip
    assert bad.returncode != 0 and "not governable" in (bad.stdout + bad.stderr)
    assert rpc(node, "get_proposals")["result"]["proposals"] == []
