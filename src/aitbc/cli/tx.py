"""``aitbc tx``: build, sign and send txs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aitbc.cli.common import DevnetOpt, RpcOpt, console, handle_errors, load_key, node_client
from aitbc.protocol.address import decode_address
from aitbc.protocol.amounts import format_aitbc, parse_aitbc
from aitbc.protocol.errors import ConfigError, InvalidAddress, RemoteError
from aitbc.protocol.tx import Transfer, sign_tx

app = typer.Typer(help="Send transactions.", no_args_is_help=True)


@app.command("transfer")
@handle_errors
def transfer(
    to: Annotated[str, typer.Option("--to", help="Recipient address (ait1…)")],
    amount: Annotated[str, typer.Option("--amount", help="Amount in AITBC, e.g. 1.5")],
    fee: Annotated[str, typer.Option("--fee", help="Fee in AITBC")] = "0.001",
    sender: Annotated[
        str | None, typer.Option("--from", help="Key name or .key file (default: the devnet faucet)")
    ] = None,
    memo: Annotated[str, typer.Option(help="Free text, at most 256 bytes")] = "",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the tx is committed")] = True,
    keys: Annotated[Path | None, typer.Option("--keys-dir", show_default=False)] = None,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Transfer AITBC to an address."""
    try:
        decode_address(to)
    except InvalidAddress as exc:
        raise ConfigError(f"--to: {exc.message}") from None
    try:
        units, fee_units = parse_aitbc(amount), parse_aitbc(fee)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    key = load_key(sender, devnet, keys)
    with node_client(devnet, rpc) as node:
        chain_id = node.get_chain_info()["chain_id"]
        tx = Transfer(
            chain_id=chain_id,
            sender=key.address,
            nonce=node.next_nonce(key.address),
            fee=fee_units,
            recipient=to,
            amount=units,
            memo=memo,
        )
        tx_hash = node.send_tx(sign_tx(tx, key))
        console.print(f"sent {format_aitbc(units)} AITBC to {to}\n  tx {tx_hash}")
        if not wait:
            return
        with console.status("waiting for a block…"):
            status = node.wait_for_tx(tx_hash)
        if status["status"] == "rejected":
            raise RemoteError(f"tx was dropped: {status.get('reason')}", reason=status.get("reason"))
        console.print(f"[green]committed[/] in block {status['height']}")
