"""``aitbc wallet multisig``: m-of-n accounts — create, propose a spend, sign it, send it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from aitbc.cli.common import DevnetOpt, RpcOpt, console, handle_errors, node_client
from aitbc.cli.wallet import (
    FeeOpt,
    NameOpt,
    PassFileOpt,
    WalletDirOpt,
    _address,
    _dir,
    _units,
    _unlock_local,
    _wait,
    daemon_client,
)
from aitbc.protocol.errors import ConfigError
from aitbc.protocol.tx import CreateMultisig, MultisigTransfer, compute_multisig_address, sign_tx, tx_to_json_obj
from aitbc.runtime.files import atomic_write
from aitbc.wallet.multisig import add_member_signature, combine_spends, parse_spend

multisig_app = typer.Typer(help="m-of-n accounts: create, propose a spend, sign it, send it.", no_args_is_help=True)


def _signer_for(directory: Path, name: str, passphrase_file: Path | None) -> tuple[str, Any]:
    """(address, sign_tx_json) of a wallet: the daemon's unlocked key if it has it, else the keystore's."""
    client = daemon_client(directory)
    if client is not None:
        wallets = {w.get("name"): w for w in client.list_wallets()}
        if wallets.get(name, {}).get("unlocked"):

            def sign_remote(tx_obj: dict[str, Any]) -> dict[str, Any]:
                assert client is not None
                with client:
                    signed: dict[str, Any] = client.sign_tx(name, tx_obj)["tx"]
                return signed

            return str(wallets[name]["address"]), sign_remote
        client.close()
    key = _unlock_local(directory, name, passphrase_file)

    def sign_local(tx_obj: dict[str, Any]) -> dict[str, Any]:
        from aitbc.protocol.tx import tx_from_json_obj

        tx = tx_from_json_obj(tx_obj)
        if isinstance(tx, MultisigTransfer):
            return tx_to_json_obj(add_member_signature(tx, key.address, key.sign))
        return tx_to_json_obj(sign_tx(tx, key))

    return key.address, sign_local


@multisig_app.command("create")
@handle_errors
def multisig_create(
    name: Annotated[str, typer.Option("--name", "-n", help="Wallet that registers (and pays for) the account")],
    threshold: Annotated[int, typer.Option("--threshold", "-m", help="Approvals needed per spend")],
    members: Annotated[list[str], typer.Option("--member", help="Member address (repeat, n times)")],
    fee: FeeOpt = "0.001",
    wallet_dir: WalletDirOpt = None,
    passphrase_file: PassFileOpt = None,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Register an m-of-n account on chain and print its address."""
    for m in members:
        _address(m, "--member")
    address, sign = _signer_for(_dir(wallet_dir), name, passphrase_file)
    with node_client(devnet, rpc) as node:
        nonce = node.next_nonce(address)
        tx = CreateMultisig(
            chain_id=node.get_chain_info()["chain_id"],
            sender=address,
            nonce=nonce,
            fee=_units(fee, "--fee"),
            members=members,
            threshold=threshold,
        )
        tx_hash = node.call("send_tx", sign(tx_to_json_obj(tx)))["tx_hash"]
        status = _wait(node, tx_hash)
    console.print(
        f"[green]multisig account[/] {threshold}-of-{len(members)}: [bold]{compute_multisig_address(address, nonce)}[/]"
    )
    console.print(f"  created in block {status['height']} (tx {tx_hash})")


@multisig_app.command("propose")
@handle_errors
def multisig_propose(
    account: Annotated[str, typer.Option("--account", help="The multisig account's address")],
    to: Annotated[str, typer.Option("--to", help="Recipient address")],
    amount: Annotated[str, typer.Option("--amount", help="Amount in AITBC")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Write the unsigned spend here")],
    fee: FeeOpt = "0.001",
    memo: Annotated[str, typer.Option(help="Free text")] = "",
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Write an unapproved spend from the account (its next nonce) for members to sign."""
    _address(account, "--account")
    _address(to, "--to")
    with node_client(devnet, rpc) as node:
        info = node.get_account(account)
        if "multisig" not in info:
            raise ConfigError(f"{account} is not a multisig account on this chain", reason="not_multisig")
        tx = MultisigTransfer(
            chain_id=node.get_chain_info()["chain_id"],
            sender=account,
            nonce=int(info["pending_nonce"]),
            fee=_units(fee, "--fee"),
            recipient=to,
            amount=_units(amount, "--amount"),
            memo=memo,
        )
    atomic_write(out, orjson.dumps(tx_to_json_obj(tx), option=orjson.OPT_INDENT_2) + b"\n")
    policy = info["multisig"]
    console.print(f"proposed spend written to {out}: needs {policy['threshold']} of {len(policy['members'])} approvals")


def _read_spend(path: Path) -> MultisigTransfer:
    try:
        return parse_spend(orjson.loads(path.read_bytes()))
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read a spend from {path}: {exc}") from None


@multisig_app.command("sign")
@handle_errors
def multisig_sign(
    file: Annotated[Path, typer.Argument(help="The spend (from propose, or another member's signed copy)")],
    name: NameOpt,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here (default: update FILE)")] = None,
    wallet_dir: WalletDirOpt = None,
    passphrase_file: PassFileOpt = None,
) -> None:
    """Add this wallet's approval to a spend."""
    spend = _read_spend(file)
    address, sign = _signer_for(_dir(wallet_dir), name, passphrase_file)
    signed = parse_spend(sign(tx_to_json_obj(spend)))
    atomic_write(out or file, orjson.dumps(tx_to_json_obj(signed), option=orjson.OPT_INDENT_2) + b"\n")
    console.print(f"approved by {name} ({address}); {len(signed.approvals)} approval(s) in {out or file}")


@multisig_app.command("send")
@handle_errors
def multisig_send(
    files: Annotated[list[Path], typer.Argument(help="Signed copies of one spend (approvals are combined)")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the tx is committed")] = True,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Combine the approvals of the given copies and submit the spend."""
    spend = combine_spends([_read_spend(f) for f in files])
    with node_client(devnet, rpc) as node:
        tx_hash = node.send_tx(spend)
        console.print(f"sent multisig spend with {len(spend.approvals)} approval(s)\n  tx {tx_hash}")
        if wait:
            console.print(f"[green]committed[/] in block {_wait(node, tx_hash)['height']}")
