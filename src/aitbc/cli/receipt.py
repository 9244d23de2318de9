"""``aitbc receipt verify``: check a job receipt end to end and print each check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from aitbc.cli.common import (
    ApiKeyOpt,
    CoordinatorOpt,
    DevnetOpt,
    RpcOpt,
    console,
    coordinator_client,
    handle_errors,
    node_client,
    print_json,
)
from aitbc.client.coordinator import CoordinatorClient
from aitbc.protocol.errors import ConfigError
from aitbc.wallet.receipts import verify_receipt_end_to_end

app = typer.Typer(help="Verify job receipts.", no_args_is_help=True)

_STYLE = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "skip": "[dim]skip[/]"}


@app.command("verify")
@handle_errors
def verify(
    target: Annotated[str, typer.Argument(help="A job id (receipt fetched from the coordinator) or a receipt file")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
    coordinator: CoordinatorOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Signatures, assigned miner, settle committed on chain (Merkle proof), amounts, the zk receipt proof
    (attached or in settle_job_zk), and for EXPERIMENTAL zk-inference jobs the EZKL proofs; exit 1 if any fails."""
    path = Path(target)
    receipt_obj = None
    job_id: str | None = None
    if path.suffix == ".json" or path.exists():
        try:
            receipt_obj = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read a receipt from {path}: {exc}") from None
    else:
        job_id = target
    coord: CoordinatorClient | None = None
    if job_id is not None or coordinator is not None:
        coord = coordinator_client(devnet, coordinator, api_key)
    try:
        with node_client(devnet, rpc) as node:
            report = verify_receipt_end_to_end(node, coord, job_id=job_id, receipt_obj=receipt_obj)
    finally:
        if coord is not None:
            coord.close()
    if as_json:
        print_json(report.to_json())
    else:
        table = Table("check", "result", "detail", title=f"receipt of job {report.job_id}")
        for check in report.checks:
            table.add_row(check.name, _STYLE[check.outcome], check.detail)
        console.print(table)
        console.print(f"receipt hash {report.receipt_hash}")
        console.print("[green]receipt verified[/]" if report.ok else "[bold red]receipt NOT verified[/]")
    if not report.ok:
        raise typer.Exit(1)
