"""JSON-RPC 2.0 against a real node process over a real socket."""

from __future__ import annotations

import re
from typing import Any

import httpx
import msgspec
import pytest

from aitbc.client.node import NodeClient
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import RemoteError
from aitbc.protocol.tx import tx_hash as compute_tx_hash
from aitbc.protocol.tx import tx_to_json_obj

UNKNOWN_HASH = "ab" * 32


def post(node: Any, payload: Any = None, *, content: bytes | None = None) -> httpx.Response:
    if content is None:
        return httpx.post(node.rpc_url, json=payload, timeout=30.0)
    return httpx.post(node.rpc_url, content=content, headers={"content-type": "application/json"}, timeout=30.0)


def assert_is_stored_head(node: Any, head: dict[str, Any]) -> None:
    """``head`` (a ``get_head`` result) is a real block: the block stored at its height has its hash."""
    assert isinstance(head["height"], int) and re.fullmatch(r"[0-9a-f]{64}", head["hash"]), head
    block = post(node, {"jsonrpc": "2.0", "method": "get_block", "params": [head["height"], False], "id": "b"})
    assert block.json()["result"]["hash"] == head["hash"]
    assert block.json()["result"]["state_root"] == head["state_root"]


def assert_still_serving(node: Any) -> None:
    reply = post(node, {"jsonrpc": "2.0", "method": "get_head", "params": [], "id": "alive"})
    assert reply.status_code == 200
    body = reply.json()
    assert body["id"] == "alive"
    assert_is_stored_head(node, body["result"])


def test_seed_get_head_call(shared_node: Any) -> None:
    body = b'{"jsonrpc":"2.0","method":"get_head","params":[],"id":1}'
    reply = post(shared_node, content=body)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    answer = reply.json()
    assert answer["jsonrpc"] == "2.0"
    assert answer["id"] == 1
    assert "error" not in answer
    head = answer["result"]
    assert_is_stored_head(shared_node, head)
    assert isinstance(head["time"], float | int) and head["time"] > 1_600_000_000
    assert head["chain_id"] == shared_node.chain_id
    assert head["proposer"] == shared_node.validator.address


def test_send_tx_commits_with_fee_to_validator(shared_node: Any, client: NodeClient) -> None:
    node = shared_node
    faucet, validator = node.faucet, node.validator.address
    alice, bob = KeyPair.generate(), KeyPair.generate()
    before_faucet = client.get_account(faucet.address)
    before_validator = client.get_account(validator)["balance"]
    amount, fee = 5_000_000, 1_234

    tx = node.transfer(faucet, alice.address, amount, before_faucet["pending_nonce"], fee=fee, memo="rpc test")
    tx_hash = client.send_tx(tx)
    assert tx_hash == compute_tx_hash(tx)
    status = client.wait_for_tx(tx_hash, timeout=15)
    assert status["status"] == "committed", status
    height = status["height"]
    assert status["confirmations"] >= 1

    # balances and nonces
    after_faucet = client.get_account(faucet.address)
    assert after_faucet["balance"] == before_faucet["balance"] - amount - fee
    assert after_faucet["nonce"] == before_faucet["nonce"] + 1
    alice_account = client.get_account(alice.address)
    assert alice_account["balance"] == amount
    assert alice_account["nonce"] == 0
    assert client.get_account(validator)["balance"] == before_validator + fee

    # the tx and its block, by height and by hash
    found = client.call("get_tx", tx_hash)
    assert found["status"] == "committed"
    assert found["height"] == height
    assert found["tx"] == tx_to_json_obj(tx)
    block = client.get_block(height)
    assert block["height"] == height
    assert block["proposer"] == validator
    assert block["tx_count"] == len(block["txs"])
    assert block["txs"][status["index"]] == tx_to_json_obj(tx)
    by_hash = client.get_block(block["hash"])
    assert by_hash == block
    header_only = client.get_block(height, False)
    assert "txs" not in header_only and header_only["hash"] == block["hash"]

    # the account proof verifies against the header it names
    account, proof = client.get_verified_account(alice.address)
    assert account is not None and account.balance == amount and account.nonce == 0
    assert proof["height"] >= height
    missing, _ = client.get_verified_account(bob.address)
    assert missing is None

    # alice spends: her nonce moves, bob receives, the fee again goes to the validator
    validator_mid = client.get_account(validator)["balance"]
    back = client.send_tx(node.transfer(alice, bob.address, 1_000_000, 0, fee=777))
    assert client.wait_for_tx(back)["status"] == "committed"
    alice_after = client.get_account(alice.address)
    assert alice_after == {**alice_after, "balance": amount - 1_000_000 - 777, "nonce": 1, "pending_nonce": 1}
    assert client.get_account(bob.address)["balance"] == 1_000_000
    assert client.get_account(validator)["balance"] == validator_mid + 777
    account, _ = client.get_verified_account(alice.address)
    assert account is not None and account.nonce == 1


