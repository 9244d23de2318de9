"""``aitbc poolhub``: run the pool hub (miner registry, scoring, matching)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aitbc.cli.common import InsecureHttpOpt, TlsCertOpt, TlsKeyOpt, given, handle_errors, tls_flags
from aitbc.poolhub.config import DEFAULT_POOLHUB_PORT

app = typer.Typer(help="Run the pool hub: miner registry, scoring and matching.", no_args_is_help=True)


@app.command("run")
@handle_errors
def run(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Pool hub data directory (SQLite database)")],
    port: Annotated[
        int | None, typer.Option(help=f"HTTP port; 0 picks a free one [default: {DEFAULT_POOLHUB_PORT}]")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on [default: 127.0.0.1]")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default: SQLite in the data dir)", show_default=False)
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option(help="Keep live miner state in Redis (redis://HOST:PORT/DB)", show_default=False)
    ] = None,
    api_token: Annotated[
        str | None,
        typer.Option(envvar="AITBC_POOLHUB_API_TOKEN", help="Token writes and /v1/match require", show_default=False),
    ] = None,
    miner_timeout_seconds: Annotated[
        float | None, typer.Option(help="Seconds without heartbeat before a miner is out [default: 15]")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error [default: INFO]")] = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    insecure_http: InsecureHttpOpt = False,
) -> None:
    """Serve the pool hub API until Ctrl-C. Options not given come from AITBC_POOLHUB_*, then the defaults;
    scoring: AITBC_POOLHUB_SCORING__WEIGHTS__<FACTOR>=…, AITBC_POOLHUB_SCORING__<FIELD>=… (docs/poolhub.md)."""
    from aitbc.poolhub.app import run_poolhub
    from aitbc.poolhub.config import PoolHubSettings
    from aitbc.runtime.logging import configure_logging

    settings = PoolHubSettings(
        data_dir=data_dir,
        **given(
            port=port,
            host=host,
            database_url=database_url,
            redis_url=redis_url,
            api_token=api_token,
            miner_timeout_seconds=miner_timeout_seconds,
            log_level=log_level,
        ),
        **tls_flags(tls_cert, tls_key, insecure_http),
    )
    configure_logging("poolhub", settings.log_level)
    run_poolhub(settings)
