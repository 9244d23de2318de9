"""What every command shares: where the devnet is, how keys are found, how errors are shown."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from aitbc.client.coordinator import CoordinatorClient
from aitbc.client.node import NodeClient
from aitbc.devnet.config import DEVNET_ENV, DevnetInfo, default_devnet_dir, read_devnet_info
from aitbc.protocol.amounts import parse_aitbc
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import AitbcError, ConfigError, RemoteError
from aitbc.runtime.keyfile import read_keyfile

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

DevnetOpt = Annotated[
    Path | None,
    typer.Option("--devnet", help=f"Devnet directory (default: ${DEVNET_ENV} or ~/.aitbc/devnet)", show_default=False),
]
CoordinatorOpt = Annotated[
    str | None, typer.Option("--coordinator", help="Coordinator URL (default: the devnet's)", show_default=False)
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key", envvar="AITBC_API_KEY", help="Client API key (default: the devnet's)", show_default=False
    ),
]
BaseUnitsOpt = Annotated[
    bool,
    typer.Option("--base-units", help="Amounts given on this command line are base units (10**6 per AITBC), not AITBC"),
]
"""Every CLI amount is in AITBC (``1.5``) unless ``--base-units`` says otherwise."""


def parse_amount(text: str, base_units: bool, option: str) -> int:
    """An amount option as base units: AITBC by default (``0.25``), or an integer with ``--base-units``."""
    if base_units:
        if not text.strip().isdigit():
            raise ConfigError(f"{option} {text!r}: with --base-units, a whole number of base units")
        return int(text.strip())
    try:
        return parse_aitbc(text)
    except ValueError as exc:
        raise ConfigError(
            f"{option} {text!r}: {exc} (AITBC, up to 6 decimals; or base units with --base-units)"
        ) from None


RpcOpt = Annotated[
    str | None, typer.Option("--rpc", help="Node JSON-RPC URL (default: the devnet's)", show_default=False)
]


def given(**flags: Any) -> dict[str, Any]:
    """The flags the user actually gave (a flag left out is None): only these override the service's
    settings; the rest fall through to its ``AITBC_<SERVICE>_*`` environment, then to its defaults.

    So every service option of a ``run`` command defaults to None ("not given") and shows its real
    default in its help text, instead of passing that default explicitly and hiding the environment.
    """
    return {name: value for name, value in flags.items() if value is not None}


TlsCertOpt = Annotated[
    Path | None,
    typer.Option(
        "--tls-cert", help="Serve HTTPS with this certificate chain (PEM file; with --tls-key)", show_default=False
    ),
]
TlsKeyOpt = Annotated[
    Path | None, typer.Option("--tls-key", help="The private key (PEM file) of --tls-cert", show_default=False)
]
InsecureHttpOpt = Annotated[
    bool,
    typer.Option(
        "--insecure-http",
        help="Allow plain HTTP on a non-loopback --host (a private network behind a TLS proxy); refused otherwise",
    ),
]


def tls_flags(tls_cert: Path | None, tls_key: Path | None, insecure_http: bool) -> dict[str, Any]:
    """The TLS settings a ``run`` command was given (``aitbc.runtime.tls``); the rest come from the env."""
    return given(tls_cert_file=tls_cert, tls_key_file=tls_key, allow_plain_http=True if insecure_http else None)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Show AITBC errors as one red line and exit 1, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AitbcError as exc:
            # escaped: "[reason]" would otherwise be read (and swallowed) as rich markup
            reason = escape(f" [{exc.reason}]") if exc.reason not in ("error",) else ""
            err_console.print(f"[bold red]error{reason}:[/] {escape(exc.message)}", soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def resolve_devnet(devnet: Path | None) -> Path:
    return devnet if devnet is not None else default_devnet_dir()


def load_devnet(devnet: Path | None) -> DevnetInfo:
    return read_devnet_info(resolve_devnet(devnet))


def node_client(devnet: Path | None, rpc: str | None) -> NodeClient:
    if rpc is None:
        rpc = os.environ.get("AITBC_RPC_URL") or load_devnet(devnet).rpc_url
    return NodeClient(rpc)


def coordinator_client(devnet: Path | None, url: str | None, api_key: str | None) -> CoordinatorClient:
    """The coordinator and API key from flags, $AITBC_COORDINATOR_URL / $AITBC_API_KEY, or the devnet."""
    url = url or os.environ.get("AITBC_COORDINATOR_URL")
    api_key = api_key or os.environ.get("AITBC_API_KEY")
    if url is None or api_key is None:
        info = load_devnet(devnet)
        url = url or info.coordinator_url
        api_key = api_key or info.api_key
    if url is None:
        raise ConfigError("no coordinator URL: pass --coordinator or start a devnet with a coordinator")
    return CoordinatorClient(url, api_key)


def keys_dir(devnet: Path | None, explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    env = os.environ.get("AITBC_KEYS_DIR")
    if env:
        return Path(env)
    return resolve_devnet(devnet) / "keys"


def load_key(name_or_path: str | None, devnet: Path | None, keys: Path | None = None) -> KeyPair:
    """A key by file path, by name in the keys directory, or (default) the devnet faucet."""
    if name_or_path is None:
        return read_keyfile(Path(load_devnet(devnet).faucet_key))
    path = Path(name_or_path)
    if path.suffix == ".key" and path.exists():
        return read_keyfile(path)
    named = keys_dir(devnet, keys) / f"{name_or_path}.key"
    if named.exists():
        return read_keyfile(named)
    raise ConfigError(f"no key named {name_or_path!r} (looked for {named} and the path itself)")


def print_json(data: Any) -> None:
    console.print_json(data=data)


def remote_reason(exc: RemoteError) -> str:
    return exc.reason or str(exc.code)
