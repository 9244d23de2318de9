"""BTC deposits and withdrawals against the regtest RPC double (real blocks and transactions, embit):
credit after N confirmations and not before, a reorg reverses the credit, withdrawal PSBTs spend only
exchange outputs and pay the requested address, 2FA and network checks — through Core RPC and Esplora."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from embit import bip32, bip39, ec, script
from embit.networks import NETWORKS
from exchange_harness import AIT, Harness, running, settings_for

from aitbc.exchange.bitcoin.psbt import parse_psbt, sign_psbt
from aitbc.exchange.db import schema
from support.bitcoin_regtest import RegtestChain, regtest_server

REGTEST = NETWORKS["regtest"]
MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
ROOT = bip32.HDKey.from_seed(bip39.mnemonic_to_seed(MNEMONIC), version=REGTEST["xprv"])
ACCOUNT_XPUB = ROOT.derive("m/84h/1h/0h").to_public().to_string()
XPUB = f"[{ROOT.my_fingerprint.hex()}/84h/1h/0h]{ACCOUNT_XPUB}"
OUTSIDER = script.p2wpkh(ec.PrivateKey(b"\x07" * 32).get_public_key()).address(REGTEST)
CONFS = 3


@pytest.fixture(params=["core", "esplora"])
def btc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Harness, RegtestChain]]:
    with regtest_server() as (chain, rpc_url, esplora_url):
        bitcoin = {
            "xpub": XPUB,
            "backend": request.param,
            "rpc_url": rpc_url,
            "esplora_url": esplora_url,
            "confirmations": CONFS,
            "poll_seconds": 3600,
            "min_withdrawal_sat": 10_000,
        }
        if "hot" in request.node.name:
            key_file = tmp_path / "hot.key"
            key_file.write_text(ROOT.to_string())
            bitcoin |= {"hot_key_file": str(key_file), "hot_limit_sat": 60_000}
        with running(settings_for(tmp_path / "ex", bitcoin=bitcoin)) as h:
            yield h, chain


def poll(h: Harness) -> None:
    h.run(h.service.bitcoin.poll())


def deposit(h: Harness, chain: RegtestChain, user: dict[str, Any], amount: int) -> str:
    r = h.client.post("/api/v1/deposits", json={"amount": amount, "label": "AITBC exchange"}, headers=user["h"])
    assert r.status_code == 201, r.text
    address = r.json()["address"]
    txid = chain.send(address, amount)
    return txid


def test_deposit_address_uri_and_qr(btc: tuple[Harness, RegtestChain]) -> None:
    h, _ = btc
    alice = h.user("alice")
    r = h.client.post("/api/v1/deposits", json={"amount": 150_000, "label": "my deposit"}, headers=alice["h"])
    body = r.json()
    expected = script.p2wpkh(ROOT.derive(f"m/84h/1h/0h/0/{alice['id']}").key).address(REGTEST)
    assert body["address"] == expected and body["address"].startswith("bcrt1q")
    assert body["uri"] == f"bitcoin:{expected}?amount=0.0015&label=my%20deposit"
    svg = h.client.get(body["qr_svg"], headers=alice["h"])
    assert svg.status_code == 200 and b"<svg" in svg.content
    png = h.client.get(body["qr_png"], headers=alice["h"])
    assert png.content[:4] == b"\x89PNG"
    bob = h.user("bob")
    other = h.client.post("/api/v1/deposits", json={}, headers=bob["h"]).json()
    assert other["address"] != expected and other["uri"] == f"bitcoin:{other['address']}"


def test_deposit_credited_after_n_confirmations_and_not_before(btc: tuple[Harness, RegtestChain]) -> None:
    h, chain = btc
    alice = h.user("alice")
    deposit(h, chain, alice, 150_000)
    poll(h)
    assert h.balances(alice)["BTC"]["available"] == 0  # in the mempool only
    for confirmations in range(1, CONFS):
        chain.mine(1)
        poll(h)
        listed = h.client.get("/api/v1/deposits", headers=alice["h"]).json()["deposits"]
        assert listed[0]["confirmations"] == confirmations and listed[0]["status"] == "seen"
        assert h.balances(alice)["BTC"]["available"] == 0
    chain.mine(1)
    poll(h)
    assert h.balances(alice)["BTC"] == {"available": 150_000, "held": 0}
    assert h.client.get("/api/v1/deposits", headers=alice["h"]).json()["deposits"][0]["status"] == "credited"
    chain.mine(2)
    poll(h)  # credited once only
    assert h.balances(alice)["BTC"]["available"] == 150_000


def test_reorg_reverses_the_credit_and_the_trade_stands(btc: tuple[Harness, RegtestChain]) -> None:
    h, chain = btc
    alice, bob = h.user("alice"), h.user("bob")
    h.fund(bob, ait=10 * AIT)
    deposit(h, chain, alice, 100_000)
    chain.mine(CONFS)
    poll(h)
    assert h.balances(alice)["BTC"]["available"] == 100_000
    # alice spends part of it on AITBC and leaves an open bid with the rest
    h.client.post("/api/v1/orders", json={"side": "sell", "quantity": 2 * AIT, "price": 30_000}, headers=bob["h"])
    r = h.client.post("/api/v1/orders", json={"side": "buy", "quantity": 2 * AIT, "price": 30_000}, headers=alice["h"])
    assert r.json()["status"] == "filled"
    h.client.post("/api/v1/orders", json={"side": "buy", "quantity": AIT, "price": 20_000}, headers=alice["h"])
    # the deposit's block is orphaned (the branch that wins does not have the transaction)
    chain.reorg(CONFS, extra=1)
    poll(h)
    assert h.balances(alice)["BTC"] == {"available": 100_000 - 60_000 - 100_000, "held": 0}
    assert h.balances(bob)["BTC"]["available"] == 60_000  # the trade stands (bob was the maker: no fee)
    me = h.client.get("/api/v1/users/me", headers=alice["h"]).json()
    assert me["in_debt"] is True
    assert h.client.get("/api/v1/orders", headers=alice["h"]).json()["orders"] == []
    assert h.client.get("/api/v1/deposits", headers=alice["h"]).json()["deposits"][0]["status"] == "reversed"


def enable_2fa(h: Harness, user: dict[str, Any]) -> pyotp.TOTP:
    secret = h.client.post("/api/v1/2fa/setup", headers=user["h"]).json()["secret"]
    totp = pyotp.TOTP(secret)
    # the previous step's code (still accepted for clock skew), so the next two steps stay usable
    code = totp.at(time.time() - 30)
    assert h.client.post("/api/v1/2fa/enable", json={"code": code}, headers=user["h"]).status_code == 200
    return totp


def test_withdrawal_psbt_spends_only_exchange_outputs(btc: tuple[Harness, RegtestChain]) -> None:
    h, chain = btc
    alice = h.user("alice")
    deposit(h, chain, alice, 200_000)
    chain.mine(CONFS)
    poll(h)
    body = {"asset": "BTC", "address": OUTSIDER, "amount": 50_000}
    r = h.client.post("/api/v1/withdrawals", json=body | {"totp": "123456"}, headers=alice["h"])
    assert r.status_code == 403 and r.json()["error"]["reason"] == "2fa_required"
    totp = enable_2fa(h, alice)
    before = h.balances(alice)
    # bad input: wrong network, wrong code, replayed code -> 4xx and no balance change
    for addr in ("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"):
        r = h.client.post("/api/v1/withdrawals", json=body | {"address": addr, "totp": totp.now()}, headers=alice["h"])
        assert r.status_code == 400 and r.json()["error"]["reason"] == "wrong_network", r.text
    wrong = "000000" if totp.now() != "000000" else "111111"
    r = h.client.post("/api/v1/withdrawals", json=body | {"totp": wrong}, headers=alice["h"])
    assert r.status_code == 401 and r.json()["error"]["reason"] == "totp_invalid"
    r = h.client.post("/api/v1/withdrawals", json=body | {"totp": totp.at(time.time() - 30)}, headers=alice["h"])
    assert r.status_code == 401 and r.json()["error"]["reason"] == "totp_replayed"
    assert h.balances(alice) == before
    r = h.client.post("/api/v1/withdrawals", json=body | {"totp": totp.now()}, headers=alice["h"])
    assert r.status_code == 201, r.text
    w = r.json()
    fee = w["fee"]
    assert w["status"] == "awaiting_signature" and fee == (11 + 68 + 2 * 43) * 12
    assert h.balances(alice)["BTC"] == {"available": 200_000 - 50_000 - fee, "held": 50_000 + fee}
    # the operator reviews and signs offline
    h.service.accounts.create_user("operator", h.service.accounts.hash_password("operator password!"), is_operator=True)
    op = h.client.post("/api/v1/sessions", json={"username": "operator", "password": "operator password!"}).json()
    op_h = {"Authorization": f"Bearer {op['token']}"}
    assert h.client.get("/api/v1/operator/withdrawals", headers=alice["h"]).status_code == 403
    pending = h.client.get("/api/v1/operator/withdrawals", headers=op_h).json()["withdrawals"]
    psbt = parse_psbt(pending[0]["psbt"])
    ours = {(r.txid, r.vout) for r in h.service.store.fetch_all(sa.select(schema.btc_utxos))}
    assert all((inp.txid.hex(), inp.vout) in ours for inp in psbt.tx.vin)
    assert psbt.tx.vout[0].value == 50_000
    assert psbt.tx.vout[0].script_pubkey == script.address_to_scriptpubkey(OUTSIDER)
    assert sum(i.witness_utxo.value for i in psbt.inputs) - sum(o.value for o in psbt.tx.vout) == fee
    assert sign_psbt(psbt, ROOT) == len(psbt.inputs)
    for i, inp in enumerate(psbt.inputs):  # each signature verifies for its input's key and BIP143 digest
        ((pub, sig),) = inp.partial_sigs.items()
        digest = psbt.tx.sighash_segwit(i, script.p2pkh(pub), inp.witness_utxo.value)
        assert pub.verify(ec.Signature.parse(sig[:-1]), digest)
    r = h.client.post(f"/api/v1/operator/withdrawals/{w['ref']}/signed", json={"psbt": psbt.to_string()}, headers=op_h)
    assert r.status_code == 200 and r.json()["status"] == "broadcast"
    assert any(tx.txid().hex() == w["txid"] for tx in chain.mempool)
    chain.mine(CONFS)
    poll(h)
    assert h.balances(alice)["BTC"] == {"available": 200_000 - 50_000 - fee, "held": 0}
    assert h.service.engine.ledger.withdrawals["BTC"] == 50_000 + fee
    assert h.client.get("/api/v1/withdrawals", headers=alice["h"]).json()["withdrawals"][0]["status"] == "confirmed"


@pytest.mark.parametrize("btc", ["core"], indirect=True)
def test_hot_key_signs_small_withdrawals(btc: tuple[Harness, RegtestChain]) -> None:
    h, chain = btc
    assert h.service.bitcoin.hot_key is not None
    alice = h.user("alice")
    deposit(h, chain, alice, 200_000)
    deposit(h, chain, alice, 200_000)  # two coins: the first withdrawal reserves one until its change confirms
    chain.mine(CONFS)
    poll(h)
    totp = enable_2fa(h, alice)
    body = {"asset": "BTC", "address": OUTSIDER, "amount": 50_000, "totp": totp.now()}
    r = h.client.post("/api/v1/withdrawals", json=body, headers=alice["h"])
    assert r.status_code == 201 and r.json()["status"] == "broadcast"
    body = body | {"amount": 100_000, "totp": totp.at(time.time() + 30)}
    r = h.client.post("/api/v1/withdrawals", json=body, headers=alice["h"])
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "awaiting_signature"  # above the hot limit: the operator signs


def test_reorg_that_reincludes_the_deposit_credits_it_again(btc: tuple[Harness, RegtestChain]) -> None:
    h, chain = btc
    alice = h.user("alice")
    deposit(h, chain, alice, 70_000)
    chain.mine(CONFS)
    poll(h)
    assert h.balances(alice)["BTC"]["available"] == 70_000
    old_block = h.service.store.fetch_one(sa.select(schema.deposits.c.block_hash)).block_hash
    # the deposit's block is orphaned but the new branch mines the same transaction again
    chain.reorg(CONFS, extra=1, keep_txs=True)
    poll(h)  # reversed with the old block, seen again in the new one, which already has N confirmations
    assert h.balances(alice)["BTC"]["available"] == 70_000
    assert h.service.metrics.reversals.labels("BTC")._value.get() == 1
    row = h.service.store.fetch_one(sa.select(schema.deposits))
    assert row.block_hash != old_block and row.status == "credited"
    deposits = h.client.get("/api/v1/deposits", headers=alice["h"]).json()["deposits"]
    assert len(deposits) == 1 and deposits[0]["status"] == "credited"
    assert h.service.engine.ledger.deposits["BTC"] == 70_000


def operator(h: Harness) -> dict[str, str]:
    accounts = h.service.accounts
    accounts.create_user("operator", accounts.hash_password("operator password!"), is_operator=True)
    op = h.client.post("/api/v1/sessions", json={"username": "operator", "password": "operator password!"}).json()
    return {"Authorization": f"Bearer {op['token']}"}


@pytest.mark.parametrize("amount", [0, -5, 2**70, 9_999])
def test_bad_withdrawal_amounts_change_nothing(btc: tuple[Harness, RegtestChain], amount: int) -> None:
    h, chain = btc
    alice = h.user("alice")
    deposit(h, chain, alice, 200_000)
    chain.mine(CONFS)
    poll(h)
    totp = enable_2fa(h, alice)
    before, state = h.balances(alice), h.state()
    body = {"asset": "BTC", "address": OUTSIDER, "amount": amount, "totp": totp.now()}
    r = h.client.post("/api/v1/withdrawals", json=body, headers=alice["h"])
    assert r.status_code == 400, r.text
    assert r.json()["error"]["reason"] in ("non_positive_amount", "amount_too_large", "amount_too_small")
    assert h.balances(alice) == before and h.state() == state
    # the code was not spent on a refused request
    r = h.client.post("/api/v1/withdrawals", json=body | {"amount": 20_000}, headers=alice["h"])
    assert r.status_code == 201, r.text


def test_operator_cancels_a_pending_withdrawal(btc: tuple[Harness, RegtestChain]) -> None:
    h, chain = btc
    alice = h.user("alice")
    deposit(h, chain, alice, 200_000)
    chain.mine(CONFS)
    poll(h)
    totp = enable_2fa(h, alice)
    body = {"asset": "BTC", "address": OUTSIDER, "amount": 150_000, "totp": totp.now()}
    w = h.client.post("/api/v1/withdrawals", json=body, headers=alice["h"]).json()
    assert h.balances(alice)["BTC"]["held"] == 150_000 + w["fee"]
    op_h = operator(h)
    r = h.client.post(f"/api/v1/operator/withdrawals/{w['ref']}/cancel", headers=op_h)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert h.balances(alice)["BTC"] == {"available": 200_000, "held": 0}
    assert h.client.post(f"/api/v1/operator/withdrawals/{w['ref']}/cancel", headers=op_h).status_code == 403
    # the coin is free again for the next withdrawal
    r = h.client.post("/api/v1/withdrawals", json=body | {"totp": totp.at(time.time() + 30)}, headers=alice["h"])
    assert r.status_code == 201, r.text


def test_a_backend_fee_estimate_above_the_cap_is_refused(btc: tuple[Harness, RegtestChain]) -> None:
    h, chain = btc
    alice = h.user("alice")
    deposit(h, chain, alice, 200_000)
    chain.mine(CONFS)
    poll(h)
    totp = enable_2fa(h, alice)
    chain.fee_rate = Decimal("0.05")  # 5,000 sat/vB: a lying (or panicking) backend
    before = h.balances(alice)
    body = {"asset": "BTC", "address": OUTSIDER, "amount": 50_000, "totp": totp.now()}
    r = h.client.post("/api/v1/withdrawals", json=body, headers=alice["h"])
    assert r.status_code == 400 and r.json()["error"]["reason"] == "fee_too_high"
    assert h.balances(alice) == before
