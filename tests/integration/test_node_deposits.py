"""Deposits on a REAL node: open / top up / withdraw, a settle batch whose bad entries are reported in
the tx's events, proof-checked reads, and the state surviving a kill -9 and restart."""

from __future__ import annotations

import os
from typing import Any

import msgspec

from aitbc.chain.deposits import compute_job_charge
from aitbc.chain.params import ChainParams
from aitbc.client.deposit import open_deposit, top_up_deposit, withdraw_deposit
from aitbc.client.node import NodeClient
from aitbc.protocol.amounts import BASE_UNITS_PER_AITBC
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.deposit import SettlementEntry, compute_job_request, make_deposit_job_id, sign_job_request
from aitbc.protocol.receipt import Receipt, ReceiptUnits, countersign_receipt, sign_receipt_as_miner
from aitbc.protocol.tx import SettleBatch, Transfer, sign_tx


def _fund(node: Any, client: NodeClient, *keys: KeyPair) -> None:
    faucet = node.faucet_key
    hashes = []
    nonce = client.next_nonce(faucet.address)
    for i, key in enumerate(keys):
        tx = Transfer(
            chain_id=node.chain_id,
            sender=faucet.address,
            nonce=nonce + i,
            fee=1_000,
            recipient=key.address,
            amount=10 * BASE_UNITS_PER_AITBC,
        )
        hashes.append(client.send_tx(sign_tx(tx, faucet)))
    node.wait_committed(client, hashes)


def _receipt(chain_id: str, job_id: str, client: str, coordinator: KeyPair, miner: KeyPair) -> Receipt:
    r = Receipt(
        chain_id=chain_id,
        job_id=job_id,
        miner=miner.address,
        client=client,
        coordinator=coordinator.address,
        model="m",
        model_digest="sha256:aa",
        input_hash="00" * 32,
        output_hash="11" * 32,
        units=ReceiptUnits(prompt_tokens=10, completion_tokens=20, compute_ms=100),
        unit_price=100,
        total_price=3_000,
        started_at_ms=1_000,
        finished_at_ms=2_000,
    )
    return countersign_receipt(sign_receipt_as_miner(r, miner), coordinator)


def test_deposit_lifecycle_on_a_real_node(node_process: Any) -> None:
    node = node_process()
    with node.client() as client:
        owner, coordinator, miner = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
        _fund(node, client, owner, coordinator)
        params = msgspec.convert(client.get_chain_info()["params"], ChainParams)
        opened = open_deposit(client, owner, coordinator.address, 1_000_000, cap_per_period=500_000, period_blocks=100)
        top_up_deposit(client, coordinator, opened.deposit_id, 1_000)  # anyone may top up
        deposit, _ = client.get_verified_deposit(opened.deposit_id)
        assert deposit is not None and deposit.balance == 1_001_000 and deposit.owner == owner.address

        expires = int(client.get_head()["height"]) + 100
        ids = [make_deposit_job_id(expires, os.urandom(8)) for _ in range(51)]
        good = [_receipt(node.chain_id, job_id, owner.address, coordinator, miner) for job_id in ids[:50]]
        forged = msgspec.structs.replace(good[0], job_id=ids[50])  # the miner never signed this one
        entries = [SettlementEntry(deposit_id=opened.deposit_id, receipt=r) for r in [*good, forged, good[1]]]
        batch = SettleBatch(
            chain_id=node.chain_id,
            sender=coordinator.address,
            nonce=client.next_nonce(coordinator.address),
            fee=params.min_fee,
            entries=entries,
        )
        status = client.wait_for_tx(client.sign_and_send(coordinator, batch))
        assert status["status"] == "committed"

        events = [e for e in client.iter_job_events(coordinator.address) if e["kind"] in ("settled", "settle_rejected")]
        assert [e["job_id"] for e in events if e["kind"] == "settled"] == [r.job_id for r in good]
        rejected = {e["job_id"]: e["reason"].split(":")[0] for e in events if e["kind"] == "settle_rejected"}
        assert rejected == {ids[50]: "bad_miner_signature", ids[1]: "already_paid"}
        charge = compute_job_charge(3_000, params)
        assert int(client.get_account(miner.address)["balance"]) == 50 * 3_000
        paid, _ = client.get_verified_paid_job(ids[7])
        assert paid is not None and paid.deposit_id == opened.deposit_id and paid.expires_height == expires
        absent, _ = client.get_verified_paid_job(ids[50])
        assert absent is None

        asked = withdraw_deposit(client, owner, opened.deposit_id, 1_000)
        before_kill = client.get_verified_deposit(opened.deposit_id)[0]
        assert before_kill is not None and before_kill.withdrawal_amount == 1_000
        assert before_kill.withdrawal_height == asked.height + params.deposit_withdrawal_delay

    node.kill()  # SIGKILL: the deposits and paid ids come back from the store
    node.start(keep_ports=True)
    with node.client() as client:
        deposit, _ = client.get_verified_deposit(opened.deposit_id)
        assert deposit is not None and deposit.balance == 1_001_000 - 50 * charge - (
            1_000 if deposit.withdrawal_amount == 0 else 0
        )
        replay = SettleBatch(
            chain_id=node.chain_id,
            sender=coordinator.address,
            nonce=client.next_nonce(coordinator.address),
            fee=params.min_fee,
            entries=entries[:3],
        )
        assert client.wait_for_tx(client.sign_and_send(coordinator, replay))["status"] == "committed"
        assert int(client.get_account(miner.address)["balance"]) == 50 * 3_000  # a replay pays nothing


