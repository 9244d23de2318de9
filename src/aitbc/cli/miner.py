"""``aitbc miner``: run a compute provider."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aitbc.cli.common import BaseUnitsOpt, DevnetOpt, RpcOpt, given, handle_errors, parse_amount

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
    coordinator: Annotated[
        str | None, typer.Option("--coordinator", help="Coordinator URL [default: http://127.0.0.1:8011]")
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="builtin | ollama | openai | echo (instant test backend) [default: builtin]")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Miner data directory (its key) [default: ~/.aitbc/miner]")
    ] = None,
    key: Annotated[Path | None, typer.Option("--key", help="Miner key file (default: DATA_DIR/miner.key)")] = None,
    price: Annotated[
        str | None,
        typer.Option(help="Price per token in AITBC (0.000001 = 1 base unit; see --base-units) [default: 0.000001]"),
    ] = None,
    base_units: BaseUnitsOpt = False,
    region: Annotated[str | None, typer.Option(help="Region label offered to clients")] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Jobs run at once, advertised to the coordinator [default: builtin: slots x models, else 1]"),
    ] = None,
    claim_batch: Annotated[
        int | None,
        typer.Option(help="Jobs claimed per long-poll and results delivered per request (1: one request per job)"),
    ] = None,
    ollama_url: Annotated[
        str | None, typer.Option(help="Ollama server (backend ollama) [default: http://127.0.0.1:11434]")
    ] = None,
    openai_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible server (backend openai) [default: http://127.0.0.1:8000]")
    ] = None,
    openai_api_key: Annotated[str | None, typer.Option(envvar="AITBC_OPENAI_API_KEY", show_default=False)] = None,
    openai_model_file: Annotated[
        list[str] | None,
        typer.Option(help="MODEL_ID=PATH of the weights the server loads (its digest is computed); repeatable"),
    ] = None,
    openai_model_digest: Annotated[
        list[str] | None, typer.Option(help="MODEL_ID=sha256:HEX of a served model; repeatable")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for the builtin backend [default: automatic, by measured speed]")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="Builtin text model: smollm2-135m-instruct or gemma3-270m (Gemma Terms of Use apply); repeatable "
            "[default: smollm2-135m-instruct]",
        ),
    ] = None,
    slots: Annotated[
        int | None, typer.Option(help="Builtin backend: generations decoded together per text model [default: 4]")
    ] = None,
    gpu_layers: Annotated[
        int | None,
        typer.Option(help="Builtin backend: layers on the GPU, -1 all, 0 none [default: all on a CUDA build, else 0]"),
    ] = None,
    omp_spincount: Annotated[
        int | None, typer.Option(help="Builtin backend: OpenMP spin before sleeping (GOMP_SPINCOUNT) [default: 20000]")
    ] = None,
    echo_token_delay: Annotated[
        float | None,
        typer.Option("--echo-token-delay", help="Seconds per generated token (backend echo; 0 = instant)"),
    ] = None,
    node: Annotated[
        str | None,
        typer.Option(
            "--node",
            help="Node JSON-RPC URL: also audit (re-run the jobs the chain draws this miner for and report on "
            "chain; needs `aitbc miner bond` with the served model digests; docs/verification.md)",
        ),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error [default: INFO]")] = None,
    zk_inference: Annotated[
        bool | None,
        typer.Option(
            "--zk-inference",
            help="EXPERIMENTAL: also serve zk-inference jobs (the small ONNX model aitbc-zkml-mlp, proved with "
            "EZKL; needs the zkml extra; the ~140 MB proving key is generated into DATA_DIR/zkml on first use)",
        ),
    ] = None,
    training: Annotated[
        bool | None,
        typer.Option(
            "--training",
            help="Also serve training jobs (logreg, mlp, cnn, minilm-pairs; needs torch; checkpoints kept in "
            "DATA_DIR/training for the dispute window; docs/training.md)",
        ),
    ] = None,
) -> None:
    """Register with the coordinator and run jobs until Ctrl-C (unfinished jobs are handed back).

    Options not given come from AITBC_MINER_* (e.g. AITBC_MINER_BACKEND=echo), then the defaults."""
    import uvloop
    from pydantic import ValidationError

    from aitbc.miner.config import MinerSettings
    from aitbc.miner.runner import (
        backend_options,
        build_backend,
        detect_hardware_dict,
        load_or_create_miner_key,
        serve_miner,
        with_backend_concurrency,
    )
    from aitbc.protocol.errors import ConfigError
    from aitbc.runtime.logging import configure_logging

    try:
        settings = MinerSettings(
            **given(
                coordinator_url=coordinator,
                backend=backend,
                data_dir=data_dir,
                key_path=key,
                unit_price=None if price is None else parse_amount(price, base_units, "--price"),
                region=region,
                max_concurrency=concurrency,
                claim_batch=claim_batch,
                ollama_url=ollama_url,
                openai_url=openai_url,
                openai_api_key=openai_api_key,
                threads=threads,
                text_models=tuple(model) if model else None,
                slots=slots,
                gpu_layers=gpu_layers,
                omp_spincount=omp_spincount,
                echo_token_delay_s=echo_token_delay,
                node_url=node,
                log_level=log_level,
                zk_inference=zk_inference,
                training=training,
            )
        )
    except ValidationError as exc:
        raise ConfigError(f"invalid miner settings: {exc}") from None
    configure_logging("miner", settings.log_level)
    options = backend_options(
        settings,
        _pairs(openai_model_file, "--openai-model-file"),
        _pairs(openai_model_digest, "--openai-model-digest"),
    )
    miner_key = load_or_create_miner_key(settings.resolved_key_path)
    if settings.backend != "builtin" and "text_models" in settings.model_fields_set:
        raise ConfigError("--model picks builtin text models; other backends serve what their server has")
    backend_impl = build_backend(settings.backend, options)
    settings = with_backend_concurrency(settings, backend_impl)
    uvloop.run(serve_miner(settings, miner_key, backend_impl, detect_hardware_dict()))


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
