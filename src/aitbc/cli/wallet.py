"""``aitbc wallet``: encrypted keystores, the wallet daemon, and multisig accounts.

Passphrases are never taken from argv: ``--passphrase-file``, ``$AITBC_WALLET_PASSPHRASE``, or a
prompt without echo. ``list``, ``balance``, ``send``, ``unlock`` and ``lock`` go through the daemon
when it runs (its ``daemon.info`` and token are in the wallet directory); otherwise the commands
that can work from the keystore directly do so.
"""

from __future__ import annotations

import contextlib
import getpass
import os
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.table import Table

from aitbc.cli.common import (
    DevnetOpt,
    InsecureHttpOpt,
    RpcOpt,
    TlsCertOpt,
    TlsKeyOpt,
    console,
    err_console,
    given,
    handle_errors,
    load_devnet,
    node_client,
    tls_flags,
)
from aitbc.client.node import NodeClient
from aitbc.client.wallet import WalletClient
from aitbc.protocol.address import decode_address
from aitbc.protocol.amounts import format_aitbc, parse_aitbc
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import AitbcError, ConfigError, InvalidAddress, RemoteError
from aitbc.protocol.tx import (
    Transfer,
    sign_tx,
)
from aitbc.wallet.config import DEFAULT_WALLET_PORT, INFO_FILE, TOKEN_FILE, WalletSettings
from aitbc.wallet.keystore import mnemonic_to_seed, seed_to_mnemonic
from aitbc.wallet.store import WalletStore, default_wallet_dir

PASSPHRASE_ENV = "AITBC_WALLET_PASSPHRASE"  # noqa: S105 (a variable name)
NEW_PASSPHRASE_ENV = "AITBC_WALLET_NEW_PASSPHRASE"  # noqa: S105

app = typer.Typer(help="Encrypted wallets, the wallet daemon and multisig accounts.", no_args_is_help=True)
# ``aitbc wallet multisig`` lives in ``aitbc.cli.wallet_multisig`` (added to this app by ``aitbc.cli.main``).

WalletDirOpt = Annotated[
    Path | None,
    typer.Option("--wallet-dir", help="Keystore directory (default: $AITBC_WALLET_DIR or ~/.aitbc/wallets)"),
]
NameOpt = Annotated[str, typer.Option("--name", "-n", help="Wallet name")]
PassFileOpt = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help=f"Read the passphrase from this file (else ${PASSPHRASE_ENV}, else ask)"),
]
FeeOpt = Annotated[str, typer.Option("--fee", help="Fee in AITBC")]


def _dir(wallet_dir: Path | None) -> Path:
    return wallet_dir if wallet_dir is not None else default_wallet_dir()


def read_passphrase(
    passphrase_file: Path | None, *, env: str = PASSPHRASE_ENV, prompt: str = "Passphrase", confirm: bool = False
) -> str:
    """From the file, the environment, or a prompt without echo (asked twice when ``confirm``)."""
    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {passphrase_file}: {exc.strerror}") from None
        passphrase = text.rstrip("\r\n")
    elif os.environ.get(env):
        passphrase = os.environ[env]
    else:
        passphrase = getpass.getpass(f"{prompt}: ")
        if confirm and getpass.getpass(f"{prompt} (again): ") != passphrase:
            raise ConfigError("the passphrases differ")
    if not passphrase:
        raise ConfigError("the passphrase must not be empty", reason="empty_passphrase")
    return passphrase


def daemon_client(wallet_dir: Path) -> WalletClient | None:
    """A client of the daemon serving ``wallet_dir``, or None when none answers."""
    try:
        info = orjson.loads((wallet_dir / INFO_FILE).read_bytes())
        token = (wallet_dir / TOKEN_FILE).read_text().strip()
    except (OSError, orjson.JSONDecodeError):
        return None
    url = str(info.get("url", ""))
    try:
        if httpx.get(f"{url}/healthz", timeout=2.0).status_code != 200:
            return None
    except httpx.HTTPError:
        return None
    return WalletClient(url, token)


