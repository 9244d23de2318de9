"""``aitbc miners``: who is in the pool, how they did, who ranks first (reads the pool hub)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from aitbc.cli.common import console, handle_errors, print_json
from aitbc.client.poolhub import DEFAULT_POOLHUB_URL, PoolHubClient

app = typer.Typer(help="Miners in the pool hub: list, show one, leaderboard.", no_args_is_help=True)

PoolHubOpt = Annotated[
    str | None,
    typer.Option("--poolhub", help=f"Pool hub URL (default: $AITBC_POOLHUB_URL or {DEFAULT_POOLHUB_URL})"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]


def poolhub_client(url: str | None) -> PoolHubClient:
    return PoolHubClient(url or os.environ.get("AITBC_POOLHUB_URL") or DEFAULT_POOLHUB_URL)


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _stats_cells(stats: dict[str, Any]) -> list[str]:
    return [
        f"{stats['reliability']:.2f}",
        f"{stats['completed']}/{stats['jobs']}",
        _fmt(stats["ttft_ms"], " ms"),
        _fmt(stats["tokens_per_s"], "", 1),
    ]


@app.command("list")
@handle_errors
def list_miners(
    poolhub: PoolHubOpt = None,
    online: Annotated[bool, typer.Option("--online", help="Only miners with a recent heartbeat")] = False,
    model: Annotated[str | None, typer.Option(help="Only miners serving this model")] = None,
    limit: Annotated[int, typer.Option(help="At most this many")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Registered miners with their measured statistics."""
    with poolhub_client(poolhub) as client:
        miners = client.miners(online, model, limit)
    if as_json:
        print_json(miners)
        return
    table = Table("miner", "online", "models", "load", "reliability", "completed", "ttft", "tok/s", "stake")
    for m in miners:
        table.add_row(
            m["miner"],
            "yes" if m["online"] else "[red]no[/]",
            ", ".join(f"{x['name']}@{x['unit_price']}" for x in m["models"]),
            f"{m['load']}/{m['max_concurrency']}",
            *_stats_cells(m["stats"]),
            str(m["stake"]),
        )
    console.print(table)


@app.command("show")
@handle_errors
def show(
    address: Annotated[str, typer.Argument(help="Miner address")],
    poolhub: PoolHubOpt = None,
    history: Annotated[int, typer.Option(help="Recent outcomes and audit entries to show")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """One miner: registration, statistics, recent outcomes and its audit trail."""
    with poolhub_client(poolhub) as client:
        m = client.miner(address, history)
    if as_json:
        print_json(m)
        return
    s = m["stats"]
    console.print(
        f"[bold]{m['miner']}[/]  online: {'yes' if m['online'] else 'no'}  load {m['load']}/{m['max_concurrency']}"
    )
    console.print(
        f"region {m['region'] or '-'}  gpu {m['gpu_name'] or '-'}  vram {m['vram_gb']:g} GB  stake {m['stake']}"
    )
    console.print(
        f"reliability {s['reliability']:.3f}  completed {s['completed']}  failed {s['failed']}  "
        f"timed out {s['timed_out']}  receipts rejected {s['receipt_rejected']}  "
        f"ttft {_fmt(s['ttft_ms'], ' ms')}  {_fmt(s['tokens_per_s'], ' tok/s', 1)}"
        + ("  [yellow](new: gets exploration slots)[/]" if m["new"] else "")
    )
    models = Table("model", "kind", "digest", "unit price")
    for x in m["models"]:
        models.add_row(x["name"], x["kind"], x["digest"], str(x["unit_price"]))
    console.print(models)
    if m["recent_outcomes"]:
        outcomes = Table("when (UTC)", "job", "attempt", "outcome", "ttft", "tok/s", "reliability after")
        for o in m["recent_outcomes"]:
            outcomes.add_row(
                datetime.fromtimestamp(o["recorded_at_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                o["job_id"],
                str(o["attempt"]),
                o["outcome"],
                _fmt(o["ttft_ms"], " ms"),
                _fmt(o["tokens_per_s"], "", 1),
                f"{o['reliability_after']:.3f}",
            )
        console.print(outcomes)


@app.command("leaderboard")
@handle_errors
def leaderboard(
    poolhub: PoolHubOpt = None,
    model: Annotated[str | None, typer.Option(help="Rank for this model only")] = None,
    limit: Annotated[int, typer.Option(help="At most this many")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Miners by score (as if idle), best first."""
    with poolhub_client(poolhub) as client:
        rows = client.leaderboard(model, limit)
    if as_json:
        print_json(rows)
        return
    table = Table("#", "miner", "score", "model", "price", "reliability", "completed", "ttft", "tok/s", "online")
    for r in rows:
        table.add_row(
            str(r["rank"]),
            r["miner"],
            f"{r['score']:.3f}",
            r["model"],
            str(r["unit_price"]),
            *_stats_cells(r["stats"]),
            "yes" if r["online"] else "no",
        )
    console.print(table)
