"""``aitbc web``: serve the marketplace web app; write the services' OpenAPI documents for its clients."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aitbc.cli.common import InsecureHttpOpt, TlsCertOpt, TlsKeyOpt, console, handle_errors, tls_flags
from aitbc.devnet.config import DEVNET_ENV, default_devnet_dir, read_devnet_info
from aitbc.web.config import DEFAULT_WEB_PORT, default_dist_dir

app = typer.Typer(help="The marketplace web app.", no_args_is_help=True)


@app.command("serve")
@handle_errors
def serve(
    port: Annotated[int, typer.Option(help="HTTP port")] = DEFAULT_WEB_PORT,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    dist: Annotated[
        Path | None, typer.Option(help="The built app (default: web/dist of this checkout)", show_default=False)
    ] = None,
    devnet: Annotated[
        Path | None,
        typer.Option(help=f"Take the service URLs from this devnet (default: ${DEVNET_ENV} or ~/.aitbc/devnet)"),
    ] = None,
    coordinator_url: Annotated[str | None, typer.Option(help="Coordinator URL", show_default=False)] = None,
    node_url: Annotated[str | None, typer.Option(help="Node JSON-RPC / REST URL", show_default=False)] = None,
    ws_url: Annotated[str | None, typer.Option(help="Node WebSocket URL (ws://…/ws)", show_default=False)] = None,
    poolhub_url: Annotated[str | None, typer.Option(help="Pool hub URL", show_default=False)] = None,
    exchange_url: Annotated[str | None, typer.Option(help="Exchange URL", show_default=False)] = None,
    chain_id: Annotated[str | None, typer.Option(help="Chain id (default: the node's)", show_default=False)] = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    insecure_http: InsecureHttpOpt = False,
) -> None:
    """Serve the built app until Ctrl-C. The services must allow this origin: set their
    AITBC_<SERVICE>_CORS_ORIGINS='["http://HOST:PORT"]' (the devnet does)."""
    from aitbc.web.app import check_built, run_web
    from aitbc.web.config import WebSettings

    devnet_dir = devnet or default_devnet_dir()
    if devnet is not None or (
        not any((coordinator_url, node_url, ws_url, poolhub_url, exchange_url))
        and (devnet_dir / "devnet.json").exists()
    ):
        info = read_devnet_info(devnet_dir)
        chain_id = chain_id or info.chain_id
        coordinator_url = coordinator_url or info.coordinator_url
        node_url = node_url or info.rpc_url
        ws_url = ws_url or info.ws_url
        poolhub_url = poolhub_url or info.poolhub_url
    settings = WebSettings(
        host=host,
        port=port,
        dist_dir=dist or default_dist_dir(),
        chain_id=chain_id,
        coordinator_url=coordinator_url,
        node_url=node_url,
        ws_url=ws_url,
        poolhub_url=poolhub_url,
        exchange_url=exchange_url,
        **tls_flags(tls_cert, tls_key, insecure_http),
    )
    check_built(settings)
    console.print(
        f"web app: {'https' if settings.tls_cert_file else 'http'}://{host}:{port}/  (serving {settings.dist_dir})"
    )
    for name, url in settings.service_urls().items():
        console.print(f"  {name.removesuffix('_url'):12} {url or '[dim]not configured[/]'}")
    run_web(settings)


@app.command("openapi")
@handle_errors
def openapi(
    out: Annotated[Path, typer.Option(help="Directory for coordinator.json, node.json, poolhub.json")] = Path(
        "web/openapi"
    ),
) -> None:
    """Write each service's OpenAPI document (from its create_app; no server needed)."""
    from aitbc.web.openapi import write_openapi

    for path in write_openapi(out):
        console.print(f"wrote {path}")