def _require_daemon(wallet_dir: Path) -> WalletClient:
    client = daemon_client(wallet_dir)
    if client is None:
        raise ConfigError(f"no wallet daemon serves {wallet_dir}; start one with `aitbc wallet daemon`")
    return client


def _default_rpc(rpc: str | None, devnet: Path | None) -> str | None:
    if rpc:
        return rpc
    if os.environ.get("AITBC_RPC_URL"):
        return os.environ["AITBC_RPC_URL"]
    with contextlib.suppress(AitbcError):
        return load_devnet(devnet).rpc_url
    return None


def _units(amount: str, what: str) -> int:
    try:
        return parse_aitbc(amount)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _address(value: str, what: str) -> str:
    try:
        decode_address(value)
    except InvalidAddress as exc:
        raise ConfigError(f"{what}: {exc.message}") from None
    return value


def _wait(node: NodeClient, tx_hash: str) -> dict[str, Any]:
    with console.status("waiting for a block…"):
        status = node.wait_for_tx(tx_hash)
    if status["status"] == "rejected":
        raise RemoteError(f"tx was dropped: {status.get('reason')}", reason=status.get("reason"))
    return status


# -- daemon -------------------------------------------------------------------------------------------------
@app.command("daemon")
@handle_errors
def daemon(
    wallet_dir: WalletDirOpt = None,
    port: Annotated[
        int | None, typer.Option(help=f"Port (loopback); 0 picks a free one [default: {DEFAULT_WALLET_PORT}]")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Interface; only loopback unless --force [default: 127.0.0.1]")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Allow a non-loopback interface")] = False,
    rpc: RpcOpt = None,
    coordinator: Annotated[str | None, typer.Option("--coordinator", help="Coordinator URL (receipts)")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="AITBC_API_KEY", show_default=False)] = None,
    unlock_timeout: Annotated[
        float | None, typer.Option(help="Default seconds an unlocked key stays unlocked [default: 300]")
    ] = None,
    max_failed_unlocks: Annotated[
        int | None, typer.Option(help="Failed unlocks per wallet per minute before 429 [default: 5]")
    ] = None,
    devnet: DevnetOpt = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error [default: INFO]")] = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    insecure_http: InsecureHttpOpt = False,
) -> None:
    """Run the wallet daemon (REST /v1/wallets, JSON-RPC /rpc) until Ctrl-C / SIGTERM."""
    from aitbc.runtime.logging import configure_logging
    from aitbc.wallet.app import run_daemon

    coordinator_url = coordinator or os.environ.get("AITBC_COORDINATOR_URL")
    if coordinator_url is None:
        with contextlib.suppress(AitbcError):
            info = load_devnet(devnet)
            coordinator_url, api_key = info.coordinator_url, api_key or info.api_key
    settings = WalletSettings(
        wallet_dir=_dir(wallet_dir),
        **given(
            host=host,
            port=port,
            force_bind=force or None,
            rpc_url=_default_rpc(rpc, devnet),
            coordinator_url=coordinator_url,
            coordinator_api_key=api_key,
            unlock_timeout_s=unlock_timeout,
            max_failed_unlocks=max_failed_unlocks,
            log_level=log_level,
        ),
        **tls_flags(tls_cert, tls_key, insecure_http),
    )
    configure_logging("wallet", settings.log_level)
    run_daemon(settings)


# -- keystore commands ----------------------------------------------------------------------------------------
@app.command("create")
@handle_errors
def create(
    name: NameOpt,
    wallet_dir: WalletDirOpt = None,
    passphrase_file: PassFileOpt = None,
    show_mnemonic: Annotated[bool, typer.Option("--show-mnemonic", help="Print the 24-word backup once")] = False,
) -> None:
    """Create a wallet: a new key sealed under a passphrase (Argon2id 64 MiB, t=3)."""
    store = WalletStore(_dir(wallet_dir))
    store.path(name)  # name check before asking for a passphrase
    passphrase = read_passphrase(passphrase_file, prompt="New passphrase", confirm=True)
    seed = os.urandom(32)
    info = store.create(name, passphrase, seed=seed)
    console.print(f"[green]created[/] {name}: [bold]{info.address}[/]  ({info.path})")
    if show_mnemonic:
        console.print("backup (24 words; anyone holding them holds the key):")
        console.print(seed_to_mnemonic(seed), soft_wrap=True)


