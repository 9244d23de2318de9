"""Escrows on a REAL node: ``get_job`` / ``get_job_proof`` / ``get_job_events`` over JSON-RPC and REST,
and ``job_updates`` on the WebSocket (filters, resume from a height, order)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest
from websockets.sync.client import connect

from aitbc.client.node import NodeClient
from aitbc.client.payment import JobEscrow, open_job_escrow
from aitbc.protocol.amounts import BASE_UNITS_PER_AITBC
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import RemoteError
from aitbc.protocol.tx import RefundEscrow, Transfer, sign_tx


def funded(node: Any, client: NodeClient) -> KeyPair:
    key = KeyPair.generate()
    faucet = node.faucet_key
    tx = Transfer(
        chain_id=node.chain_id,
        sender=faucet.address,
        nonce=client.next_nonce(faucet.address),
        fee=1_000,
        recipient=key.address,
        amount=10 * BASE_UNITS_PER_AITBC,
    )
    assert client.wait_for_tx(client.send_tx(sign_tx(tx, faucet)))["status"] == "committed"
    return key


def open_for(client: NodeClient, key: KeyPair, coordinator: KeyPair, blocks: int = 500) -> JobEscrow:
    return open_job_escrow(client, key, coordinator.address, 10_000, deadline_blocks=blocks)


def test_get_job_and_its_proof_over_rpc_and_rest(shared_node: Any, client: NodeClient) -> None:
    key, coordinator = funded(shared_node, client), KeyPair.generate()
    escrow = open_for(client, key, coordinator)
    found = client.get_job(escrow.job_id)
    assert found is not None
    assert found["escrow"]["state"] == "open" and found["escrow"]["amount"] == escrow.amount == 10_200
    assert [e["kind"] for e in found["events"]] == ["escrow_opened"]
    assert found["events"][0]["tx_hash"] == escrow.tx_hash and found["events"][0]["height"] == escrow.height
    verified, proof = client.get_verified_escrow(escrow.job_id)
    assert verified is not None and verified.client == key.address and proof["height"] >= escrow.height
    rest = httpx.get(f"{shared_node.base_url}/v1/jobs/{escrow.job_id}", timeout=10).json()
    assert rest["escrow"] == found["escrow"]
    missing = httpx.get(f"{shared_node.base_url}/v1/jobs/job_none_here", timeout=10)
    assert missing.status_code == 404
    assert client.get_job("job_none_here") is None
    absent, _ = client.get_verified_escrow("job_none_here")  # a proof of absence verifies too
    assert absent is None
    with pytest.raises(RemoteError) as bad:
        client.call("get_job", "no spaces allowed")
    assert bad.value.code == -32602


def test_get_job_events_pages_by_seq_and_filters_by_address(shared_node: Any, client: NodeClient) -> None:
    key, coordinator = funded(shared_node, client), KeyPair.generate()
    start = client.get_job_events(0, None, 1)["last_seq"]
    escrows = [open_for(client, key, coordinator) for _ in range(3)]
    page = client.get_job_events(start, coordinator.address, 2)
    assert [e["job_id"] for e in page["events"]] == [e.job_id for e in escrows[:2]]
    rest = client.get_job_events(page["next_seq"], coordinator.address, 1000)
    assert [e["job_id"] for e in rest["events"]] == [escrows[2].job_id]
    assert list(client.iter_job_events(KeyPair.generate().address)) == []  # nobody else is named
    via_rest = httpx.get(
        f"{shared_node.base_url}/v1/job-events/page",
        params={"after_seq": start, "address": key.address},
        timeout=10,
    ).json()
    assert [e["job_id"] for e in via_rest["events"]] == [e.job_id for e in escrows]
    for params in ([-1], [0, None, 0], [0, None, 5_000], [0, "not-an-address"]):
        with pytest.raises(RemoteError) as bad:
            client.call("get_job_events", *params)
        assert bad.value.code == -32602


def test_job_updates_filter_resume_and_refund_by_the_chain(shared_node: Any, client: NodeClient) -> None:
    key, coordinator = funded(shared_node, client), KeyPair.generate()
    first = open_for(client, key, coordinator)
    with connect(shared_node.ws_url, open_timeout=10) as ws:
        # Resume from the first escrow's height: its event is replayed, then live ones follow, in order.
        subscribe = {
            "id": 7,
            "method": "subscribe",
            "params": ["job_updates"],
            "filter": {"address": coordinator.address, "from_height": first.height},
        }
        ws.send(orjson.dumps(subscribe))
        assert orjson.loads(ws.recv(timeout=10))["id"] == 7
        short = open_for(client, key, coordinator, blocks=3)  # the chain refunds it three blocks on
        refund = RefundEscrow(
            sender=coordinator.address, nonce=0, fee=1, chain_id=shared_node.chain_id, job_id=first.job_id
        )
        funded_coordinator = Transfer(
            chain_id=shared_node.chain_id,
            sender=shared_node.faucet_key.address,
            nonce=client.next_nonce(shared_node.faucet_key.address),
            fee=1_000,
            recipient=coordinator.address,
            amount=1_000,
        )
        assert client.wait_for_tx(client.send_tx(sign_tx(funded_coordinator, shared_node.faucet_key)))
        assert client.wait_for_tx(client.send_tx(sign_tx(refund, coordinator)))["status"] == "committed"
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while len(events) < 4:
            message = orjson.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            events.append({**message["params"], "seq": message["seq"]})
    kinds = [(e["job_id"], e["kind"]) for e in events]
    assert sorted(kinds) == sorted(
        [
            (first.job_id, "escrow_opened"),
            (short.job_id, "escrow_opened"),
            (first.job_id, "refunded"),
            (short.job_id, "refunded"),
        ]
    )
    assert kinds.index((first.job_id, "escrow_opened")) == 0
    assert [e["seq"] for e in events] == list(range(events[0]["seq"], events[0]["seq"] + 4))
    assert [e["event_seq"] for e in events] == sorted({e["event_seq"] for e in events})
    by_chain = next(e for e in events if e["job_id"] == short.job_id and e["kind"] == "refunded")
    assert by_chain["tx_hash"] == "" and by_chain["refunded"] == short.amount
    by_coordinator = next(e for e in events if e["job_id"] == first.job_id and e["kind"] == "refunded")
    assert by_coordinator["tx_hash"] != "" and by_coordinator["client"] == key.address
