"""``aitbc miner``: run a compute provider."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aitbc.cli.common import BaseUnitsOpt, DevnetOpt, RpcOpt, handle_errors, parse_amount

app = typer.Typer(help="Run a miner (compute provider).", no_args_is_help=True)


def _pairs(values: list[str] | None, flag: str) -> dict[str, str] | None:
    from aitbc.protocol.errors import ConfigError

    if not values:
        return None
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise ConfigError(f"{flag} takes MODEL_ID=VALUE, got {value!r}")
        pairs[key] = rest
    return pairs


@app.command("run")
@handle_errors
def run(
    coordinator: Annotated[str, typer.Option("--coordinator", help="Coordinator URL")] = "http://127.0.0.1:8011",
    backend: Annotated[str, typer.Option(help="builtin | ollama | openai | echo (instant test backend)")] = "builtin",
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Miner data directory (its key)")] = Path.home()
    / ".aitbc"
    / "miner",
    key: Annotated[Path | None, typer.Option("--key", help="Miner key file (default: DATA_DIR/miner.key)")] = None,
    price: Annotated[
        str, typer.Option(help="Price per token in AITBC (0.000001 = 1 base unit; see --base-units)")
    ] = "0.000001",
    base_units: BaseUnitsOpt = False,
    region: Annotated[str, typer.Option(help="Region label offered to clients")] = "",
    concurrency: Annotated[int, typer.Option(help="Jobs run at once")] = 1,
    ollama_url: Annotated[str, typer.Option(help="Ollama server (backend ollama)")] = "http://127.0.0.1:11434",
    openai_url: Annotated[
        str, typer.Option(help="OpenAI-compatible server (backend openai)")
    ] = "http://127.0.0.1:8000",
    openai_api_key: Annotated[str | None, typer.Option(envvar="AITBC_OPENAI_API_KEY", show_default=False)] = None,
    openai_model_file: Annotated[
        list[str] | None,
        typer.Option(help="MODEL_ID=PATH of the weights the server loads (its digest is computed); repeatable"),
    ] = None,
    openai_model_digest: Annotated[
        list[str] | None, typer.Option(help="MODEL_ID=sha256:HEX of a served model; repeatable")
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads for the builtin backend")] = 2,
    echo_token_delay: Annotated[
        float, typer.Option("--echo-token-delay", help="Seconds per generated token (backend echo; 0 = instant)")
    ] = 0.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    zk_inference: Annotated[
        bool,
        typer.Option(
            "--zk-inference",
            help="EXPERIMENTAL: also serve zk-inference jobs (the small ONNX model aitbc-zkml-mlp, proved with "
            "EZKL; needs the zkml extra; the ~140 MB proving key is generated into DATA_DIR/zkml on first use)",
        ),
    ] = False,
) -> None:
    """Register with the coordinator and run jobs until Ctrl-C (unfinished jobs are handed back)."""
    import uvloop

    from aitbc.miner.daemon import MinerConfig
    from aitbc.miner.runner import BACKENDS, build_backend, detect_hardware_dict, load_or_create_miner_key, serve_miner
    from aitbc.protocol.errors import ConfigError
    from aitbc.runtime.logging import configure_logging

    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}")
    configure_logging("miner", log_level)
    options: dict[str, object] = {}
    if backend == "echo":
        options["token_delay_s"] = echo_token_delay
    elif backend == "ollama":
        options["base_url"] = ollama_url
    elif backend == "openai":
        options["base_url"] = openai_url
        options["api_key"] = openai_api_key
        options["model_files"] = _pairs(openai_model_file, "--openai-model-file")
        options["model_digests"] = _pairs(openai_model_digest, "--openai-model-digest")
    elif backend == "builtin":
        options["n_threads"] = threads
    miner_key = load_or_create_miner_key(key or data_dir / "miner.key")
    config = MinerConfig(
        coordinator_url=coordinator,
        backend_name=backend,
        unit_price=parse_amount(price, base_units, "--price"),
        region=region,
        max_concurrency=concurrency,
        hardware=detect_hardware_dict(),
        zk_inference=zk_inference,
        data_dir=data_dir,
    )
    uvloop.run(serve_miner(config, miner_key, build_backend(backend, options)))


@app.command("earnings")
@handle_errors
def earnings(
    address: Annotated[
        str | None, typer.Option(help="Miner address (default: the key's, or the devnet miner's)", show_default=False)
    ] = None,
    key: Annotated[Path | None, typer.Option("--key", help="Miner key file", show_default=False)] = None,
    last: Annotated[int, typer.Option(help="How many recent paid jobs to list")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """What a miner has been paid on chain: every settled job's receipt total, and its balance."""
    from rich.table import Table

    from aitbc.cli.common import console, load_devnet, node_client, print_json
    from aitbc.protocol.amounts import format_aitbc
    from aitbc.protocol.errors import ConfigError
    from aitbc.runtime.keyfile import read_keyfile

    if address is None:
        if key is None:
            miner_key = load_devnet(devnet).miner_key
            if miner_key is None:
                raise ConfigError("no miner key in this devnet; pass --address or --key")
            key = Path(miner_key)
        address = read_keyfile(key).address
    with node_client(devnet, rpc) as node:
        paid = [e for e in node.iter_job_events(address) if e["kind"] == "settled" and e["miner"] == address]
        balance = int(node.get_account(address)["balance"])
    total = sum(int(e["paid_to_miner"]) for e in paid)
    if as_json:
        print_json(
            {"miner": address, "jobs_paid": len(paid), "earned": total, "balance": balance, "jobs": paid[-last:]}
        )
        return
    table = Table("job", "block", "paid", "settle tx", title=f"earnings of {address}")
    for event in paid[-last:]:
        table.add_row(
            event["job_id"],
            str(event["height"]),
            f"{format_aitbc(event['paid_to_miner'])} AITBC",
            event["tx_hash"][:16] + "…",
        )
    console.print(table)
    console.print(
        f"{len(paid)} jobs paid, [bold]{format_aitbc(total)} AITBC[/] earned; balance {format_aitbc(balance)} AITBC"
    )
