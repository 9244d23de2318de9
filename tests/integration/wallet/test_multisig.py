"""Multisig accounts on a real node, through the CLI: 2-of-3 spends commit, 1-of-3 is refused by the chain."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from wallet_harness import PASSPHRASE, ok, start_daemon, wallet_cli

from aitbc.client.wallet import WalletClient
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.tx import MultisigTransfer, add_multisig_approvals, sign_multisig_approval
from aitbc.wallet.store import WalletStore


def _address(out: str) -> str:
    return next(word for word in out.split() if word.startswith("ait1"))


def test_two_of_three_commits_one_of_three_rejected(node_process: Any, tmp_path: Path) -> None:
    node = node_process()
    rpc = node.rpc_url
    wallet_dir = tmp_path / "w"
    wd = ["--wallet-dir", str(wallet_dir)]
    members = {n: _address(ok(wallet_cli("wallet", "create", "-n", n, *wd))) for n in ("a", "b", "c")}
    with node.client() as client:
        node.fund(client, {members["a"]: 1_000_000})
        out = ok(
            wallet_cli(
                "wallet",
                "multisig",
                "create",
                "-n",
                "a",
                "-m",
                "2",
                *[arg for m in members.values() for arg in ("--member", m)],
                *wd,
                "--rpc",
                rpc,
            )
        )
        account = _address(out.split("2-of-3:")[1])
        info = client.get_account(account)
        assert info["multisig"]["threshold"] == 2 and sorted(info["multisig"]["members"]) == sorted(members.values())
        node.fund(client, {account: 5_000_000})
        dest = KeyPair.generate().address

        # propose; a signs from its keystore, b through the daemon (unlocked); the two copies are combined
        spend = tmp_path / "spend.json"
        ok(
            wallet_cli(
                "wallet",
                "multisig",
                "propose",
                "--account",
                account,
                "--to",
                dest,
                "--amount",
                "1.5",
                "--out",
                str(spend),
                "--rpc",
                rpc,
            )
        )
        copy_b = tmp_path / "spend-b.json"
        shutil.copy(spend, copy_b)
        ok(wallet_cli("wallet", "multisig", "sign", str(spend), "-n", "a", *wd))
        daemon = start_daemon(wallet_dir, rpc)
        try:
            with WalletClient(daemon.url, daemon.token) as wallet:
                wallet.unlock("b", PASSPHRASE)
            ok(wallet_cli("wallet", "multisig", "sign", str(copy_b), "-n", "b", *wd, passphrase=None))
        finally:
            assert daemon.stop() == 0
        out = ok(wallet_cli("wallet", "multisig", "send", str(spend), str(copy_b), "--rpc", rpc))
        assert "2 approval(s)" in out and "committed" in out
        assert client.get_account(dest)["balance"] == 1_500_000
        after = client.get_account(account)
        assert after["balance"] == 5_000_000 - 1_500_000 - 1_000 and after["nonce"] == 1

        # one approval of three: the chain refuses the spend, nothing moves
        lone = tmp_path / "lone.json"
        ok(
            wallet_cli(
                "wallet",
                "multisig",
                "propose",
                "--account",
                account,
                "--to",
                dest,
                "--amount",
                "1",
                "--out",
                str(lone),
                "--rpc",
                rpc,
            )
        )
        ok(wallet_cli("wallet", "multisig", "sign", str(lone), "-n", "c", *wd))
        refused = wallet_cli("wallet", "multisig", "send", str(lone), "--rpc", rpc)
        assert refused.returncode == 1
        assert "multisig_threshold_not_met" in refused.stderr
        assert client.get_account(dest)["balance"] == 1_500_000
        assert client.get_account(account)["nonce"] == 1

        # an outsider's approval does not count either, even with a member's beside it
        outsider = KeyPair.generate()
        tx = MultisigTransfer(chain_id=node.chain_id, sender=account, nonce=1, fee=1_000, recipient=dest, amount=1)
        member_c = WalletStore(wallet_dir).unlock("c", PASSPHRASE)
        forged = add_multisig_approvals(
            tx, [sign_multisig_approval(tx, outsider), sign_multisig_approval(tx, member_c)]
        )
        status = client.wait_for_tx(client.send_tx(forged))
        assert status["status"] == "rejected" and status["reason"] == "not_multisig_member"

    # the account survives a restart (stored, and part of the state root the node re-checks on load)
    node.restart()
    with node.client() as client:
        assert client.get_account(account)["multisig"]["threshold"] == 2
