"""``aitbc exchange`` end to end as real processes: the operator creates the Bitcoin key (xpub) and an
operator account, the exchange runs on the regtest RPC double, a user deposits over BIP84, withdraws, and
the operator signs the withdrawal PSBT with ``aitbc exchange withdrawals --key-file``."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pyotp
from exchange_harness import exchange_process, run_cli

from aitbc.client.exchange import ExchangeClient
from support.bitcoin_regtest import regtest_server


def test_operator_and_user_commands(tmp_path: Path) -> None:
    key_file = tmp_path / "btc-master.key"
    r = run_cli("exchange", "xpub", "--key-file", str(key_file), "--network", "regtest")
    assert r.returncode == 0, r.stderr
    xpub = re.search(r"AITBC_EXCHANGE_BITCOIN__XPUB='([^']+)'", r.stdout)
    assert xpub is not None and (key_file.stat().st_mode & 0o777) == 0o600
    data_dir = tmp_path / "exchange"
    r = run_cli(
        "exchange",
        "users",
        "create",
        "--data-dir",
        str(data_dir),
        "--username",
        "op",
        "--password",
        "operator password",
        "--operator",
    )
    assert r.returncode == 0, r.stderr
    with regtest_server() as (chain, rpc_url, _):
        env = {
            "AITBC_EXCHANGE_BITCOIN__XPUB": xpub.group(1),
            "AITBC_EXCHANGE_BITCOIN__RPC_URL": rpc_url,
            "AITBC_EXCHANGE_BITCOIN__CONFIRMATIONS": "1",
            "AITBC_EXCHANGE_BITCOIN__POLL_SECONDS": "0.2",
            "AITBC_EXCHANGE_PASSWORD_MEMLIMIT": str(8 * 1024 * 1024),
            "AITBC_EXCHANGE_PASSWORD_OPSLIMIT": "1",
        }
        with exchange_process(data_dir, env) as url:
            anon = ExchangeClient(url)
            anon._request("POST", "/api/v1/users", json={"username": "alice", "password": "alice password"})
            token = anon.login("alice", "alice password")["token"]
            alice = ExchangeClient(url, token)
            address = alice._request("POST", "/api/v1/deposits", json={"amount": 300_000})["address"]
            chain.send(address, 300_000)
            chain.mine(1)
            deadline = time.monotonic() + 20
            while alice.balances()["BTC"]["available"] != 300_000:
                assert time.monotonic() < deadline, "deposit not credited"
                time.sleep(0.2)
            r = run_cli("exchange", "balances", "--url", url, "--token", token)
            assert r.returncode == 0 and "300000" in r.stdout
            r = run_cli(
                "exchange", "order", "buy", "--quantity", "1000000", "--price", "1000", "--url", url, "--token", token
            )
            assert r.returncode == 0 and "open" in r.stdout, r.stderr
            r = run_cli("exchange", "orders", "--url", url, "--token", token)
            assert r.returncode == 0 and "1000000" in r.stdout
            order_id = alice.orders()[0]["order_id"]
            assert run_cli("exchange", "cancel", str(order_id), "--url", url, "--token", token).returncode == 0
            r = run_cli(
                "exchange", "order", "buy", "--quantity", "0", "--price", "1000", "--url", url, "--token", token
            )
            assert r.returncode == 1 and "non_positive_quantity" in r.stderr
            # a withdrawal waits for the operator's signature
            secret = alice._request("POST", "/api/v1/2fa/setup")["secret"]
            alice._request("POST", "/api/v1/2fa/enable", json={"code": pyotp.TOTP(secret).at(time.time() - 30)})
            w = alice._request(
                "POST",
                "/api/v1/withdrawals",
                json={
                    "asset": "BTC",
                    "address": chain.faucet_script.address(__import__("embit.networks").networks.NETWORKS["regtest"]),
                    "amount": 100_000,
                    "totp": pyotp.TOTP(secret).now(),
                },
            )
            assert w["status"] == "awaiting_signature"
            r = run_cli("exchange", "login", "--username", "op", "--password", "operator password", "--url", url)
            assert r.returncode == 0, r.stderr
            op_token = r.stdout.strip()
            r = run_cli("exchange", "withdrawals", "--url", url, "--token", op_token, "--key-file", str(key_file))
            assert r.returncode == 0 and "signed and broadcast" in r.stdout, r.stdout + r.stderr
            assert any(tx.txid().hex() == w["txid"] for tx in chain.mempool)
        r = run_cli("exchange", "users", "list", "--data-dir", str(data_dir))
        assert r.returncode == 0 and "alice" in r.stdout and "op" in r.stdout
