"""``aitbc coordinator``: run the job coordinator and manage client API keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from aitbc.cli.common import InsecureHttpOpt, TlsCertOpt, TlsKeyOpt, console, given, handle_errors, tls_flags
from aitbc.coordinator.config import DEFAULT_COORDINATOR_PORT as DEFAULT_PORT
from aitbc.coordinator.config import CoordinatorSettings

app = typer.Typer(help="Run the job coordinator; manage client API keys.", no_args_is_help=True)
keys_app = typer.Typer(help="Client API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

DataDir = Annotated[Path, typer.Option("--data-dir", help="Coordinator data directory (database, key)")]
DbUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)", show_default=False),
]


@app.command("run")
@handle_errors
def run(
    data_dir: DataDir,
    port: Annotated[int | None, typer.Option(help=f"HTTP port; 0 picks a free one [default: {DEFAULT_PORT}]")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on [default: 127.0.0.1]")] = None,
    database_url: DbUrl = None,
    chain_id: Annotated[
        str | None, typer.Option(help="Chain id receipts are signed for [default: aitbc-devnet]")
    ] = None,
    lease_seconds: Annotated[
        float | None, typer.Option(help="Seconds a miner may stay silent on a job [default: 15]")
    ] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Runs of a job before it fails [default: 3]")] = None,
    node_url: Annotated[
        str | None,
        typer.Option("--node-url", help="Node JSON-RPC URL: jobs are paid on chain (escrow, settle, refund)"),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error [default: INFO]")] = None,
    poolhub_url: Annotated[
        str | None, typer.Option(help="Match through this pool hub (default: in process)", show_default=False)
    ] = None,
    poolhub_token: Annotated[
        str | None, typer.Option(envvar="AITBC_POOLHUB_API_TOKEN", help="The pool hub's API token", show_default=False)
    ] = None,
    blob_max_bytes: Annotated[
        int | None, typer.Option(help="Largest blob (datasets, weights, checkpoints) in bytes [default: 512 MiB]")
    ] = None,
    blob_quota_bytes: Annotated[
        int | None, typer.Option(help="Bytes of blobs one API key or miner may hold [default: 16 GiB]")
    ] = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    insecure_http: InsecureHttpOpt = False,
) -> None:
    """Serve the coordinator API (jobs, miners, receipts) until Ctrl-C.

    Options not given come from AITBC_COORDINATOR_* (e.g. AITBC_COORDINATOR_LEASE_SECONDS), then the defaults.
    With --node-url every job must come with an escrow on chain; the coordinator settles it with the
    job's receipt or refunds it, paying tx fees from its own account (fund the address it prints)."""
    from aitbc.coordinator.app import run_coordinator
    from aitbc.runtime.logging import configure_logging

    settings = CoordinatorSettings(
        data_dir=data_dir,
        **given(
            port=port,
            host=host,
            database_url=database_url,
            chain_id=chain_id,
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            node_url=node_url,
            log_level=log_level,
            poolhub_url=poolhub_url,
            poolhub_token=poolhub_token,
            blob_max_bytes=blob_max_bytes,
            blob_quota_bytes=blob_quota_bytes,
        ),
        **tls_flags(tls_cert, tls_key, insecure_http),
    )
    configure_logging("coordinator", settings.log_level)
    run_coordinator(settings)


@keys_app.command("create")
@handle_errors
def create_key(
    data_dir: DataDir,
    name: Annotated[str, typer.Option(help="A label for the key")] = "default",
    client: Annotated[str | None, typer.Option(help="Client id or ait1 address the key acts for")] = None,
    rate: Annotated[float, typer.Option(help="Requests per second allowed")] = 200.0,
    burst: Annotated[int, typer.Option(help="Requests allowed in a burst")] = 400,
    deposit: Annotated[
        str | None,
        typer.Option(help="Pay this key's jobs from this deposit (dep_…, opened by --client)", show_default=False),
    ] = None,
    database_url: DbUrl = None,
) -> None:
    """Create a client API key; the key is printed once (only its hash is stored)."""
    import time

    from aitbc.coordinator.app import open_repo
    from aitbc.coordinator.auth import new_api_key
    from aitbc.coordinator.db.deposit_repo import DepositRepo

    repo = open_repo(CoordinatorSettings(data_dir=data_dir, database_url=database_url))
    token, row = new_api_key(name, client, rate, burst)
    repo.insert_api_key(row)
    if deposit is not None:
        DepositRepo(repo.engine).bind(row.id, _deposit_id(deposit), int(time.time() * 1000))
    repo.engine.dispose()
    console.print(f"[green]created API key[/] {row.id} ({name}); send it as the X-Api-Key header:")
    print(token)


def _deposit_id(value: str) -> str:
    import re

    if not re.fullmatch(r"dep_[0-9a-f]{40}", value):
        raise typer.BadParameter(f"{value!r} is not a deposit id (dep_ and 40 hex digits)")
    return value


@keys_app.command("bind")
@handle_errors
def bind_key(
    key_id: Annotated[str, typer.Argument(help="Key id")],
    deposit: Annotated[str, typer.Argument(help="Deposit id (dep_…) opened by the key's client for this coordinator")],
    data_dir: DataDir,
    database_url: DbUrl = None,
) -> None:
    """Pay a key's jobs from a deposit: a plain POST /api/v1/jobs is then accepted at once while it covers them."""
    import time

    from aitbc.coordinator.app import open_repo
    from aitbc.coordinator.db.deposit_repo import DepositRepo

    repo = open_repo(CoordinatorSettings(data_dir=data_dir, database_url=database_url))
    found = repo.get_api_key(key_id)
    if found is not None:
        DepositRepo(repo.engine).bind(key_id, _deposit_id(deposit), int(time.time() * 1000))
    repo.engine.dispose()
    if found is None:
        console.print(f"[red]no key {key_id}[/]")
        raise typer.Exit(1)
    console.print(f"key {key_id} now pays from {deposit}")


@keys_app.command("list")
@handle_errors
def list_keys(data_dir: DataDir, database_url: DbUrl = None) -> None:
    """List API keys (ids and limits, never secrets)."""
    from aitbc.coordinator.app import open_repo

    repo = open_repo(CoordinatorSettings(data_dir=data_dir, database_url=database_url))
    table = Table("id", "name", "client", "rate/s", "burst", "revoked")
    for key in repo.list_api_keys():
        table.add_row(
            key.id, key.name, key.client, f"{key.rate_per_second:g}", str(key.burst), "yes" if key.revoked else ""
        )
    repo.engine.dispose()
    console.print(table)


@keys_app.command("revoke")
@handle_errors
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="Key id")], data_dir: DataDir, database_url: DbUrl = None
) -> None:
    """Revoke an API key: a running coordinator refuses it within a second (it re-reads keys every 0.5 s)."""
    from aitbc.coordinator.app import open_repo

    repo = open_repo(CoordinatorSettings(data_dir=data_dir, database_url=database_url))
    found = repo.revoke_api_key(key_id)
    repo.engine.dispose()
    console.print(f"revoked {key_id}" if found else f"[red]no key {key_id}[/]")
    if not found:
        raise typer.Exit(1)
