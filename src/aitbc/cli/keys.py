"""``aitbc keys``: plain Ed25519 key files (the encrypted wallet comes with the wallet daemon)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from aitbc.cli.common import DevnetOpt, console, handle_errors, keys_dir, load_key
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import ConfigError
from aitbc.runtime.keyfile import read_keyfile, write_keyfile

app = typer.Typer(help="Create and inspect plain key files.", no_args_is_help=True)

KeysDirOpt = Annotated[
    Path | None,
    typer.Option("--keys-dir", help="Key directory (default: $AITBC_KEYS_DIR or DEVNET/keys)", show_default=False),
]


@app.command("new")
@handle_errors
def new(
    name: Annotated[str, typer.Argument(help="Key name (file NAME.key)")],
    keys: KeysDirOpt = None,
    devnet: DevnetOpt = None,
) -> None:
    """Generate a new key."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError("key names may use letters, digits, '-' and '_'")
    path = keys_dir(devnet, keys) / f"{name}.key"
    key = KeyPair.generate()
    write_keyfile(path, key)
    console.print(f"[green]created[/] {name}: [bold]{key.address}[/]  ({path})")


@app.command("list")
@handle_errors
def list_keys(keys: KeysDirOpt = None, devnet: DevnetOpt = None) -> None:
    """List keys in the key directory."""
    directory = keys_dir(devnet, keys)
    table = Table("name", "address", "file")
    for path in sorted(directory.glob("*.key")) if directory.exists() else []:
        try:
            table.add_row(path.stem, read_keyfile(path).address, str(path))
        except ConfigError as exc:
            table.add_row(path.stem, f"[red]{exc.message}[/]", str(path))
    console.print(table)


@app.command("show")
@handle_errors
def show(
    name: Annotated[str, typer.Argument(help="Key name or path to a .key file")],
    keys: KeysDirOpt = None,
    devnet: DevnetOpt = None,
) -> None:
    """Show a key's address and public key (never its seed)."""
    key = load_key(name, devnet, keys)
    console.print(f"address:    [bold]{key.address}[/]")
    console.print(f"public key: {key.public_key.hex()}")
