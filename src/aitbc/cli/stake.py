"""``aitbc stake`` / ``aitbc unstake``: bond tokens to a validator (yourself or another) and take them back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, cast

import typer

from aitbc.cli.common import DevnetOpt, RpcOpt, console, handle_errors, load_key, node_client
from aitbc.protocol.address import decode_address
from aitbc.protocol.amounts import format_aitbc, parse_aitbc
from aitbc.protocol.errors import ConfigError, InvalidAddress, RemoteError
from aitbc.protocol.tx import Delegate, Stake, Tx, TxBase, Unstake, sign_tx

KeyOpt = Annotated[str | None, typer.Option("--from", help="Key name or .key file (default: the devnet faucet)")]
KeysDirOpt = Annotated[Path | None, typer.Option("--keys-dir", show_default=False)]
FeeOpt = Annotated[str, typer.Option("--fee", help="Fee in AITBC")]
ValidatorOpt = Annotated[
    str | None, typer.Option("--validator", help="Validator to bond to (default: yourself, i.e. stand as one)")
]


def _units(value: str, name: str) -> int:
    try:
        return parse_aitbc(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _validator(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        decode_address(value)
    except InvalidAddress as exc:
        raise ConfigError(f"--validator: {exc.message}") from None
    return value


def send_and_wait(
    build: type[TxBase],
    key_name: str | None,
    fee: str,
    devnet: Path | None,
    rpc: str | None,
    keys: Path | None,
    **fields: object,
) -> dict[str, Any]:
    """Sign a ``build`` tx with the named key, send it, wait for its block; returns the tx's status
    (``height`` where it committed). A dropped tx is an error naming the chain's reason."""
    key = load_key(key_name, devnet, keys)
    with node_client(devnet, rpc) as node:
        chain_id = node.get_chain_info()["chain_id"]
        built = build(
            chain_id=chain_id,
            sender=key.address,
            nonce=node.next_nonce(key.address),
            fee=_units(fee, "--fee"),
            **fields,
        )
        tx = cast(Tx, built)  # every TxBase subclass the CLI builds is a member of the Tx union
        tx_hash = node.send_tx(sign_tx(tx, key))
        console.print(f"sent {build.__name__.lower()} tx {tx_hash}")
        with console.status("waiting for a block…"):
            status = node.wait_for_tx(tx_hash)
        if status["status"] == "rejected":
            raise RemoteError(f"tx was dropped: {status.get('reason')}", reason=status.get("reason"))
        console.print(f"[green]committed[/] in block {status['height']}")
        return status


@handle_errors
def stake(
    amount: Annotated[str, typer.Argument(help="AITBC to bond, e.g. 1000")],
    validator: ValidatorOpt = None,
    sender: KeyOpt = None,
    fee: FeeOpt = "0.001",
    keys: KeysDirOpt = None,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Bond AITBC: to yourself (stand as a validator) or, with --validator, delegate to one."""
    units = _units(amount, "amount")
    target = _validator(validator)
    key = load_key(sender, devnet, keys)
    if target is None or target == key.address:
        send_and_wait(Stake, sender, fee, devnet, rpc, keys, amount=units)
    else:
        send_and_wait(Delegate, sender, fee, devnet, rpc, keys, validator=target, amount=units)
    console.print(f"bonded {format_aitbc(units)} AITBC to {target or key.address}")


@handle_errors
def unstake(
    amount: Annotated[str, typer.Argument(help="AITBC to unbond")],
    validator: ValidatorOpt = None,
    sender: KeyOpt = None,
    fee: FeeOpt = "0.001",
    keys: KeysDirOpt = None,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Unbond AITBC from a validator (default: yourself); it returns after the unbonding period."""
    units = _units(amount, "amount")
    key = load_key(sender, devnet, keys)
    target = _validator(validator) or key.address
    send_and_wait(Unstake, sender, fee, devnet, rpc, keys, validator=target, amount=units)
    console.print(f"unbonding {format_aitbc(units)} AITBC from {target} (see `aitbc chain validators`)")