def test_batch_mixed_methods(shared_node: Any) -> None:
    node = shared_node
    batch = [
        {"jsonrpc": "2.0", "method": "get_head", "params": [], "id": 1},
        {"jsonrpc": "2.0", "method": "get_chain_info", "id": "two"},
        {"jsonrpc": "2.0", "method": "get_account", "params": [node.faucet.address], "id": 3},
        {"jsonrpc": "2.0", "method": "get_block", "params": {"block": 0, "include_txs": False}, "id": 4},
        {"jsonrpc": "2.0", "method": "no_such_method", "params": [], "id": 5},
        {"jsonrpc": "2.0", "method": "get_tx_status", "params": [UNKNOWN_HASH], "id": 6},
        {"jsonrpc": "2.0", "method": "get_head", "params": []},  # a notification: no reply
        {"jsonrpc": "2.0", "method": "get_account", "params": ["ait1bogus"], "id": 8},
    ]
    reply = post(node, batch)
    assert reply.status_code == 200
    answers = reply.json()
    assert [a["id"] for a in answers] == [1, "two", 3, 4, 5, 6, 8]
    assert all(a["jsonrpc"] == "2.0" for a in answers)
    by_id = {a["id"]: a for a in answers}
    assert_is_stored_head(node, by_id[1]["result"])
    assert by_id["two"]["result"]["chain_id"] == node.chain_id
    assert by_id["two"]["result"]["authorities"] == [node.validator.address]
    assert by_id[3]["result"]["address"] == node.faucet.address
    assert by_id[4]["result"]["height"] == 0 and "txs" not in by_id[4]["result"]
    assert by_id[5]["error"]["code"] == -32601
    assert by_id[6]["result"] == {"tx_hash": UNKNOWN_HASH, "status": "unknown"}
    assert by_id[8]["error"]["code"] == -32602


def test_batch_of_many_send_tx(shared_node: Any, client: NodeClient) -> None:
    node = shared_node
    faucet = node.faucet
    stranger = KeyPair.generate()
    recipients = [KeyPair.generate().address for _ in range(10)]
    start = client.get_account(faucet.address)
    count = 300
    txs = [node.transfer(faucet, recipients[i % 10], 1_000 + i, start["pending_nonce"] + i) for i in range(count)]
    payload: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "method": "send_tx", "params": [tx_to_json_obj(tx)], "id": i} for i, tx in enumerate(txs)
    ]
    # one bad element (a sender with no funds) must not spoil the rest of the batch
    broke = node.transfer(stranger, recipients[0], 5, 0)
    payload.append({"jsonrpc": "2.0", "method": "send_tx", "params": [tx_to_json_obj(broke)], "id": "broke"})
    reply = post(node, payload)
    assert reply.status_code == 200
    answers = reply.json()
    assert len(answers) == count + 1
    assert [a["id"] for a in answers[:count]] == list(range(count))
    hashes = []
    for tx, answer in zip(txs, answers[:count], strict=True):
        assert answer["result"] == {"tx_hash": compute_tx_hash(tx), "status": "pending"}, answer
        hashes.append(answer["result"]["tx_hash"])
    assert answers[-1]["id"] == "broke"
    assert answers[-1]["error"]["code"] == -32001
    assert answers[-1]["error"]["data"]["reason"] == "insufficient_balance"

    statuses = node.wait_committed(client, hashes)
    assert len(statuses) == count
    end = client.get_account(faucet.address)
    assert end["nonce"] == start["nonce"] + count
    expected = {r: 0 for r in recipients}
    for i in range(count):
        expected[recipients[i % 10]] += 1_000 + i
    for address, balance in expected.items():
        assert client.get_account(address)["balance"] == balance
    fees = sum(tx.fee for tx in txs)
    assert end["balance"] == start["balance"] - sum(expected.values()) - fees
    # txs of one sender are committed in nonce order
    positions = [(statuses[h]["height"], statuses[h]["index"]) for h in hashes]
    assert positions == sorted(positions)


