"""The overcharging miner of issue 14, against real processes: a node, a pool hub, a paid coordinator
(``--node-url``, ``--poolhub-url``) and a signed fake miner registered at 1 base unit per token.

It sends receipts for a 5-character prompt that (a) charge 1,000 per token, (b) claim 1,000 completion
tokens at its own price, (c) claim 1,000 prompt tokens at its own price. Each is refused with its own
reason, the client pays nothing for them, and the pool hub's statistics of the miner record a rejected
receipt (one per job attempt). An honest receipt for the same job is then accepted and settles for exactly its units.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from coordinator_harness import CoordinatorProcess, FakeMiner, fake_model, wait_until
from poolhub_harness import PoolHubProcess

from aitbc.client.coordinator import CoordinatorClient
from aitbc.client.node import NodeClient
from aitbc.client.payment import submit_paid_job
from aitbc.coordinator.auth import new_api_key
from aitbc.coordinator.db.repo import CoordinatorRepo
from aitbc.protocol.amounts import BASE_UNITS_PER_AITBC
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.receipt import ReceiptUnits
from aitbc.protocol.tx import Transfer, sign_tx

if TYPE_CHECKING:
    from conftest import NodeProcess


def _fund(node: NodeProcess, *addresses: str) -> None:
    faucet = node.faucet_key
    with node.client() as rpc:
        nonce = rpc.next_nonce(faucet.address)
        hashes = [
            rpc.send_tx(
                sign_tx(
                    Transfer(
                        chain_id=node.chain_id,
                        sender=faucet.address,
                        nonce=nonce + i,
                        fee=1_000,
                        recipient=address,
                        amount=100 * BASE_UNITS_PER_AITBC,
                    ),
                    faucet,
                )
            )
            for i, address in enumerate(addresses)
        ]
        for tx_hash in hashes:
            assert rpc.wait_for_tx(tx_hash, timeout=20)["status"] == "committed"


@pytest.fixture(scope="module")
def metered(shared_node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base: Path = tmp_path_factory.mktemp("metering")
    hub = PoolHubProcess(base / "hub", token="hub-token")
    hub.start()
    coordinator = CoordinatorProcess(
        base / "coordinator",
        lease_seconds=30.0,
        node_url=shared_node.rpc_url,
        chain_id=shared_node.chain_id,
        extra_args=["--poolhub-url", hub.url, "--poolhub-token", "hub-token"],
    )
    coordinator.start()
    try:
        client_key = KeyPair.generate()
        _fund(shared_node, coordinator.address, client_key.address)
        token, row = new_api_key("metering", client_key.address, 1000.0, 1000)
        CoordinatorRepo(coordinator.engine).insert_api_key(row)
        yield {"hub": hub, "coordinator": coordinator, "node": shared_node, "client_key": client_key, "token": token}
    finally:
        coordinator.stop()
        coordinator.dispose()
        hub.stop()


def _balance(rpc: NodeClient, address: str) -> int:
    return int(rpc.get_account(address)["balance"])


def test_overcharging_miner_is_refused_and_counted_and_the_client_pays_nothing(metered: dict[str, Any]) -> None:
    coordinator: CoordinatorProcess = metered["coordinator"]
    hub: PoolHubProcess = metered["hub"]
    node: NodeProcess = metered["node"]
    client_key: KeyPair = metered["client_key"]
    miner = FakeMiner(coordinator)
    model = fake_model(price=1)
    miner.register([model])
    with CoordinatorClient(coordinator.url, metered["token"], timeout=30.0) as client, node.client() as rpc:
        # The probe's client escrows a generous max price; the prompt has 5 characters.
        body = {"type": "inference", "model": model["name"], "input": {"prompt": "hello"}, "max_price": 1_000_000}
        _job, escrow = submit_paid_job(client, rpc, client_key, body)
        client_before = _balance(rpc, client_key.address)
        claim = miner.claim(wait=10)
        assert claim is not None and claim["job"]["unit_price"] == 1
        job_id, lease = claim["job"]["job_id"], claim["lease"]["lease_id"]
        time.sleep(0.3)  # the receipts below say 200 ms of compute: that much wall time must have passed
        cheats = {
            "unit_price_not_assigned": {
                "units": ReceiptUnits(prompt_tokens=5, completion_tokens=995, compute_ms=200),
                "unit_price": 1_000,
                "total_price": 1_000_000,  # the whole escrow: 1,000 tokens at 1,000
            },
            "completion_tokens_above_max": {
                "units": ReceiptUnits(prompt_tokens=5, completion_tokens=1_000, compute_ms=200)
            },
            "prompt_tokens_above_count": {
                "units": ReceiptUnits(prompt_tokens=1_000, completion_tokens=2, compute_ms=200)
            },
        }
        for reason, change in cheats.items():
            output, receipt = miner.build_result(claim, **change)
            reply = miner.result(job_id, lease, output, receipt)
            assert reply.status_code == 422, reply.text
            assert reply.json()["error"]["reason"] == reason
        # Nothing was paid: the job still runs, has no receipt, its escrow is open, the miner has nothing.
        assert client.job(job_id)["state"] in ("assigned", "running")
        receipt_url = f"{coordinator.url}/api/v1/jobs/{job_id}/receipt"
        assert httpx.get(receipt_url, headers={"X-Api-Key": metered["token"]}).status_code != 200
        on_chain = rpc.get_job(job_id)
        assert on_chain is not None and on_chain["escrow"]["state"] == "open"
        assert _balance(rpc, miner.address) == 0
        assert _balance(rpc, client_key.address) == client_before

        def rejected() -> int:
            found = httpx.get(f"{hub.url}/v1/miners/{miner.address}", timeout=5).json()
            return int(found["stats"]["receipt_rejected"])

        # The pool hub counts one rejected receipt per job attempt, however many bad receipts it carried.
        wait_until(lambda: rejected() >= 1, 10, "the rejected receipt in the pool hub's stats")
        assert rejected() == 1
        # The honest receipt for the same work is accepted and settles for exactly its units at price 1.
        honest = ReceiptUnits(prompt_tokens=5, completion_tokens=2, compute_ms=200)
        output, receipt = miner.build_result(claim, units=honest)
        reply = miner.result(job_id, lease, output, receipt)
        assert reply.status_code == 200, reply.text
        assert reply.json()["receipt"]["total_price"] == 7

        def settled() -> dict[str, Any] | None:
            found = rpc.get_job(job_id)
            return found if found is not None and found["escrow"]["state"] == "settled" else None

        found = wait_until(settled, 30, "the escrow to settle", interval=0.2)
        assert found["escrow"]["paid_to_miner"] == 7
        refund = found["escrow"]["refunded"]
        assert refund == escrow.amount - 7 - found["escrow"]["protocol_fee"], found  # the rest went back
    miner.close()
