"""The wallet daemon against a real node: create, unlock, send, balance; lock; token; loopback; rate limit."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from wallet_harness import PASSPHRASE, DaemonFactory, ok, run_cli, wallet_cli

from aitbc.client.node import NodeClient
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import RemoteError
from aitbc.protocol.tx import Transfer, tx_from_json_obj, tx_to_json_obj, verify_tx
from support.ports import free_port

FEE = 1_000


def _create(wallet_dir: Path, name: str, passphrase: str = PASSPHRASE) -> str:
    out = ok(wallet_cli("wallet", "create", "--name", name, "--wallet-dir", str(wallet_dir), passphrase=passphrase))
    return next(word for word in out.split() if word.startswith("ait1"))


def test_create_unlock_send_balance(
    wallet_daemon: DaemonFactory, shared_node: Any, client: NodeClient, tmp_path: Path
) -> None:
    wallet_dir = tmp_path / "w"
    alice = _create(wallet_dir, "alice")
    keystore = wallet_dir / "alice.json"
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    shared_node.fund(client, {alice: 5_000_000})
    daemon = wallet_daemon(wallet_dir=wallet_dir)
    bob = KeyPair.generate().address
    with daemon.client() as wallet:
        assert [w["name"] for w in wallet.list_wallets()] == ["alice"]
        unlocked = wallet.unlock("alice", PASSPHRASE, timeout_s=120)
        assert unlocked["address"] == alice
        sent = wallet.send("alice", bob, 1_234, FEE, memo="hi", wait=True)
        assert sent["status"] == "committed", sent
        assert client.get_account(bob)["balance"] == 1_234
        assert wallet.balance("alice")["balance"] == 5_000_000 - 1_234 - FEE
        # a second send takes the next nonce by itself
        again = wallet.send("alice", bob, 1, FEE, wait=True)
        assert again["nonce"] == sent["nonce"] + 1
    # the CLI goes through the daemon (it holds alice unlocked), and reads the same balance
    out = ok(
        wallet_cli(
            "wallet",
            "send",
            "-n",
            "alice",
            "--to",
            bob,
            "--amount",
            "0.000002",
            "--wallet-dir",
            str(wallet_dir),
            passphrase=None,
        )
    )
    assert "committed" in out
    assert client.get_account(bob)["balance"] == 1_237
    out = ok(wallet_cli("wallet", "balance", "-n", "alice", "--wallet-dir", str(wallet_dir)))
    assert alice in out
    listing = ok(wallet_cli("wallet", "list", "--wallet-dir", str(wallet_dir)))
    assert "alice" in listing and "yes" in listing


def test_cli_without_daemon_signs_from_keystore(shared_node: Any, client: NodeClient, tmp_path: Path) -> None:
    wallet_dir = tmp_path / "w"
    carol = _create(wallet_dir, "carol")
    shared_node.fund(client, {carol: 1_000_000})
    dest = KeyPair.generate().address
    rpc = shared_node.rpc_url
    bad = wallet_cli(
        "wallet",
        "send",
        "-n",
        "carol",
        "--to",
        dest,
        "--amount",
        "0.5",
        "--wallet-dir",
        str(wallet_dir),
        "--rpc",
        rpc,
        passphrase="nope",
    )
    assert bad.returncode == 1 and "wrong_passphrase" in bad.stderr
    ok(
        wallet_cli(
            "wallet",
            "send",
            "-n",
            "carol",
            "--to",
            dest,
            "--amount",
            "0.5",
            "--wallet-dir",
            str(wallet_dir),
            "--rpc",
            rpc,
        )
    )
    assert client.get_account(dest)["balance"] == 500_000
    # a passphrase file works as well (no environment variable, no prompt)
    pw_file = tmp_path / "pw"
    pw_file.write_text(PASSPHRASE + "\n")
    ok(
        wallet_cli(
            "wallet",
            "send",
            "-n",
            "carol",
            "--to",
            dest,
            "--amount",
            "0.25",
            "--wallet-dir",
            str(wallet_dir),
            "--rpc",
            rpc,
            "--passphrase-file",
            str(pw_file),
            passphrase=None,
        )
    )
    assert client.get_account(dest)["balance"] == 750_000
    out = ok(wallet_cli("wallet", "balance", "-n", "carol", "--wallet-dir", str(wallet_dir), "--rpc", rpc))
    assert "0.248" in out  # 1 - 0.5 - 0.25 - two fees of 0.001


def test_lock_and_timeout_clear_the_key(wallet_daemon: DaemonFactory, tmp_path: Path, client: NodeClient) -> None:
    wallet_dir = tmp_path / "w"
    address = _create(wallet_dir, "dave")
    daemon = wallet_daemon(wallet_dir=wallet_dir)
    tx = tx_to_json_obj(
        Transfer(
            chain_id=client.get_chain_info()["chain_id"], sender=address, nonce=0, fee=FEE, recipient=address, amount=1
        )
    )
    with daemon.client() as wallet:
        with pytest.raises(RemoteError) as exc:
            wallet.sign_tx("dave", tx)
        assert exc.value.code == 409 and exc.value.reason == "wallet_locked"
        wallet.unlock("dave", PASSPHRASE)
        signed = wallet.sign_tx("dave", tx)["tx"]
        verify_tx(tx_from_json_obj(signed))
        wallet.lock("dave")
        with pytest.raises(RemoteError) as exc:
            wallet.sign_tx("dave", tx)
        assert exc.value.reason == "wallet_locked"
        # an unlock with a short timeout is wiped by the daemon's timer
        wallet.unlock("dave", PASSPHRASE, timeout_s=0.3)
        deadline = time.monotonic() + 10
        while any(w["unlocked"] for w in wallet.list_wallets()):
            assert time.monotonic() < deadline, "key still unlocked long after its timeout"
            time.sleep(0.1)
        with pytest.raises(RemoteError) as exc:
            wallet.sign_tx("dave", tx)
        assert exc.value.reason == "wallet_locked"
        # JSON-RPC sees the same
        with pytest.raises(RemoteError) as exc:
            wallet.rpc("wallet.sign_tx", {"name": "dave", "tx": tx})
        assert exc.value.code == -32012 and exc.value.reason == "wallet_locked"


def test_requests_without_token_are_401(wallet_daemon: DaemonFactory) -> None:
    daemon = wallet_daemon()
    token_file = daemon.wallet_dir / "daemon.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert httpx.get(f"{daemon.url}/healthz").status_code == 200
    for method, path, body in [
        ("GET", "/v1/wallets", None),
        ("POST", "/v1/wallets", {"name": "x", "passphrase": "p"}),
        ("POST", "/v1/wallets/x/unlock", {"passphrase": "p"}),
        ("POST", "/v1/wallets/x/sign", {"tx": {}}),
        ("POST", "/v1/wallets/x/send", {"to": "x", "amount": 1, "fee": 1}),
        ("POST", "/rpc", {"jsonrpc": "2.0", "method": "wallet.list", "id": 1}),
    ]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {daemon.token}"}):
            response = httpx.request(method, daemon.url + path, json=body, headers=headers)
            assert response.status_code == 401, (path, headers, response.text)
            assert response.json()["error"]["reason"] == "unauthorized"
    with daemon.client(token="nope") as wallet, pytest.raises(RemoteError) as exc:
        wallet.list_wallets()
    assert exc.value.code == 401
    # the OpenAPI document describes the REST API
    paths = httpx.get(f"{daemon.url}/openapi.json").json()["paths"]
    assert {"/v1/wallets", "/v1/wallets/{name}/unlock", "/v1/wallets/{name}/send", "/rpc"} <= set(paths)
    assert "aitbc_wallet_unlocked_keys" in httpx.get(f"{daemon.url}/metrics").text


def test_refuses_non_loopback_unless_forced(tmp_path: Path) -> None:
    port = str(free_port())
    refused = run_cli("wallet", "daemon", "--wallet-dir", str(tmp_path / "w"), "--host", "0.0.0.0", "--port", port)
    assert refused.returncode == 1
    assert "not_loopback" in refused.stderr and "refusing" in refused.stderr
    assert not (tmp_path / "w" / "daemon.token").exists()
    # forced, it binds (and stops cleanly on SIGTERM)
    from wallet_harness import start_daemon

    forced = start_daemon(tmp_path / "f", None, "--host", "0.0.0.0", "--force", "--insecure-http")
    try:
        assert httpx.get(f"{forced.url}/healthz").status_code == 200
    finally:
        assert forced.stop() == 0
    assert not (tmp_path / "f" / "daemon.token").exists()  # removed on shutdown


def test_failed_unlocks_are_rate_limited(wallet_daemon: DaemonFactory, tmp_path: Path) -> None:
    wallet_dir = tmp_path / "w"
    _create(wallet_dir, "erin")
    daemon = wallet_daemon("--max-failed-unlocks", "3", wallet_dir=wallet_dir)
    with daemon.client() as wallet:
        for _ in range(3):
            with pytest.raises(RemoteError) as exc:
                wallet.unlock("erin", "guess")
            assert exc.value.code == 403 and exc.value.reason == "wrong_passphrase"
        with pytest.raises(RemoteError) as exc:
            wallet.unlock("erin", PASSPHRASE)  # even the right one: the window is closed
        assert exc.value.code == 429 and exc.value.reason == "rate_limited"
        with pytest.raises(RemoteError) as exc:
            wallet.rpc("wallet.unlock", {"name": "erin", "passphrase": PASSPHRASE})
        assert exc.value.code == -32013


def test_json_rpc_methods(wallet_daemon: DaemonFactory, shared_node: Any, client: NodeClient) -> None:
    daemon = wallet_daemon()
    with daemon.client() as wallet:
        created = wallet.rpc("wallet.create", {"name": "frank", "passphrase": PASSPHRASE})
        assert created["address"].startswith("ait1")
        with pytest.raises(RemoteError) as exc:
            wallet.rpc("wallet.create", {"name": "frank", "passphrase": PASSPHRASE})
        assert exc.value.reason == "wallet_exists"
        assert [w["name"] for w in wallet.rpc("wallet.list")["wallets"]] == ["frank"]
        with pytest.raises(RemoteError) as exc:
            wallet.rpc("wallet.unlock", ["frank", "wrong"])
        assert exc.value.code == -32011
        wallet.rpc("wallet.unlock", ["frank", PASSPHRASE, 60])
        shared_node.fund(client, {created["address"]: 100_000})
        dest = KeyPair.generate().address
        sent = wallet.rpc("wallet.send", {"name": "frank", "to": dest, "amount": 7, "fee": FEE, "wait": True})
        assert sent["status"] == "committed"
        assert wallet.rpc("wallet.balance", {"name": "frank"})["balance"] == 100_000 - 7 - FEE
        with pytest.raises(RemoteError) as exc:  # the node refuses: the reason comes through
            wallet.rpc("wallet.send", {"name": "frank", "to": dest, "amount": 10**9, "fee": FEE})
        assert exc.value.code == -32001 and exc.value.reason == "insufficient_balance"
        with pytest.raises(RemoteError) as exc:
            wallet.rpc("wallet.nope")
        assert exc.value.code == -32601
        with pytest.raises(RemoteError) as exc:
            wallet.rpc("wallet.send", {"name": "frank", "to": 5})
        assert exc.value.code == -32602
        assert wallet.rpc("wallet.lock", {"name": "frank"}) == {"locked": ["frank"]}
        with pytest.raises(RemoteError) as exc:
            wallet.rpc("wallet.balance", {"name": "ghost"})
        assert exc.value.code == -32004
    response = httpx.post(f"{daemon.url}/rpc", content=b"{nope", headers={"Authorization": f"Bearer {daemon.token}"})
    assert response.json()["error"]["code"] == -32700
    auth = {"Authorization": f"Bearer {daemon.token}"}
    call = {"jsonrpc": "2.0", "method": "wallet.list", "id": 1}
    replies = httpx.post(f"{daemon.url}/rpc", json=[call, {**call, "id": 2}, {"jsonrpc": "1.0"}], headers=auth).json()
    assert [r.get("id") for r in replies] == [1, 2, None] and replies[2]["error"]["code"] == -32600
    too_many = httpx.post(f"{daemon.url}/rpc", json=[call] * 101, headers=auth).json()
    assert too_many["error"]["code"] == -32600
    assert daemon.proc.poll() is None


def test_export_import_change_passphrase(tmp_path: Path) -> None:
    wallet_dir = tmp_path / "w"
    address = _create(wallet_dir, "gina")
    refused = wallet_cli("wallet", "export", "-n", "gina", "--wallet-dir", str(wallet_dir))
    assert refused.returncode == 1 and "--show-seed or --mnemonic" in refused.stderr
    words = ok(wallet_cli("wallet", "export", "-n", "gina", "--mnemonic", "--wallet-dir", str(wallet_dir))).split()
    assert len(words) == 24
    words_file = tmp_path / "words"
    words_file.write_text(" ".join(words))
    other = tmp_path / "other"
    out = ok(
        wallet_cli("wallet", "import", "-n", "restored", "--mnemonic-file", str(words_file), "--wallet-dir", str(other))
    )
    assert address in out
    new_file = tmp_path / "new"
    new_file.write_text("a new passphrase\n")
    ok(
        wallet_cli(
            "wallet",
            "change-passphrase",
            "-n",
            "gina",
            "--wallet-dir",
            str(wallet_dir),
            "--new-passphrase-file",
            str(new_file),
        )
    )
    assert wallet_cli("wallet", "export", "-n", "gina", "--show-seed", "--wallet-dir", str(wallet_dir)).returncode == 1
    seed = ok(
        wallet_cli(
            "wallet",
            "export",
            "-n",
            "gina",
            "--show-seed",
            "--wallet-dir",
            str(wallet_dir),
            passphrase="a new passphrase",
        )
    ).strip()
    assert KeyPair.from_seed(bytes.fromhex(seed)).address == address


def test_passphrase_is_never_an_argument() -> None:
    """No wallet command takes a passphrase on the command line (only a file, the environment, or a prompt)."""
    for command in ("create", "unlock", "send", "export", "import", "change-passphrase"):
        help_text = ok(run_cli("wallet", command, "--help"))
        assert "--passphrase-file" in help_text
        assert "--passphrase " not in help_text and "--password" not in help_text
