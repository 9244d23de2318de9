"""``aitbc deposit``: fund once, pay per job — open, top up, withdraw from and show a deposit on chain."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from aitbc.chain.params import ChainParams
from aitbc.cli.common import (
    ApiKeyOpt,
    BaseUnitsOpt,
    CoordinatorOpt,
    DevnetOpt,
    RpcOpt,
    console,
    coordinator_client,
    handle_errors,
    load_devnet,
    node_client,
    parse_amount,
    print_json,
)
from aitbc.client.deposit import open_deposit, top_up_deposit, withdraw_deposit
from aitbc.protocol.amounts import format_aitbc
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import ConfigError, RemoteError
from aitbc.runtime.keyfile import read_keyfile

app = typer.Typer(help="Deposits: fund once on chain, pay per job through your API key.", no_args_is_help=True)

KeyOpt = Annotated[
    str | None,
    typer.Option("--key", help="Key that owns / pays (name or path; default: devnet client key)", show_default=False),
]


def _amount(text: str, base_units: bool, option: str) -> int:
    value = parse_amount(text, base_units, option)
    if value <= 0:
        raise ConfigError(f"{option} must be positive")
    return value


def _owner(key: str | None, devnet: Path | None) -> KeyPair:
    from aitbc.cli.common import load_key

    if key is not None:
        return load_key(key, devnet)
    info = load_devnet(devnet)
    if info.client_key is None:
        raise ConfigError("this devnet has no client key; pass --key NAME_OR_PATH of a funded key")
    return read_keyfile(Path(info.client_key))


def _deposit_id(value: str | None, devnet: Path | None) -> str:
    if value is None:
        value = load_devnet(devnet).deposit_id
        if value is None:
            raise ConfigError("no deposit id given and the devnet has none; pass DEPOSIT_ID (dep_…)")
    if not re.fullmatch(r"dep_[0-9a-f]{40}", value):
        raise ConfigError(f"{value!r} is not a deposit id (dep_ and 40 hex digits)")
    return value


@app.command("open")
@handle_errors
def open_(
    amount: Annotated[str, typer.Argument(help="AITBC to put in (base units with --base-units)")],
    coordinator: Annotated[
        str | None,
        typer.Option("--coordinator-address", help="Coordinator allowed to settle against it (default: devnet's)"),
    ] = None,
    mode: Annotated[str, typer.Option(help="delegated (API key, within a cap) or signed (you sign each job)")] = (
        "delegated"
    ),
    cap: Annotated[
        str | None, typer.Option(help="Most the coordinator may spend per period, AITBC (default: the amount)")
    ] = None,
    period_blocks: Annotated[int, typer.Option(help="Length of a cap period in blocks")] = 86_400,
    base_units: BaseUnitsOpt = False,
    key: KeyOpt = None,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Open a deposit naming a coordinator; bind it to an API key with `aitbc coordinator keys bind`."""
    if mode not in ("delegated", "signed"):
        raise ConfigError("--mode is delegated or signed")
    owner = _owner(key, devnet)
    coordinator = coordinator or load_devnet(devnet).coordinator_address
    if coordinator is None:
        raise ConfigError("pass --coordinator-address ait1… (the coordinator's /healthz names it)")
    units = _amount(amount, base_units, "AMOUNT")
    cap_units = units if cap is None else _amount(cap, base_units, "--cap")
    with node_client(devnet, rpc) as node, console.status("opening the deposit on chain…"):
        opened = open_deposit(
            node, owner, coordinator, units, mode=mode, cap_per_period=cap_units, period_blocks=period_blocks
        )
    console.print(
        f"[green]opened[/] deposit [bold]{opened.deposit_id}[/] in block {opened.height} (tx {opened.tx_hash})"
    )


@app.command("top-up")
@handle_errors
def top_up(
    amount: Annotated[str, typer.Argument(help="AITBC to add (base units with --base-units)")],
    deposit_id: Annotated[str | None, typer.Argument(help="dep_… (default: the devnet's)")] = None,
    base_units: BaseUnitsOpt = False,
    key: KeyOpt = None,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Add funds to a deposit (anyone may; they become the owner's)."""
    with node_client(devnet, rpc) as node, console.status("topping up…"):
        units = _amount(amount, base_units, "AMOUNT")
        done = top_up_deposit(node, _owner(key, devnet), _deposit_id(deposit_id, devnet), units)
    console.print(f"[green]topped up[/] {done.deposit_id} by {format_aitbc(units)} AITBC in block {done.height}")


@app.command("withdraw")
@handle_errors
def withdraw(
    amount: Annotated[str, typer.Argument(help="AITBC to take back (base units with --base-units)")],
    deposit_id: Annotated[str | None, typer.Argument(help="dep_… (default: the devnet's)")] = None,
    base_units: BaseUnitsOpt = False,
    key: KeyOpt = None,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Ask for funds back; the chain pays them after the withdrawal delay (work done meanwhile still settles)."""
    with node_client(devnet, rpc) as node:
        params = msgspec.convert(node.get_chain_info()["params"], ChainParams)
        units = _amount(amount, base_units, "AMOUNT")
        with console.status("sending the withdrawal…"):
            done = withdraw_deposit(node, _owner(key, devnet), _deposit_id(deposit_id, devnet), units)
    console.print(
        f"[green]withdrawal requested[/] in block {done.height}: {format_aitbc(units)} AITBC (or what is left then) "
        "is paid out "
        f"at height {done.height + params.deposit_withdrawal_delay}"
    )


@app.command("show")
@handle_errors
def show(
    deposit_id: Annotated[str | None, typer.Argument(help="dep_… (default: the devnet's)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
    coordinator: CoordinatorOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The deposit on chain (proof-checked) and, with an API key bound to it, what the coordinator holds back."""
    wanted = _deposit_id(deposit_id, devnet)
    with node_client(devnet, rpc) as node:
        deposit, payload = node.get_verified_deposit(wanted)
    if deposit is None:
        raise RemoteError(f"no deposit {wanted} on chain", reason="not_found")
    account: dict[str, Any] | None = None
    try:
        with coordinator_client(devnet, coordinator, api_key) as client:
            found = client.account()
            account = found if found is not None and found["deposit_id"] == wanted else None
    except (ConfigError, RemoteError):
        account = None
    summary: dict[str, Any] = {**msgspec.to_builtins(deposit), "height": payload["height"], "coordinator_view": account}
    if as_json:
        print_json(summary)
        return
    table = Table("", "", show_header=False, title=f"deposit {wanted} ({deposit.mode}) at height {payload['height']}")
    table.add_row("owner", deposit.owner)
    table.add_row("coordinator", deposit.coordinator)
    table.add_row("balance", f"{format_aitbc(deposit.balance)} AITBC (proof checked against the block header)")
    if account is not None:
        table.add_row("reserved", f"{format_aitbc(account['reserved'])} AITBC (jobs in flight, worst case)")
        table.add_row("pending", f"{format_aitbc(account['pending'])} AITBC (completed, not settled yet)")
        table.add_row("available", f"[bold]{format_aitbc(account['available'])} AITBC[/] for new jobs")
    table.add_row("spent", f"{format_aitbc(deposit.spent_total)} AITBC over {deposit.jobs_paid} jobs")
    if deposit.cap_per_period:
        table.add_row("cap", f"{format_aitbc(deposit.cap_per_period)} AITBC per {deposit.period_blocks} blocks")
    if deposit.withdrawal_amount:
        table.add_row(
            "withdrawing", f"{format_aitbc(deposit.withdrawal_amount)} AITBC at height {deposit.withdrawal_height}"
        )
    console.print(table)
