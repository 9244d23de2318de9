"""AITBC deposits and withdrawals against a real node (``aitbc node run``): a transfer with the user's memo
is credited once committed, a wrong memo is held, a withdrawal is a transfer signed by the exchange key and
completes when committed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyotp
from exchange_harness import AIT, Harness, running, settings_for

from aitbc.client.node import NodeClient
from aitbc.protocol.crypto import KeyPair
from aitbc.runtime.keyfile import write_keyfile


def poll_until(h: Harness, check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        h.run(h.service.aitbc.poll())
        if check():
            return
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_aitbc_deposit_and_withdrawal_on_a_real_node(node_process: Any, tmp_path: Path) -> None:
    node = node_process()
    client = node.client()
    exchange_key = KeyPair.generate()
    key_file = tmp_path / "exchange.key"
    write_keyfile(key_file, exchange_key)
    aitbc = {"node_url": node.rpc_url, "key_file": str(key_file), "poll_seconds": 3600, "withdrawal_fee": 1_000}
    with running(settings_for(tmp_path / "ex", aitbc=aitbc)) as h:
        alice = h.user("alice")
        info = h.client.post("/api/v1/deposits", json={"asset": "AITBC"}, headers=alice["h"]).json()
        assert info["address"] == exchange_key.address and info["memo"].startswith(f"aitbcx-{alice['id']}-")
        nonce = client.next_nonce(node.faucet.address)
        good = client.send_tx(node.transfer(node.faucet, info["address"], 5 * AIT, nonce, memo=info["memo"]))
        wrong = client.send_tx(node.transfer(node.faucet, info["address"], AIT, nonce + 1, memo="aitbcx-1-000000"))
        node.wait_committed(client, [good, wrong])
        poll_until(h, lambda: h.balances(alice)["AITBC"]["available"] == 5 * AIT)
        deposits = {d["txid"]: d for d in h.client.get("/api/v1/deposits", headers=alice["h"]).json()["deposits"]}
        assert deposits[good]["status"] == "credited" and wrong not in deposits
        h.run(h.service.aitbc.poll())  # a second scan credits nothing twice
        assert h.balances(alice)["AITBC"]["available"] == 5 * AIT
        # withdraw 2 AITBC to a fresh address, 2FA on
        secret = h.client.post("/api/v1/2fa/setup", headers=alice["h"]).json()["secret"]
        totp = pyotp.TOTP(secret)
        assert (
            h.client.post(
                "/api/v1/2fa/enable", json={"code": totp.at(time.time() - 30)}, headers=alice["h"]
            ).status_code
            == 200
        )
        bad = h.client.post(
            "/api/v1/withdrawals",
            json={"asset": "AITBC", "address": "bcrt1qnotanaitbcaddress", "amount": AIT, "totp": totp.now()},
            headers=alice["h"],
        )
        assert bad.status_code == 400 and bad.json()["error"]["reason"] == "invalid_address"
        target = KeyPair.generate().address
        r = h.client.post(
            "/api/v1/withdrawals",
            json={"asset": "AITBC", "address": target, "amount": 2 * AIT, "totp": totp.now()},
            headers=alice["h"],
        )
        assert r.status_code == 201, r.text
        assert h.balances(alice)["AITBC"] == {"available": 3 * AIT - 1_000, "held": 2 * AIT + 1_000}
        node.wait_committed(client, [r.json()["txid"]])
        poll_until(h, lambda: h.balances(alice)["AITBC"]["held"] == 0)
        assert int(client.get_account(target)["balance"]) == 2 * AIT
        assert h.service.engine.ledger.withdrawals["AITBC"] == 2 * AIT + 1_000
        listed = h.client.get("/api/v1/withdrawals", headers=alice["h"]).json()["withdrawals"]
        assert listed[0]["status"] == "confirmed"


TIMEOUT_ARGS = ["--timeout-propose-ms", "600", "--timeout-vote-ms", "300", "--timeout-delta-ms", "300"]


def test_aitbc_deposit_credited_at_bft_finality(tmp_path: Path) -> None:
    """Four validators (BFT): the deposit is credited from a block the node holds a commit certificate for."""
    from exchange_harness import free_port

    from aitbc.devnet.network import ValidatorNetwork
    from aitbc.protocol.tx import Transfer, sign_tx

    payer, exchange_key = KeyPair.generate(), KeyPair.generate()
    ports = [(free_port(), free_port(), free_port()) for _ in range(4)]
    net = ValidatorNetwork(tmp_path / "net", 4, ports=ports, extra_args=[*TIMEOUT_ARGS, "--log-level", "warning"])
    net.prepare(block_time_ms=300, extra_balances={payer.address: 100 * AIT})
    try:
        net.start()
        client = NodeClient(net.nodes[0].rpc_url)
        assert client.get_chain_info()["consensus"] == "bft"
        key_file = tmp_path / "exchange.key"
        write_keyfile(key_file, exchange_key)
        aitbc = {"node_url": net.nodes[0].rpc_url, "key_file": str(key_file), "poll_seconds": 3600}
        with running(settings_for(tmp_path / "ex", aitbc=aitbc)) as h:
            alice = h.user("alice")
            memo = h.client.post("/api/v1/deposits", json={"asset": "AITBC"}, headers=alice["h"]).json()["memo"]
            chain_id = client.get_chain_info()["chain_id"]
            tx = sign_tx(
                Transfer(
                    chain_id=chain_id,
                    sender=payer.address,
                    nonce=client.next_nonce(payer.address),
                    fee=1_000,
                    recipient=exchange_key.address,
                    amount=7 * AIT,
                    memo=memo,
                ),
                payer,
            )
            status = client.wait_for_tx(client.send_tx(tx), timeout=60)
            assert status["status"] == "committed"
            poll_until(h, lambda: h.balances(alice)["AITBC"]["available"] == 7 * AIT, timeout=60)
            block = client.get_block(status["height"], False)
            assert block["commit"] is not None and len(block["commit"]["signatures"]) >= 3
    finally:
        net.stop()