@app.command("list")
@handle_errors
def list_wallets(wallet_dir: WalletDirOpt = None) -> None:
    """List wallets (and which the daemon holds unlocked)."""
    directory = _dir(wallet_dir)
    client = daemon_client(directory)
    table = Table("name", "address", "unlocked")
    if client is not None:
        with client:
            for w in client.list_wallets():
                if "error" in w:
                    table.add_row("?", f"[red]{w['error']['message']}[/]", "")
                else:
                    table.add_row(w["name"], w["address"], "yes" if w["unlocked"] else "no")
    else:
        for item in WalletStore(directory).list_wallets():
            if isinstance(item, AitbcError):
                table.add_row("?", f"[red]{item.message}[/]", "")
            else:
                table.add_row(item.name, item.address, "(no daemon)")
    console.print(table)


@app.command("unlock")
@handle_errors
def unlock(
    name: NameOpt,
    wallet_dir: WalletDirOpt = None,
    passphrase_file: PassFileOpt = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds until the daemon wipes the key again")] = None,
) -> None:
    """Unlock a wallet in the running daemon."""
    with _require_daemon(_dir(wallet_dir)) as client:
        result = client.unlock(name, read_passphrase(passphrase_file), timeout)
    console.print(f"[green]unlocked[/] {name} ({result['address']}) for {result['expires_in_s']:.0f}s")


@app.command("lock")
@handle_errors
def lock(name: NameOpt, wallet_dir: WalletDirOpt = None) -> None:
    """Wipe a wallet's key from the daemon's memory."""
    with _require_daemon(_dir(wallet_dir)) as client:
        client.lock(name)
    console.print(f"locked {name}")


@app.command("balance")
@handle_errors
def balance(name: NameOpt, wallet_dir: WalletDirOpt = None, devnet: DevnetOpt = None, rpc: RpcOpt = None) -> None:
    """A wallet's balance on chain."""
    directory = _dir(wallet_dir)
    client = daemon_client(directory)
    if client is not None:
        with client:
            account = client.balance(name)
    else:
        address = WalletStore(directory).read(name).address
        with node_client(devnet, rpc) as node:
            account = node.get_account(address)
    console.print(f"{name} {account['address']}: [bold]{format_aitbc(account['balance'])}[/] AITBC")
    console.print(f"  nonce {account['nonce']}, at height {account['height']}")


def _unlock_local(directory: Path, name: str, passphrase_file: Path | None) -> KeyPair:
    store = WalletStore(directory)
    store.read(name)  # NotFound before asking for a passphrase
    return store.unlock(name, read_passphrase(passphrase_file))


