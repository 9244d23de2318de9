"""Node reads never see past the head: a block the writer thread has committed to SQLite stays
invisible to clients until the node moves its head to it (``HeadView``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aitbc.chain.genesis import Genesis, GenesisBalance
from aitbc.chain.params import ChainParams
from aitbc.node.metrics import NodeMetrics
from aitbc.node.service import NodeService
from aitbc.node.store import NodeStore
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.tx import OpenEscrow, Transfer, sign_tx, verify_tx

CHAIN = "aitbc-head-view"
AUTHORITY = KeyPair.from_seed(b"\x11" * 32)
FAUCET = KeyPair.from_seed(b"\x12" * 32)
COORDINATOR = KeyPair.from_seed(b"\x13" * 32)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[NodeService]:
    genesis = Genesis(
        chain_id=CHAIN,
        genesis_time_ms=1_700_000_000_000,
        authorities=[AUTHORITY.address],
        balances=[GenesisBalance(FAUCET.address, 10**12)],
        params=ChainParams(),
    )
    node = NodeService(genesis, NodeStore(tmp_path / "chain.db"), AUTHORITY, NodeMetrics())
    yield node
    node.close()


def _admit(node: NodeService) -> tuple[str, str]:
    """A transfer and an escrow opening from the faucet, in the mempool; their hashes."""
    transfer = verify_tx(
        sign_tx(
            Transfer(chain_id=CHAIN, sender=FAUCET.address, nonce=0, fee=10, recipient=COORDINATOR.address, amount=5),
            FAUCET,
        )
    )
    escrow = verify_tx(
        sign_tx(
            OpenEscrow(
                chain_id=CHAIN,
                sender=FAUCET.address,
                nonce=1,
                fee=10,
                job_id="job_1",
                coordinator=COORDINATOR.address,
                amount=1_000,
                deadline_height=50,
            ),
            FAUCET,
        )
    )
    for vtx in (transfer, escrow):
        node.mempool.admit(vtx, node.state.get_account(FAUCET.address))
    return transfer.hash, escrow.hash


def test_a_block_committed_to_the_store_is_invisible_until_the_head_moves(
    service: NodeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    transfer_hash, _ = _admit(service)
    seen: dict[str, Any] = {}
    stored = service.store.commit_block

    def commit_then_read(*args: Any) -> None:
        stored(*args)
        # A client's reads in the window where SQLite holds block 1 and the node's head is still 0:
        seen["head"] = service.head.height
        seen["status"] = service.tx_status(transfer_hash)
        seen["tx"] = service.get_tx(transfer_hash)
        seen["by_height"] = service.get_block(1)
        seen["by_hash"] = service.get_block(args[0].hash)
        seen["events"] = service.job_events_after(0, None, 10)
        seen["since"] = service.job_events_since(0)
        seen["page"] = service.job_events_page(0, 0, 10)

    monkeypatch.setattr(service.store, "commit_block", commit_then_read)
    outcome = asyncio.run(service.produce_block())

    assert seen["head"] == 0
    assert seen["status"] == {"tx_hash": transfer_hash, "status": "pending"}
    assert seen["tx"] is not None and seen["tx"]["status"] == "pending"
    assert seen["by_height"] is None and seen["by_hash"] is None
    assert seen["events"]["events"] == [] and seen["events"]["last_seq"] == 0
    assert seen["since"] == [] and seen["page"] == []

    # once the head moved, everything agrees on block 1
    assert service.head.height == 1 and len(outcome.included) == 2
    status = service.tx_status(transfer_hash)
    assert status["status"] == "committed" and status["height"] == 1 and status["confirmations"] == 1
    block = service.get_block(1)
    assert block is not None and service.get_block(outcome.hash) == block
    events = service.job_events_after(0, None, 10)
    assert [e["kind"] for e in events["events"]] == ["escrow_opened"] and events["last_seq"] == 1
    job = service.job_json("job_1")
    assert job is not None and [e["event_seq"] for e in job["events"]] == [1]


def test_the_view_bounds_every_read_by_its_height(service: NodeService) -> None:
    transfer_hash, _ = _admit(service)
    outcome = asyncio.run(service.produce_block())
    old = service.store.view(0)
    assert old.block_by_height(1) is None and old.block_by_hash(outcome.hash) is None
    assert old.header_by_height(1) is None and old.commit_by_height(1) is None
    assert old.tx_location(transfer_hash) is None and old.tx_by_hash(transfer_hash) is None
    assert old.job_events("job_1") == [] and old.job_events_after(0, COORDINATOR.address, 10) == []
    current = service.store.view(1)
    assert current.header_by_height(1) == outcome.block.header
    assert current.tx_location(transfer_hash) == (1, 0)
    assert [seq for seq, _, _ in current.job_events_after(0, COORDINATOR.address, 10)] == [1]
