"""``aitbc node``: initialize and run a chain node."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aitbc.cli.common import InsecureHttpOpt, TlsCertOpt, TlsKeyOpt, console, given, handle_errors, tls_flags
from aitbc.node.config import DEFAULT_P2P_PORT, DEFAULT_RPC_PORT, DEFAULT_WS_PORT, NodeSettings

app = typer.Typer(help="Run a chain node (Proof-of-Authority validator).", no_args_is_help=True)

DataDir = Annotated[Path, typer.Option("--data-dir", help="Node data directory (genesis, keys, chain.db)")]


@app.command("init")
@handle_errors
def init(
    data_dir: DataDir,
    chain_id: Annotated[str, typer.Option(help="Chain id written into genesis")] = "aitbc-devnet",
    preset: Annotated[str, typer.Option(help="Parameter preset: devnet or mainnet")] = "devnet",
    block_time_ms: Annotated[int | None, typer.Option(help="Override the preset's block time")] = None,
) -> None:
    """Write a ready single-validator genesis: a fresh authority key and a funded faucet key."""
    from aitbc.node.init import init_data_dir

    genesis = init_data_dir(data_dir, chain_id=chain_id, preset=preset, block_time_ms=block_time_ms)
    console.print(f"[green]initialized[/] {data_dir} for chain [bold]{genesis.chain_id}[/]")
    console.print(f"  authority: {genesis.authorities[0]}  ({data_dir / 'validator.key'})")
    console.print(f"  faucet:    {genesis.balances[0].address}  ({data_dir / 'faucet.key'})")


@app.command("init-network")
@handle_errors
def init_network(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Parent directory: node{i}/ and full{j}/ go inside")],
    validators: Annotated[int, typer.Option(min=1, help="Genesis authorities (BFT when more than one)")] = 4,
    full_nodes: Annotated[int, typer.Option(min=0, help="Non-validating nodes that sync and serve reads")] = 0,
    chain_id: Annotated[str, typer.Option(help="Chain id written into genesis")] = "aitbc-devnet",
    preset: Annotated[str, typer.Option(help="Parameter preset: devnet or mainnet")] = "devnet",
    block_time_ms: Annotated[int | None, typer.Option(help="Override the preset's block time")] = None,
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="Do nothing (exit 0) if already initialized")] = False,
) -> None:
    """Write one genesis for a network of validators and full nodes, each in its own directory.

    Every node{i}/ gets its authority key, the shared genesis.json and the faucet key; every full{j}/ gets the
    genesis and a key of its own. Deployments (deploy/docker-compose.yml) run it once with every node's
    volume mounted under DATA_DIR."""
    from aitbc.node.init import init_network_dirs, is_network_initialized

    if exist_ok and is_network_initialized(data_dir):
        console.print(f"{data_dir} is already initialized; nothing to do")
        return
    genesis, validator_dirs, full_dirs = init_network_dirs(
        data_dir, validators, full_nodes, chain_id=chain_id, preset=preset, block_time_ms=block_time_ms
    )
    console.print(f"[green]initialized[/] chain [bold]{genesis.chain_id}[/] in {data_dir}")
    for d, authority in zip(validator_dirs, genesis.authorities, strict=True):
        console.print(f"  validator {authority}  ({d})")
    for d in full_dirs:
        console.print(f"  full node  ({d})")


@app.command("run")
@handle_errors
def run(
    data_dir: DataDir,
    rpc_port: Annotated[int | None, typer.Option(help=f"JSON-RPC + REST port [default: {DEFAULT_RPC_PORT}]")] = None,
    ws_port: Annotated[int | None, typer.Option(help=f"WebSocket port (path /ws) [default: {DEFAULT_WS_PORT}]")] = None,
    p2p_port: Annotated[
        int | None, typer.Option(help=f"Peer-to-peer port (multi-validator networks) [default: {DEFAULT_P2P_PORT}]")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on [default: 127.0.0.1]")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error [default: INFO]")] = None,
    peer: Annotated[
        list[str] | None, typer.Option("--peer", help="host:port of a validator's p2p port to dial (repeatable)")
    ] = None,
    timeout_propose_ms: Annotated[int | None, typer.Option(help="BFT: round-0 propose timeout [default: 1000]")] = None,
    timeout_vote_ms: Annotated[
        int | None, typer.Option(help="BFT: round-0 prevote/precommit timeout [default: 500]")
    ] = None,
    timeout_delta_ms: Annotated[
        int | None, typer.Option(help="BFT: added to every timeout per round [default: 500]")
    ] = None,
    test_byzantine: Annotated[
        bool | None, typer.Option(hidden=True, help="tests only: see aitbc.node.byzantine")
    ] = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    insecure_http: InsecureHttpOpt = False,
) -> None:
    """Run the node until Ctrl-C / SIGTERM; it resumes from its data directory.

    A genesis with several authorities runs BFT consensus over p2p (give the other validators with --peer)."""
    from aitbc.node.app import run_node
    from aitbc.runtime.logging import configure_logging

    settings = NodeSettings(
        data_dir=data_dir,
        **given(
            rpc_port=rpc_port,
            ws_port=ws_port,
            p2p_port=p2p_port,
            host=host,
            log_level=log_level,
            peers=peer or None,
            timeout_propose_ms=timeout_propose_ms,
            timeout_vote_ms=timeout_vote_ms,
            timeout_delta_ms=timeout_delta_ms,
            test_byzantine=test_byzantine,
        ),
        **tls_flags(tls_cert, tls_key, insecure_http),
    )
    configure_logging("node", settings.log_level)
    run_node(settings)