@app.command("send")
@handle_errors
def send(
    name: NameOpt,
    to: Annotated[str, typer.Option("--to", help="Recipient address (ait1…)")],
    amount: Annotated[str, typer.Option("--amount", help="Amount in AITBC, e.g. 1.5")],
    fee: FeeOpt = "0.001",
    memo: Annotated[str, typer.Option(help="Free text, at most 256 bytes")] = "",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the tx is committed")] = True,
    wallet_dir: WalletDirOpt = None,
    passphrase_file: PassFileOpt = None,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Send AITBC: signed by the daemon if it holds the wallet unlocked, else with the keystore directly."""
    _address(to, "--to")
    units, fee_units = _units(amount, "--amount"), _units(fee, "--fee")
    directory = _dir(wallet_dir)
    client = daemon_client(directory)
    unlocked = False
    if client is not None:
        unlocked = any(w.get("name") == name and w.get("unlocked") for w in client.list_wallets())
    if client is not None and unlocked:
        with client:
            result = client.send(name, to, units, fee_units, memo, wait=wait)
        tx_hash = str(result["tx_hash"])
        console.print(f"sent {format_aitbc(units)} AITBC to {to}\n  tx {tx_hash}")
        if wait:
            if result.get("status") == "rejected":
                raise RemoteError(f"tx was dropped: {result.get('reason')}", reason=result.get("reason"))
            console.print(f"[green]committed[/] in block {result['height']}")
        return
    if client is not None:
        client.close()
    key = _unlock_local(directory, name, passphrase_file)
    with node_client(devnet, rpc) as node:
        tx = Transfer(
            chain_id=node.get_chain_info()["chain_id"],
            sender=key.address,
            nonce=node.next_nonce(key.address),
            fee=fee_units,
            recipient=to,
            amount=units,
            memo=memo,
        )
        tx_hash = node.send_tx(sign_tx(tx, key))
        console.print(f"sent {format_aitbc(units)} AITBC to {to}\n  tx {tx_hash}")
        if wait:
            console.print(f"[green]committed[/] in block {_wait(node, tx_hash)['height']}")


@app.command("export")
@handle_errors
def export(
    name: NameOpt,
    show_seed: Annotated[bool, typer.Option("--show-seed", help="Print the raw seed (hex)")] = False,
    mnemonic: Annotated[bool, typer.Option("--mnemonic", help="Print the 24-word BIP39 backup")] = False,
    wallet_dir: WalletDirOpt = None,
    passphrase_file: PassFileOpt = None,
) -> None:
    """Print a wallet's secret: only with an explicit --show-seed or --mnemonic."""
    if not (show_seed or mnemonic):
        raise ConfigError("exporting prints the secret key: say so with --show-seed or --mnemonic")
    key = _unlock_local(_dir(wallet_dir), name, passphrase_file)
    err_console.print(f"[yellow]secret of {name} ({key.address}); anyone holding it holds the funds[/]")
    if show_seed:
        console.print(key.seed.hex())
    if mnemonic:
        console.print(seed_to_mnemonic(key.seed), soft_wrap=True)


@app.command("import")
@handle_errors
def import_(
    name: NameOpt,
    mnemonic_file: Annotated[Path | None, typer.Option("--mnemonic-file", help="File with the 24 words")] = None,
    seed_file: Annotated[
        Path | None, typer.Option("--seed-file", help="File with a raw 32-byte seed in hex (explicit import)")
    ] = None,
    wallet_dir: WalletDirOpt = None,
    passphrase_file: PassFileOpt = None,
) -> None:
    """Restore a wallet from its 24-word backup (asked without echo when no file is given) or a seed file."""
    store = WalletStore(_dir(wallet_dir))
    store.path(name)
    if seed_file is not None:
        try:
            seed = bytes.fromhex(seed_file.read_text().strip())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read a hex seed from {seed_file}: {exc}") from None
        if len(seed) != 32:
            raise ConfigError("a seed is 32 bytes (64 hex characters)")
    else:
        words = mnemonic_file.read_text() if mnemonic_file is not None else getpass.getpass("24 words: ")
        seed = mnemonic_to_seed(words)
    info = store.create(name, read_passphrase(passphrase_file, prompt="New passphrase", confirm=True), seed=seed)
    console.print(f"[green]imported[/] {name}: [bold]{info.address}[/]  ({info.path})")


@app.command("change-passphrase")
@handle_errors
def change_passphrase(
    name: NameOpt,
    wallet_dir: WalletDirOpt = None,
    passphrase_file: PassFileOpt = None,
    new_passphrase_file: Annotated[
        Path | None,
        typer.Option("--new-passphrase-file", help=f"The new passphrase (else ${NEW_PASSPHRASE_ENV}, else ask)"),
    ] = None,
) -> None:
    """Re-encrypt a wallet under a new passphrase (fresh salt and nonce; the file is replaced atomically)."""
    store = WalletStore(_dir(wallet_dir))
    store.read(name)
    old = read_passphrase(passphrase_file, prompt="Current passphrase")
    new = read_passphrase(new_passphrase_file, env=NEW_PASSPHRASE_ENV, prompt="New passphrase", confirm=True)
    store.change_passphrase(name, old, new)
    console.print(f"[green]passphrase changed[/] for {name}")
