"""``aitbc exchange``: run the BTC <-> AITBC exchange; operator tools (xpub, users, withdrawal PSBTs); user
commands over its API (balances, orders)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aitbc.cli.common import handle_errors
from aitbc.exchange.config import DEFAULT_EXCHANGE_PORT

app = typer.Typer(help="The BTC <-> AITBC trade exchange (docs/exchange.md).", no_args_is_help=True)


@app.command("run")
@handle_errors
def run(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Exchange data directory (SQLite database)")],
    port: Annotated[int, typer.Option(help="HTTP port")] = DEFAULT_EXCHANGE_PORT,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default: SQLite in the data dir)", show_default=False)
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Serve the exchange API and feed until Ctrl-C. Bitcoin, AITBC and market settings: AITBC_EXCHANGE_…
    (e.g. AITBC_EXCHANGE_BITCOIN__XPUB, AITBC_EXCHANGE_BITCOIN__RPC_URL, AITBC_EXCHANGE_MARKET__TICK_SIZE)."""
    from aitbc.exchange.app import run_exchange
    from aitbc.exchange.config import ExchangeSettings
    from aitbc.runtime.logging import configure_logging

    settings = ExchangeSettings(data_dir=data_dir, port=port, host=host, database_url=database_url, log_level=log_level)
    configure_logging("exchange", settings.log_level)
    run_exchange(settings)