def test_notifications_get_no_reply(shared_node: Any, client: NodeClient) -> None:
    node = shared_node
    reply = post(node, {"jsonrpc": "2.0", "method": "get_head", "params": []})
    assert reply.status_code == 204 and reply.content == b""
    # an unknown method as a notification is silent too
    reply = post(node, {"jsonrpc": "2.0", "method": "nope"})
    assert reply.status_code == 204 and reply.content == b""
    # a batch of only notifications: nothing at all
    reply = post(node, [{"jsonrpc": "2.0", "method": "get_head"}, {"jsonrpc": "2.0", "method": "get_chain_info"}])
    assert reply.status_code == 204 and reply.content == b""
    # a notification still does its work: a send_tx without id lands in a block
    target = KeyPair.generate()
    tx = node.transfer(node.faucet, target.address, 42, client.next_nonce(node.faucet.address))
    reply = post(node, {"jsonrpc": "2.0", "method": "send_tx", "params": [tx_to_json_obj(tx)]})
    assert reply.status_code == 204 and reply.content == b""
    assert client.wait_for_tx(compute_tx_hash(tx))["status"] == "committed"
    assert client.get_account(target.address)["balance"] == 42
    # in a mixed batch only the calls with an id are answered
    reply = post(
        node,
        [
            {"jsonrpc": "2.0", "method": "get_head"},
            {"jsonrpc": "2.0", "method": "get_head", "id": None},
            {"jsonrpc": "2.0", "method": "get_chain_info", "id": 7},
        ],
    )
    assert [a["id"] for a in reply.json()] == [None, 7]


def _call(method: str, params: str) -> bytes:
    return b'{"jsonrpc":"2.0","method":"' + method.encode() + b'","params":' + params.encode() + b',"id":1}'


