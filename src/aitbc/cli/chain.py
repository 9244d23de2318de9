"""``aitbc chain``: read the chain."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.live import Live
from rich.table import Table

from aitbc.cli.common import DevnetOpt, RpcOpt, console, handle_errors, load_devnet, node_client, print_json
from aitbc.protocol.amounts import format_aitbc
from aitbc.protocol.errors import RemoteError

app = typer.Typer(help="Inspect the chain.", no_args_is_help=True)


@app.command("head")
@handle_errors
def head(devnet: DevnetOpt = None, rpc: RpcOpt = None) -> None:
    """The last committed block header."""
    with node_client(devnet, rpc) as node:
        print_json(node.get_head())


@app.command("block")
@handle_errors
def block(
    ref: Annotated[str, typer.Argument(help="Height or block hash")],
    txs: Annotated[bool, typer.Option("--txs/--no-txs", help="Include the txs")] = True,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """A block by height or hash."""
    with node_client(devnet, rpc) as node:
        print_json(node.get_block(int(ref) if ref.isdigit() else ref, txs))


@app.command("account")
@handle_errors
def account(
    address: Annotated[str, typer.Argument(help="Address (ait1…)")],
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check a Merkle proof of it")] = True,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Balance and nonce of an account, checked against the state root."""
    with node_client(devnet, rpc) as node:
        info = node.get_account(address)
        console.print(
            f"{address}\n  balance: [bold]{format_aitbc(info['balance'])}[/] AITBC\n  nonce:   {info['nonce']}"
        )
        if verify:
            _, proof = node.get_verified_account(address)
            console.print(
                f"  [green]proof verified[/] against state root {proof['state_root'][:16]}… of block {proof['height']}"
            )


def human_time(ms: int) -> str:
    """A block time for people: UTC to the millisecond (``2026-12-03 09:50:01.234Z``)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def block_line(row: dict[str, Any]) -> str:
    """One block as one plain line (``chain watch`` when stdout is not a terminal): greppable, whole values."""
    return (
        f"{human_time(int(row['time_ms']))}  height {row['height']}  txs {row['tx_count']}  "
        f"hash {row['hash']}  proposer {row['proposer']}"
    )


def _blocks_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("height", "hash", "txs", "proposer", "time", title="live blocks (Ctrl-C to stop)")
    for row in rows[-20:]:
        table.add_row(
            str(row["height"]),
            row["hash"][:16] + "…",
            str(row["tx_count"]),
            row["proposer"][:14] + "…",
            human_time(int(row["time_ms"])),
        )
    return table


@app.command("watch")
@handle_errors
def watch(
    count: Annotated[int, typer.Option(help="Stop after this many blocks (0: forever)")] = 0,
    devnet: DevnetOpt = None,
    ws: Annotated[str | None, typer.Option("--ws", help="WebSocket URL (default: the devnet's)")] = None,
    plain: Annotated[
        bool, typer.Option("--plain", help="One line per block (the default when stdout is not a terminal)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per block and line")] = False,
) -> None:
    """Stream new blocks from the WebSocket: a live table on a terminal, else one line per block as it comes."""
    url = ws or load_devnet(devnet).ws_url
    live_table = not (plain or as_json or not console.is_terminal)

    async def follow() -> None:
        from websockets.asyncio.client import connect

        rows: list[dict[str, Any]] = []
        try:
            async with connect(url) as conn:
                await conn.send(orjson.dumps({"method": "subscribe", "params": ["new_blocks"], "id": 1}).decode())
                if not live_table:  # piped, logged or asked for: a line per block, written at once
                    async for raw in conn:
                        message = orjson.loads(raw)
                        if message.get("method") != "new_blocks":
                            continue
                        rows.append(message["params"])
                        line = orjson.dumps(message["params"]).decode() if as_json else block_line(message["params"])
                        print(line, flush=True)
                        if count and len(rows) >= count:
                            return
                    return
                with Live(_blocks_table(rows), console=console, refresh_per_second=4) as live:
                    async for raw in conn:
                        message = orjson.loads(raw)
                        if message.get("method") != "new_blocks":
                            continue
                        rows.append(message["params"])
                        live.update(_blocks_table(rows))
                        if count and len(rows) >= count:
                            return
        except OSError as exc:
            raise RemoteError(f"cannot connect to {url}: {exc}", reason="unreachable") from None

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow())


@app.command("job")
@handle_errors
def job(
    job_id: Annotated[str, typer.Argument(help="Job id")],
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """A job's escrow on chain (amounts, receipt hash, the txs that opened and closed it), proof-checked."""
    with node_client(devnet, rpc) as node:
        found = node.get_job(job_id)
        if found is None:
            raise RemoteError(f"no escrow for job {job_id} on chain", reason="not_found")
        escrow, proof = node.get_verified_escrow(job_id)
        assert escrow is not None
        table = Table("", "", show_header=False, title=f"job {job_id}")
        table.add_row("state", escrow.state)
        table.add_row("client", escrow.client)
        table.add_row("coordinator", escrow.coordinator)
        table.add_row("escrowed", f"{format_aitbc(escrow.amount)} AITBC (deadline height {escrow.deadline_height})")
        if escrow.miner:
            table.add_row("miner", escrow.miner)
            table.add_row("paid to miner", f"{format_aitbc(escrow.paid_to_miner)} AITBC")
            table.add_row("protocol fee", f"{format_aitbc(escrow.protocol_fee)} AITBC")
        if escrow.refunded:
            table.add_row("returned to client", f"{format_aitbc(escrow.refunded)} AITBC")
        if escrow.receipt_hash:
            table.add_row("receipt hash", escrow.receipt_hash)
        for event in found["events"]:
            table.add_row(event["kind"], f"block {event['height']}  tx {event['tx_hash'] or '(by the chain)'}")
        table.add_row("proof", f"verified against state root of block {proof['height']}")
        console.print(table)


@app.command("validators")
@handle_errors
def validators(
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON")] = False,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """The validator set: authorities and stakers, voting power, bonded stake and status."""
    with node_client(devnet, rpc) as node:
        info = node.get_validators()
    if as_json:
        print_json(info)
        return
    table = Table(title=f"validators at height {info['height']} ({info['consensus']})")
    for column in ("address", "kind", "power", "share", "bonded AITBC", "status"):
        table.add_column(column, justify="right" if column in {"power", "share", "bonded AITBC"} else "left")
    total = max(1, int(info["total_power"]))
    for v in info["validators"]:
        status = v["status"] if v["status"] != "jailed" else f"jailed until {v['jailed_until']}"
        table.add_row(
            v["address"],
            "authority" if v["authority"] else "staker",
            str(v["power"]),
            f"{100 * v['power'] / total:.1f} %",
            format_aitbc(v["bonded"]),
            status,
        )
    console.print(table)
    console.print(
        f"minted {format_aitbc(info['minted'])} AITBC, burned {format_aitbc(info['burned'])} AITBC by slashing"
    )
