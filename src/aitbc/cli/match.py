"""``aitbc match explain JOB_ID``: who gets (or got) a job, and why the others do not."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from aitbc.cli.common import (
    ApiKeyOpt,
    CoordinatorOpt,
    DevnetOpt,
    console,
    coordinator_client,
    handle_errors,
    print_json,
)

app = typer.Typer(help="Explain matching decisions.", no_args_is_help=True)


@app.command("explain")
@handle_errors
def explain_job(
    job_id: Annotated[str, typer.Argument(help="Job id (job_…)")],
    devnet: DevnetOpt = None,
    coordinator: CoordinatorOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Rank the live miners for one of your jobs now (scores, factors, reasons) and list the excluded ones."""
    with coordinator_client(devnet, coordinator, api_key) as client:
        data: dict[str, Any] = client._request("GET", f"/api/v1/jobs/{job_id}/match")
    if as_json:
        print_json(data)
        return
    job, ranking = data["job"], data["ranking"]
    console.print(
        f"[bold]{job['job_id']}[/] {job['type']} {job['model']}  state {job['state']}"
        + (f"  miner {job['miner']}" if job.get("miner") else "")
        + f"  policy {ranking.get('policy', '?')}"
        + ("  [yellow]exploration slot (new miners first)[/]" if ranking.get("exploration_slot") else "")
    )
    table = Table("#", "miner", "score", "why")
    for c in ranking.get("candidates", []):
        marker = " [green](assigned)[/]" if c["miner"] == job.get("miner") else ""
        table.add_row(str(c["rank"]), c["miner"] + marker, f"{c['score']:.3f}", "\n".join(c["reasons"]))
    console.print(table)
    excluded = ranking.get("excluded", [])
    if excluded:
        out = Table("excluded miner", "reason")
        for e in excluded:
            out.add_row(e["miner"], e["reason"])
        console.print(out)
    if ranking.get("poolhub_error"):
        console.print(f"[yellow]pool hub unreachable ({ranking['poolhub_error']}); ranked in process[/]")