@pytest.mark.parametrize(
    ("body", "code", "id_"),
    [
        pytest.param(b'{"jsonrpc":"2.0","method":"get_head",', -32700, None, id="truncated-json"),
        pytest.param(b"\xff\xfe not json", -32700, None, id="binary-garbage"),
        pytest.param(b'"just a string"', -32600, None, id="not-an-object"),
        pytest.param(b"42", -32600, None, id="a-number"),
        pytest.param(b'{"method":"get_head","params":[],"id":1}', -32600, 1, id="missing-jsonrpc"),
        pytest.param(b'{"jsonrpc":"1.0","method":"get_head","id":1}', -32600, 1, id="wrong-jsonrpc"),
        pytest.param(b'{"jsonrpc":"2.0","method":5,"id":1}', -32600, 1, id="method-not-string"),
        pytest.param(b"[]", -32600, None, id="empty-batch"),
        pytest.param(_call("get_everything", "[]"), -32601, 1, id="unknown-method"),
        pytest.param(_call("get_account", '["ait1nope"]'), -32602, 1, id="bad-address"),
        pytest.param(_call("get_account", "[17]"), -32602, 1, id="address-not-a-string"),
        pytest.param(_call("get_account", "[]"), -32602, 1, id="missing-param"),
        pytest.param(_call("get_account", '"ait1"'), -32602, 1, id="params-not-a-list"),
        pytest.param(_call("get_tx", '["xyz"]'), -32602, 1, id="bad-tx-hash"),
        pytest.param(_call("get_tx_status", '["' + "g" * 64 + '"]'), -32602, 1, id="bad-status-hash"),
        pytest.param(_call("get_block", '["g00d"]'), -32602, 1, id="bad-block-hash"),
        pytest.param(_call("get_block", "[-1]"), -32602, 1, id="negative-height"),
        pytest.param(_call("get_block", "[true]"), -32602, 1, id="bool-block-ref"),
        pytest.param(_call("get_block", "[18446744073709551616]"), -32602, 1, id="height-overflow"),
        pytest.param(_call("get_block", '["99999999999999999999999"]'), -32602, 1, id="height-string-overflow"),
        pytest.param(_call("get_block", '["\u00b2"]'), -32602, 1, id="unicode-digit"),
        pytest.param(_call("get_head", "[1]"), -32602, 1, id="too-many-params"),
        pytest.param(_call("get_block", "[1, true, 3]"), -32602, 1, id="too-many-params-2"),
        pytest.param(_call("get_block", '{"hieght": 1}'), -32602, 1, id="unknown-named-param"),
        pytest.param(_call("send_tx", "[]"), -32602, 1, id="send-tx-without-tx"),
        pytest.param(_call("get_block", "[99999999]"), -32004, 1, id="unknown-block-height"),
        pytest.param(_call("get_block", '["' + "cd" * 32 + '"]'), -32004, 1, id="unknown-block-hash"),
        pytest.param(_call("get_block", '["' + "0123" * 16 + '"]'), -32004, 1, id="all-digit-block-hash"),
        pytest.param(_call("get_tx", '["' + "ef" * 32 + '"]'), -32004, 1, id="unknown-tx"),
    ],
)
def test_error_codes(shared_node: Any, body: bytes, code: int, id_: Any) -> None:
    reply = post(shared_node, content=body)
    assert reply.status_code == 200
    answer = reply.json()
    assert isinstance(answer, dict), answer
    assert answer["jsonrpc"] == "2.0"
    assert answer["error"]["code"] == code, answer
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
    assert "result" not in answer
    assert answer["id"] == id_
    assert_still_serving(shared_node)


def test_batch_with_invalid_members(shared_node: Any) -> None:
    reply = post(shared_node, content=b'[1, {"jsonrpc":"2.0","method":"get_head","id":2}, "x"]')
    answers = reply.json()
    assert [a.get("id") for a in answers] == [None, 2, None]
    assert answers[0]["error"]["code"] == -32600
    assert_is_stored_head(shared_node, answers[1]["result"])
    assert answers[2]["error"]["code"] == -32600
    assert_still_serving(shared_node)


def _send_raw(node: Any, tx: dict[str, Any]) -> dict[str, Any]:
    reply = post(node, {"jsonrpc": "2.0", "method": "send_tx", "params": [tx], "id": 9})
    assert reply.status_code == 200
    answer: dict[str, Any] = reply.json()
    assert answer["id"] == 9
    return answer


