"""REST (/v1), /healthz, /metrics and /openapi.json against a real node process."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import msgspec

from aitbc.chain.entries import Account, is_valid_account_proof
from aitbc.client.node import NodeClient, proof_from_json
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.tx import tx_hash as compute_tx_hash
from aitbc.protocol.tx import tx_to_json_obj


def get(node: Any, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(node.base_url + path, timeout=30.0, **kwargs)


def assert_still_serving(node: Any) -> None:
    reply = get(node, "/v1/head")
    assert reply.status_code == 200
    head = reply.json()
    assert get(node, f"/v1/blocks/{head['height']}").json()["hash"] == head["hash"]


def test_post_tx_lands_in_a_block(shared_node: Any, client: NodeClient) -> None:
    node = shared_node
    faucet, validator = node.faucet, node.validator.address
    carol = KeyPair.generate()
    before = get(node, f"/v1/accounts/{faucet.address}").json()
    validator_before = get(node, f"/v1/accounts/{validator}").json()["balance"]
    amount, fee = 2_500_000, 4_321
    tx = node.transfer(faucet, carol.address, amount, before["pending_nonce"], fee=fee)

    reply = httpx.post(node.base_url + "/v1/txs", json=tx_to_json_obj(tx), timeout=30.0)
    assert reply.status_code == 202, reply.text
    tx_hash = reply.json()["tx_hash"]
    assert reply.json() == {"tx_hash": compute_tx_hash(tx), "status": "pending"}

    deadline = time.monotonic() + 15
    while (status := get(node, f"/v1/txs/{tx_hash}/status").json())["status"] != "committed":
        assert status["status"] == "pending", status
        assert time.monotonic() < deadline, "tx not committed"
        time.sleep(0.05)
    height = status["height"]

    found = get(node, f"/v1/txs/{tx_hash}")
    assert found.status_code == 200
    assert found.json() == {
        "tx_hash": tx_hash,
        "tx": tx_to_json_obj(tx),
        "status": "committed",
        "height": height,
        "index": status["index"],
    }
    # upper-case hashes are the same tx
    assert get(node, f"/v1/txs/{tx_hash.upper()}").json()["tx_hash"] == tx_hash

    block = get(node, f"/v1/blocks/{height}").json()
    assert block["height"] == height and block["tx_count"] == len(block["txs"])
    assert tx_to_json_obj(tx) in block["txs"]
    assert get(node, f"/v1/blocks/{block['hash']}").json() == block
    assert "txs" not in get(node, f"/v1/blocks/{height}", params={"include_txs": "false"}).json()
    assert client.get_block(height) == block  # REST and JSON-RPC agree

    after = get(node, f"/v1/accounts/{faucet.address}").json()
    assert after["balance"] == before["balance"] - amount - fee
    assert after["nonce"] == before["nonce"] + 1
    assert get(node, f"/v1/accounts/{carol.address}").json()["balance"] == amount
    assert get(node, f"/v1/accounts/{validator}").json()["balance"] == validator_before + fee

    proof = get(node, f"/v1/accounts/{carol.address}/proof").json()
    header = get(node, f"/v1/blocks/{proof['height']}", params={"include_txs": "false"}).json()
    assert header["state_root"] == proof["state_root"] and header["hash"] == proof["block_hash"]
    account = msgspec.convert(proof["account"], Account)
    assert account.balance == amount
    assert is_valid_account_proof(proof["state_root"], carol.address, account, proof_from_json(proof["proof"]))
    # the same proof does not verify a different balance
    forged = Account(balance=amount + 1, nonce=0)
    assert not is_valid_account_proof(proof["state_root"], carol.address, forged, proof_from_json(proof["proof"]))


def test_post_tx_rejections(shared_node: Any, client: NodeClient) -> None:
    node = shared_node
    nonce = client.next_nonce(node.faucet.address)
    target = KeyPair.generate().address
    cases = [
        ({**node.transfer_json(node.faucet, target, 1, nonce), "amount": 2}, "bad_signature"),
        (node.transfer_json(node.faucet, target, 1, nonce, chain_id="elsewhere"), "wrong_chain_id"),
        (node.transfer_json(KeyPair.generate(), target, 1, 0), "insufficient_balance"),
        ({**node.transfer_json(node.faucet, target, 1, nonce), "extra": 1}, "malformed"),
    ]
    if nonce > 0:
        cases.append((node.transfer_json(node.faucet, target, 1, nonce - 1), "nonce_too_low"))
    for tx, reason in cases:
        reply = httpx.post(node.base_url + "/v1/txs", json=tx, timeout=30.0)
        assert reply.status_code == 400, (reason, reply.text)
        assert reply.json()["error"]["reason"] == reason
    reply = httpx.post(node.base_url + "/v1/txs", content=b"{not json", timeout=30.0)
    assert reply.status_code == 400 and reply.json()["error"]["reason"] == "malformed"
    reply = httpx.post(node.base_url + "/v1/txs", content=b"x" * (1024 * 1024 + 1), timeout=30.0)
    assert reply.status_code == 413
    assert_still_serving(node)
    assert get(node, f"/v1/accounts/{target}").json()["balance"] == 0


def test_rest_errors(shared_node: Any) -> None:
    node = shared_node
    for path in ("/v1/accounts/ait1notanaddress", "/v1/accounts/bob/proof", "/v1/accounts/" + "q" * 63):
        reply = get(node, path)
        assert reply.status_code == 400, path
        assert reply.json()["error"]["reason"] == "invalid_address"
        assert_still_serving(node)
    unknown = "0123" * 16
    reply = get(node, f"/v1/txs/{unknown}")
    assert reply.status_code == 404
    assert reply.json()["error"]["reason"] == "not_found"
    assert reply.json()["error"]["status"] == {"tx_hash": unknown, "status": "unknown"}
    assert get(node, f"/v1/txs/{unknown}/status").json() == {"tx_hash": unknown, "status": "unknown"}
    # every refusal is the one problem body of the other services: status from the error class, a reason, a message
    expected = {
        "/v1/blocks/99999999": (404, "not_found"),
        f"/v1/blocks/{unknown}": (404, "not_found"),
        "/v1/blocks/not-a-ref": (422, "invalid_request"),
        "/v1/blocks/99999999999999999999999": (422, "invalid_request"),
        "/v1/blocks/-1": (422, "invalid_request"),
        "/v1/txs/not-a-hash": (422, "invalid_request"),
        "/v1/jobs/no-such-job": (404, "not_found"),
        "/v1/gov/proposals/999999": (404, "not_found"),
        "/v1/audits/no-such-job": (404, "not_found"),
        "/v1/miner-bonds/ait1nope": (400, "invalid_address"),
        "/v1/job-events?from_height=-5": (422, "invalid_request"),
    }
    for path, (status, reason) in expected.items():
        reply = get(node, path)
        assert reply.status_code == status, (path, reply.text)
        error = reply.json()["error"]
        assert error["reason"] == reason, (path, error)
        assert isinstance(error["message"], str) and error["message"], (path, error)
    assert get(node, "/v1/nothing-here").status_code == 404
    assert_still_serving(node)


def test_head_chain_healthz_openapi(shared_node: Any, client: NodeClient) -> None:
    node = shared_node
    before = client.get_head()["height"]
    health = get(node, "/healthz")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["chain_id"] == node.chain_id
    head = get(node, "/v1/head").json()
    assert before <= body["height"] <= head["height"]
    assert set(head) >= {"height", "hash", "time", "state_root", "tx_root", "prev_hash", "proposer", "tx_count"}
    chain = get(node, "/v1/chain").json()
    assert chain == {**chain, "chain_id": node.chain_id, "authorities": [node.validator.address]}
    assert chain["genesis_hash"] == client.get_chain_info()["genesis_hash"]
    spec = get(node, "/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in ("/", "/v1/head", "/v1/txs", "/v1/accounts/{address}/proof", "/v1/blocks/{ref}"):
        assert path in paths


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def test_metrics(node_process: Any) -> None:
    """On a node of its own, so every figure is known exactly: 20 txs committed, then one tx held back
    by a nonce gap (it stays in the mempool), then idle blocks (the tx rate of the last block is 0)."""
    node = node_process("metrics")
    with node.client() as client:
        start_height = client.get_head()["height"]
        nonce = client.next_nonce(node.faucet.address)
        hashes = [
            client.send_tx(node.transfer(node.faucet, KeyPair.generate().address, 10, nonce + i)) for i in range(20)
        ]
        node.wait_committed(client, hashes)
        gapped = client.send_tx(node.transfer(node.faucet, KeyPair.generate().address, 10, nonce + 21))
        height = client.get_head()["height"]
        node.wait_for_height(client, max(start_height + 3, height + 2))  # idle blocks after the admission
        assert client.get_tx_status(gapped)["status"] == "pending"
        reply = get(node, "/metrics")
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/plain")
        text = reply.text
        for name in (
            "aitbc_chain_height",
            "aitbc_committed_tx_per_second",
            "aitbc_mempool_size",
            "aitbc_block_interval_seconds",
        ):
            assert f"# TYPE {name} " in text, name
        assert _metric(text, "aitbc_chain_height") >= start_height + 3
        assert _metric(text, "aitbc_mempool_size") == 1  # the gapped tx
        assert _metric(text, "aitbc_committed_tx_per_second") == 0  # the last block was empty
        assert _metric(text, "aitbc_committed_txs_total") == 20
        intervals = _metric(text, "aitbc_block_interval_seconds_count")
        assert intervals >= 2
        mean = _metric(text, "aitbc_block_interval_seconds_sum") / intervals
        assert 0.1 < mean < 1.0, f"mean block interval {mean}s with a 200 ms block time"
