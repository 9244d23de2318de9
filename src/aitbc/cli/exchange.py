"""``aitbc exchange``: run the BTC <-> AITBC exchange; operator tools (xpub, users, withdrawal PSBTs); user
commands over its API (balances, orders)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from aitbc.cli.common import InsecureHttpOpt, TlsCertOpt, TlsKeyOpt, console, given, handle_errors, tls_flags
from aitbc.exchange.config import DEFAULT_EXCHANGE_PORT
from aitbc.protocol.errors import ConfigError

app = typer.Typer(help="The BTC <-> AITBC trade exchange (docs/exchange.md).", no_args_is_help=True)


@app.command("run")
@handle_errors
def run(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Exchange data directory (SQLite database)")],
    port: Annotated[
        int | None, typer.Option(help=f"HTTP port; 0 picks a free one [default: {DEFAULT_EXCHANGE_PORT}]")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on [default: 127.0.0.1]")] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="SQLAlchemy URL (default: $AITBC_EXCHANGE_DATABASE_URL, else SQLite in the data dir)",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error [default: INFO]")] = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    insecure_http: InsecureHttpOpt = False,
) -> None:
    """Serve the exchange API and feed until Ctrl-C. Bitcoin, AITBC and market settings: AITBC_EXCHANGE_…
    (e.g. AITBC_EXCHANGE_BITCOIN__XPUB, AITBC_EXCHANGE_BITCOIN__RPC_URL, AITBC_EXCHANGE_MARKET__TICK_SIZE)."""
    from aitbc.exchange.app import run_exchange
    from aitbc.exchange.config import ExchangeSettings
    from aitbc.runtime.logging import configure_logging

    settings = ExchangeSettings(
        data_dir=data_dir,
        **given(port=port, host=host, log_level=log_level, database_url=database_url),
        **tls_flags(tls_cert, tls_key, insecure_http),
    )
    configure_logging("exchange", settings.log_level)
    run_exchange(settings)


UrlOpt = Annotated[str, typer.Option("--url", envvar="AITBC_EXCHANGE_URL", help="Exchange URL")]
TokenOpt = Annotated[
    str, typer.Option("--token", envvar="AITBC_EXCHANGE_TOKEN", help="Session token (s_…) or API key (k_…)")
]
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_EXCHANGE_PORT}"

# -- operator ---------------------------------------------------------------------------------------------


@app.command("xpub")
@handle_errors
def xpub(
    key_file: Annotated[Path, typer.Option("--key-file", help="Where to write the master private key (0600)")],
    network: Annotated[str, typer.Option(help="mainnet, testnet or regtest")] = "regtest",
) -> None:
    """Create the exchange's Bitcoin key: a new BIP39 seed, its master key written to KEY_FILE (keep it offline:
    it signs withdrawals), and the BIP84 account xpub to configure (AITBC_EXCHANGE_BITCOIN__XPUB)."""
    import secrets

    from embit import bip32, bip39

    from aitbc.exchange.bitcoin.addresses import network_params
    from aitbc.exchange.config import BitcoinNetwork
    from aitbc.runtime.files import atomic_write

    net = BitcoinNetwork(network)
    if key_file.exists():
        raise ConfigError(f"refusing to overwrite {key_file}")
    mnemonic = bip39.mnemonic_from_bytes(secrets.token_bytes(32))
    params = network_params(net)
    root = bip32.HDKey.from_seed(bip39.mnemonic_to_seed(mnemonic), version=params["xprv"])
    coin = 0 if net is BitcoinNetwork.MAINNET else 1
    account = root.derive(f"m/84h/{coin}h/0h").to_public()
    atomic_write(key_file, (root.to_string() + "\n").encode(), mode=0o600)
    descriptor = f"[{root.my_fingerprint.hex()}/84h/{coin}h/0h]{account.to_string()}"
    console.print(f"master key written to {key_file} (0600); its BIP39 backup, write it down now:")
    console.print(f"  {mnemonic}")
    console.print("configure the exchange with:")
    console.print(f"  AITBC_EXCHANGE_BITCOIN__NETWORK={net.value}")
    typer.echo(f"  AITBC_EXCHANGE_BITCOIN__XPUB='{descriptor}'")  # not rich: "[fp/84h/…]" is not markup


users_app = typer.Typer(help="Exchange users (operator, on the exchange's database).", no_args_is_help=True)
app.add_typer(users_app, name="users")


def _service_store(data_dir: Path, database_url: str | None) -> Any:
    from aitbc.exchange.config import ExchangeSettings
    from aitbc.exchange.store import ExchangeStore

    settings = ExchangeSettings(data_dir=data_dir, **given(database_url=database_url))
    data_dir.mkdir(parents=True, exist_ok=True)
    spec = settings.market.spec()
    return settings, ExchangeStore(settings.sqlalchemy_url, spec.base, spec.quote)


DataDirOpt = Annotated[Path, typer.Option("--data-dir", help="Exchange data directory")]
DbOpt = Annotated[
    str | None, typer.Option(help="SQLAlchemy URL (default: $AITBC_EXCHANGE_DATABASE_URL, else SQLite in the data dir)")
]


@users_app.command("create")
@handle_errors
def users_create(
    data_dir: DataDirOpt,
    username: Annotated[str, typer.Option(help="Login name")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    operator: Annotated[bool, typer.Option(help="May sign withdrawals and list users")] = False,
    database_url: DbOpt = None,
) -> None:
    """Create a user (operators are created here: the API has no way to become one)."""
    from aitbc.exchange.accounts import Accounts

    settings, store = _service_store(data_dir, database_url)
    if len(password) < 10:
        raise ConfigError("passwords have at least 10 characters")
    accounts = Accounts(settings, store)
    user_id = accounts.create_user(username, accounts.hash_password(password), is_operator=operator)
    console.print(f"user {username} created (id {user_id}{', operator' if operator else ''})")


@users_app.command("list")
@handle_errors
def users_list(data_dir: DataDirOpt, database_url: DbOpt = None) -> None:
    """Users with their balances from the journal (available / held, smallest units)."""
    import sqlalchemy as sa
    from rich.table import Table

    from aitbc.exchange.db import schema
    from aitbc.market.ledger import available_account, held_account

    _, store = _service_store(data_dir, database_url)
    sums = store.journal_balances()
    table = Table("id", "username", "2FA", "operator", "BTC avail", "BTC held", "AITBC avail", "AITBC held")
    for r in store.fetch_all(sa.select(schema.users).order_by(schema.users.c.id)):
        uid = str(r.id)
        cells = [
            str(sums.get((acct(uid), asset), 0))
            for asset in ("BTC", "AITBC")
            for acct in (available_account, held_account)
        ]
        table.add_row(uid, r.username, "on" if r.totp_enabled else "off", "yes" if r.is_operator else "", *cells)
    console.print(table)


@app.command("sign-psbt")
@handle_errors
def sign_psbt_cmd(
    psbt: Annotated[str, typer.Argument(help="The PSBT (base64), or @FILE")],
    key_file: Annotated[Path, typer.Option("--key-file", help="The master (or account) private key file")],
) -> None:
    """Sign a withdrawal PSBT offline; prints the signed PSBT (base64)."""
    from aitbc.exchange.bitcoin.psbt import parse_psbt, read_hot_key, sign_psbt

    text = Path(psbt[1:]).read_text() if psbt.startswith("@") else psbt
    parsed = parse_psbt(text)
    signed = sign_psbt(parsed, read_hot_key(key_file.read_text()))
    if signed != len(parsed.inputs):
        raise ConfigError(f"this key signed {signed} of {len(parsed.inputs)} inputs: wrong key for this PSBT")
    typer.echo(parsed.to_string())


@app.command("withdrawals")
@handle_errors
def withdrawals(
    token: TokenOpt,
    url: UrlOpt = DEFAULT_URL,
    key_file: Annotated[
        Path | None, typer.Option("--key-file", help="Sign every pending PSBT with this key and submit it")
    ] = None,
) -> None:
    """Pending BTC withdrawals (operator session); with --key-file, sign and submit them."""
    from aitbc.client.exchange import ExchangeClient
    from aitbc.exchange.bitcoin.psbt import parse_psbt, read_hot_key, sign_psbt

    with ExchangeClient(url, token) as client:
        pending = client.pending_withdrawals()
        key = read_hot_key(key_file.read_text()) if key_file else None
        for w in pending:
            console.print(f"{w['ref']}  user {w['user_id']}  {w['amount']} sat + fee {w['fee']} -> {w['address']}")
            if key is not None and w["asset"] == "BTC":
                psbt = parse_psbt(w["psbt"])
                if sign_psbt(psbt, key) != len(psbt.inputs):
                    raise ConfigError(f"{w['ref']}: wrong key for this PSBT")
                result = client.submit_signed_withdrawal(w["ref"], psbt.to_string())
                console.print(f"  signed and {result['status']}: {result['txid']}")
        if not pending:
            console.print("no withdrawal waits for a signature")


# -- users ------------------------------------------------------------------------------------------------


@app.command("login")
@handle_errors
def login(
    username: Annotated[str, typer.Option(help="Login name")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
    totp: Annotated[str | None, typer.Option(help="2FA code, if 2FA is on")] = None,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Log in; prints the session token (export AITBC_EXCHANGE_TOKEN=…)."""
    from aitbc.client.exchange import ExchangeClient

    with ExchangeClient(url) as client:
        session = client.login(username, password, totp)
    typer.echo(session["token"])