def test_signed_mode_settles_only_jobs_the_client_signed_on_a_real_node(node_process: Any) -> None:
    """A signed-mode deposit on a real node: the entry carrying the owner's signature over the job request is
    paid; one without it, one signed by someone else and one whose max price is not what was signed are
    refused in the tx's events and their jobs stay unpaid."""
    node = node_process()
    with node.client() as client:
        owner, coordinator, miner, other = (KeyPair.generate() for _ in range(4))
        _fund(node, client, owner, coordinator)
        params = msgspec.convert(client.get_chain_info()["params"], ChainParams)
        opened = open_deposit(client, owner, coordinator.address, 1_000_000, mode="signed")
        expires = int(client.get_head()["height"]) + 100
        ids = [make_deposit_job_id(expires, os.urandom(8)) for _ in range(4)]
        receipts = [_receipt(node.chain_id, job_id, owner.address, coordinator, miner) for job_id in ids]

        def signed(r: Receipt, signer: KeyPair, max_price: int = 5_000) -> SettlementEntry:
            entry = SettlementEntry(deposit_id=opened.deposit_id, receipt=r, max_price=max_price)
            signature = sign_job_request(compute_job_request(entry), signer)
            return msgspec.structs.replace(entry, client_signature=signature)

        good = signed(receipts[0], owner)
        unsigned = SettlementEntry(deposit_id=opened.deposit_id, receipt=receipts[1], max_price=5_000)
        by_other = signed(receipts[2], other)
        raised = msgspec.structs.replace(signed(receipts[3], owner), max_price=6_000)  # not what the owner signed
        batch = SettleBatch(
            chain_id=node.chain_id,
            sender=coordinator.address,
            nonce=client.next_nonce(coordinator.address),
            fee=params.min_fee,
            entries=[good, unsigned, by_other, raised],
        )
        assert client.wait_for_tx(client.sign_and_send(coordinator, batch))["status"] == "committed"
        events = [e for e in client.iter_job_events(coordinator.address) if e["kind"] in ("settled", "settle_rejected")]
        assert [e["job_id"] for e in events if e["kind"] == "settled"] == [ids[0]]
        rejected = {e["job_id"]: e["reason"].split(":")[0] for e in events if e["kind"] == "settle_rejected"}
        assert rejected == {
            ids[1]: "missing_client_signature",
            ids[2]: "bad_client_signature",
            ids[3]: "bad_client_signature",
        }
        for job_id in ids[1:]:
            assert client.get_verified_paid_job(job_id)[0] is None
        deposit, _ = client.get_verified_deposit(opened.deposit_id)
        assert deposit is not None and deposit.balance == 1_000_000 - compute_job_charge(3_000, params)
        assert int(client.get_account(miner.address)["balance"]) == 3_000