def test_rejected_txs_carry_machine_reasons(shared_node: Any, client: NodeClient) -> None:
    node = shared_node
    faucet = node.faucet
    bob = KeyPair.generate()
    nonce = client.next_nonce(faucet.address)
    good = node.transfer(faucet, bob.address, 10, nonce)
    assert client.wait_for_tx(client.send_tx(good))["status"] == "committed"
    nonce += 1
    before = client.get_account(faucet.address)

    tampered = {**node.transfer_json(faucet, bob.address, 10, nonce), "amount": 10_000}
    wrong_chain = node.transfer_json(faucet, bob.address, 10, nonce, chain_id="some-other-chain")
    replayed = tx_to_json_obj(good)
    stale = node.transfer_json(faucet, bob.address, 11, nonce - 1)
    broke = node.transfer_json(KeyPair.generate(), bob.address, 10, 0)
    too_much = node.transfer_json(faucet, bob.address, before["balance"], nonce)
    unknown_field = {**node.transfer_json(faucet, bob.address, 10, nonce), "colour": "blue"}
    unsigned = {**node.transfer_json(faucet, bob.address, 10, nonce), "signature": ""}
    cases = [
        (tampered, "bad_signature"),
        (unsigned, "bad_signature"),
        (wrong_chain, "wrong_chain_id"),
        (replayed, "nonce_too_low"),
        (stale, "nonce_too_low"),
        (broke, "insufficient_balance"),
        (too_much, "insufficient_balance"),
        (unknown_field, "malformed"),
        ({"type": "transfer"}, "malformed"),
        ({**tx_to_json_obj(good), "type": "mint"}, "unknown_tx_type"),
        (node.transfer_json(faucet, bob.address, 10, nonce, fee=0), "fee_too_low"),
    ]
    for tx, reason in cases:
        answer = _send_raw(node, tx)
        assert "result" not in answer, (reason, answer)
        assert answer["error"]["code"] == -32001, (reason, answer)
        assert answer["error"]["data"]["reason"] == reason, (reason, answer)
        assert_still_serving(node)
    # the client surfaces the same reason
    with pytest.raises(RemoteError) as info:
        client.send_tx(node.transfer(faucet, bob.address, 10, nonce - 1))
    assert info.value.code == -32001 and info.value.reason == "nonce_too_low"
    # nothing of that moved any funds, and the node still takes a good tx
    after = client.get_account(faucet.address)
    assert (after["balance"], after["nonce"], after["pending_nonce"]) == (
        before["balance"],
        before["nonce"],
        before["nonce"],
    )
    ok = client.send_tx(node.transfer(faucet, bob.address, 10, nonce))
    assert client.wait_for_tx(ok)["status"] == "committed"
    assert client.get_account(bob.address)["balance"] == 20


def test_oversized_body_is_413_and_node_survives(shared_node: Any) -> None:
    body = b'{"jsonrpc":"2.0","method":"get_head","params":["' + b"x" * (16 * 1024 * 1024) + b'"],"id":1}'
    assert len(body) > 16 * 1024 * 1024
    try:
        reply = post(shared_node, content=body)
    except httpx.TransportError:  # pragma: no cover - the server may close before reading it all
        pytest.fail("the node reset the connection instead of answering 413")
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == -32600
    assert_still_serving(shared_node)


def test_get_tx_of_pending_and_chain_info(shared_node: Any, client: NodeClient) -> None:
    info = client.get_chain_info()
    assert info["chain_id"] == shared_node.chain_id
    assert info["consensus"] == "poa"
    assert info["block_time_ms"] == 200
    assert len(info["genesis_hash"]) == 64
    genesis = client.get_block(0)
    assert genesis["height"] == 0 and genesis["txs"] == []
    # a future-nonce tx waits in the mempool: get_tx reports it pending
    nonce = client.next_nonce(shared_node.faucet.address)
    gap = shared_node.transfer(shared_node.faucet, KeyPair.generate().address, 5, nonce + 5)
    gap_hash = client.send_tx(gap)
    pending = client.call("get_tx", gap_hash)
    assert pending["status"] == "pending" and pending["tx"] == msgspec.to_builtins(gap)
    assert client.get_tx_status(gap_hash)["status"] == "pending"
    # fill the gap so the module's later tests start from a clean mempool
    fill = [
        client.send_tx(shared_node.transfer(shared_node.faucet, KeyPair.generate().address, 5, nonce + i))
        for i in range(5)
    ]
    shared_node.wait_committed(client, [*fill, gap_hash])