@app.command("balances")
@handle_errors
def balances(token: TokenOpt, url: UrlOpt = DEFAULT_URL) -> None:
    """Your balances (smallest units: satoshis, AITBC base units)."""
    from rich.table import Table

    from aitbc.client.exchange import ExchangeClient

    with ExchangeClient(url, token) as client:
        table = Table("asset", "available", "held")
        for asset, b in client.balances().items():
            table.add_row(asset, str(b["available"]), str(b["held"]))
    console.print(table)


@app.command("orders")
@handle_errors
def orders(
    token: TokenOpt, url: UrlOpt = DEFAULT_URL, all_orders: Annotated[bool, typer.Option("--all")] = False
) -> None:
    """Your open orders (--all: the latest 100 of any status)."""
    from rich.table import Table

    from aitbc.client.exchange import ExchangeClient

    with ExchangeClient(url, token) as client:
        rows = client.orders("all" if all_orders else "open")
    table = Table("id", "side", "type", "price", "quantity", "filled", "status")
    for o in rows:
        table.add_row(
            str(o["order_id"]), o["side"], o["type"], str(o["price"]), str(o["quantity"]), str(o["filled"]), o["status"]
        )
    console.print(table)


@app.command("order")
@handle_errors
def order(
    side: Annotated[str, typer.Argument(help="buy or sell")],
    quantity: Annotated[int, typer.Option(help="AITBC base units (10**6 per AITBC)")],
    token: TokenOpt,
    price: Annotated[int | None, typer.Option(help="Satoshis per AITBC; omit for a market order")] = None,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Place a limit order (with --price) or a market order."""
    from aitbc.client.exchange import ExchangeClient

    body: dict[str, Any] = {"side": side, "quantity": quantity, "type": "limit" if price is not None else "market"}
    if price is not None:
        body["price"] = price
    with ExchangeClient(url, token) as client:
        result = client.place_order(**body)
    console.print(f"order {result['order_id']}: {result['status']}, filled {result['filled']} of {quantity}")


@app.command("cancel")
@handle_errors
def cancel(order_id: int, token: TokenOpt, url: UrlOpt = DEFAULT_URL) -> None:
    """Cancel one of your open orders."""
    from aitbc.client.exchange import ExchangeClient

    with ExchangeClient(url, token) as client:
        result = client.cancel_order(order_id)
    console.print(f"order {order_id} cancelled; {result['released']} released")
