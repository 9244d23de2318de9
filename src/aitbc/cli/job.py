"""``aitbc job``: submit AI jobs, follow them live, read results and receipts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aitbc.chain.entries import PaidJob
from aitbc.cli.common import (
    ApiKeyOpt,
    BaseUnitsOpt,
    CoordinatorOpt,
    DevnetOpt,
    RpcOpt,
    console,
    coordinator_client,
    handle_errors,
    load_devnet,
    load_key,
    node_client,
    parse_amount,
    print_json,
)
from aitbc.cli.job_private import read_dataset, seal_body
from aitbc.cli.job_show import show_deposit_payment as _show_deposit_payment
from aitbc.cli.job_show import show_escrow as _show_escrow
from aitbc.cli.job_show import show_payment as _show_payment
from aitbc.cli.job_training import download_weights, follow_training, print_training_result, training_body
from aitbc.client.coordinator import CoordinatorClient
from aitbc.client.deposit import sign_deposit_job
from aitbc.client.node import NodeClient
from aitbc.client.payment import DEFAULT_DEADLINE_BLOCKS, compute_default_max_price, open_job_escrow
from aitbc.protocol.amounts import format_aitbc
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import ConfigError, RemoteError
from aitbc.protocol.sealed import open_job_output
from aitbc.protocol.zkml_input import ZKML_MODEL, format_zk_vector, parse_zk_vector
from aitbc.runtime.keyfile import read_keyfile

app = typer.Typer(help="Submit and follow AI jobs.", no_args_is_help=True)


def _default_model(client: CoordinatorClient, kind: str) -> str:
    served = [m for m in client.models() if m["kind"] == kind]
    if not served:
        raise ConfigError(f"no live miner serves a {kind} model right now")
    return str(served[0]["name"])


def _follow(client: CoordinatorClient, job_id: str) -> dict[str, Any]:
    """Stream the job's events: a status line and the tokens as they are generated."""
    text = Text()
    state = "queued"

    def render() -> Panel:
        return Panel(text, title=f"{job_id} · [bold]{state}[/]", border_style="cyan")

    with Live(render(), console=console, refresh_per_second=12, transient=False) as live:
        for event, data in client.events(job_id):
            if event == "token":
                text.append(data["text"])
            elif event == "status":
                state = data["state"]
            live.update(render())
    console.print()
    return client.job(job_id)


def _print_result(client: CoordinatorClient, job: dict[str, Any], reply_secret: bytes | None = None) -> None:
    if job["state"] != "completed":
        raise RemoteError(f"job {job['job_id']} {job['state']}: {job.get('error') or ''}", reason=f"job_{job['state']}")
    result = client.result(job["job_id"])
    if reply_secret is not None:  # a private job: the result is sealed to this run's one-off key
        output_hash = client.receipt(job["job_id"])["receipt"]["output_hash"]
        text = open_job_output(reply_secret, result["output"]["text"], output_hash).text or ""
        console.print(
            Panel(text, title="result (decrypted here; the coordinator saw ciphertext)", border_style="green")
        )
    elif "proofs" in result["output"]:
        console.print(
            f"EXPERIMENTAL zk-inference: outputs {result['output']['outputs']}, "
            f"{len(result['output']['proofs'])} EZKL proof(s); check them with `aitbc receipt verify {job['job_id']}`"
        )
    elif "training" in result["output"]:
        print_training_result(job["job_id"], result["output"]["training"])
    elif "text" in result["output"]:
        console.print(Panel(result["output"]["text"], title="result", border_style="green"))
    else:
        vectors = result["output"]["embeddings"]
        console.print(f"{len(vectors)} embeddings of {result['output']['dimensions']} dimensions")
    receipt = client.receipt(job["job_id"])["receipt"]
    table = Table("receipt", "", show_header=False)
    table.add_row("receipt hash", result["receipt_hash"])
    table.add_row("miner", receipt["miner"])
    table.add_row("model", f"{receipt['model']} ({receipt['model_digest'][:23]}…)")
    units = receipt["units"]
    table.add_row(
        "tokens",
        f"{units['prompt_tokens']} prompt + {units['completion_tokens']} generated in {units['compute_ms']} ms",
    )
    table.add_row(
        "price",
        f"{format_aitbc(receipt['total_price'])} AITBC ({format_aitbc(receipt['unit_price'])} AITBC/token)",
    )
    table.add_row("signatures", "miner ✓ coordinator ✓" if receipt["coordinator_signature"] else "miner ✓")
    console.print(table)


def _finish(client: CoordinatorClient, job_id: str, reply_secret: bytes | None, body: dict[str, Any]) -> None:
    """Follow a submitted job live, then show its result and receipt."""
    if body["type"] == "training":
        job = follow_training(client, job_id, int(body["input"]["training"]["steps"]))
    else:
        job = _follow(client, job_id)
    _print_result(client, job, reply_secret)


def _zk_vector_text(value: str) -> str:
    try:
        return format_zk_vector(parse_zk_vector(value))
    except ValueError as exc:
        raise ConfigError(f"--zk-input: {exc}") from None


def _client_key(key: str | None, devnet: Path | None) -> KeyPair:
    """The key that pays: --key (a name in the keys directory or a path), else the devnet's client key."""
    if key is not None:
        return load_key(key, devnet)
    info = load_devnet(devnet)
    if info.client_key is None:
        raise ConfigError("this devnet has no client key; pass --key NAME_OR_PATH of a funded key")
    return read_keyfile(Path(info.client_key))


@app.command("submit")
@handle_errors
def submit(
    prompt: Annotated[str | None, typer.Option("--prompt", help="Prompt for an inference job")] = None,
    text: Annotated[list[str] | None, typer.Option("--text", help="Text to embed (repeat for several)")] = None,
    zk_input: Annotated[
        list[str] | None,
        typer.Option(
            "--zk-input",
            help="EXPERIMENTAL zk-inference: an input vector for the small ONNX model aitbc-zkml-mlp, 4 numbers "
            "comma-separated (repeat for up to 4); the miner proves each run with EZKL (docs/zk.md)",
        ),
    ] = None,
    job_type: Annotated[
        str | None,
        typer.Option("--type", help="inference, embedding, zk-inference or training (default: from the input options)"),
    ] = None,
    dataset: Annotated[
        Path | None, typer.Option(help="Training: the dataset file (.csv, .npz or .jsonl; docs/training.md)")
    ] = None,
    dataset_format: Annotated[str | None, typer.Option(help="Training: csv, npz or jsonl (default: by suffix)")] = None,
    steps: Annotated[int, typer.Option(help="Training: optimiser steps")] = 100,
    batch_size: Annotated[int, typer.Option(help="Training: samples per step")] = 32,
    lr: Annotated[float, typer.Option(help="Training: learning rate")] = 0.01,
    optimiser: Annotated[str, typer.Option(help="Training: sgd, adam or adamw")] = "adam",
    checkpoint_every: Annotated[int, typer.Option(help="Training: steps between committed checkpoints")] = 10,
    model: Annotated[str | None, typer.Option(help="Model (default: the first one served)")] = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens to generate")] = 128,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0 = greedy)")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Sampling seed")] = None,
    max_price: Annotated[
        str | None,
        typer.Option(help="Most you pay, in AITBC (e.g. 0.05; default: the worst case at the live miners)"),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Stream the tokens live, then show result and receipt")] = False,
    private: Annotated[
        bool,
        typer.Option(
            "--private",
            help="Seal the prompt to the quoted miner and the result to you (needs --wait; docs/zk.md); for "
            "--type training, seal the dataset to the quoted miner (docs/training.md)",
        ),
    ] = False,
    seal_to: Annotated[
        str | None,
        typer.Option(
            "--seal-to",
            help="With --private: seal to this miner (its ait1… address) instead of the one the coordinator quotes",
            show_default=False,
        ),
    ] = None,
    zk: Annotated[bool, typer.Option("--zk", help="Ask the miner for a zk receipt proof the chain verifies")] = False,
    escrow_path: Annotated[
        bool,
        typer.Option(
            "--escrow",
            help="Pay with a per-job escrow on chain (signed by --key) even if the API key has a deposit",
        ),
    ] = False,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="Key that pays an escrow or signs a signed-mode deposit's job (name or path; default: devnet "
            "client key)",
            show_default=False,
        ),
    ] = None,
    deadline_blocks: Annotated[
        int, typer.Option(help="Blocks the escrow stays open before the chain refunds it")
    ] = DEFAULT_DEADLINE_BLOCKS,
    devnet: DevnetOpt = None,
    coordinator: CoordinatorOpt = None,
    api_key: ApiKeyOpt = None,
    rpc: RpcOpt = None,
    base_units: BaseUnitsOpt = False,
) -> None:
    """Submit an inference (--prompt), embedding (--text …) or EXPERIMENTAL zk-inference (--zk-input …) job.

    On a coordinator that takes paid jobs, an API key bound to a deposit pays from it: the job is accepted at
    once (no tx, no block to wait for) and settled later in a batch; a signed-mode deposit's job is signed
    with --key (the deposit's owner). Otherwise, or with --escrow, it first opens the job's escrow on chain
    with your key, shows it, waits for it to commit, then submits the job.
    With --wait it also shows the settlement."""
    training = job_type == "training" or dataset is not None
    if [prompt is not None, bool(text), bool(zk_input), training].count(True) != 1:
        raise ConfigError(
            "give one of --prompt (inference), --text … (embedding), --zk-input … (zk-inference, experimental) "
            "or --type training --dataset FILE"
        )
    if seal_to is not None and not private:
        raise ConfigError("--seal-to names the miner a --private job is sealed to: add --private")
    with coordinator_client(devnet, coordinator, api_key) as client:
        if training:
            if dataset is None:
                raise ConfigError("a training job needs --dataset FILE")
            fields: dict[str, Any] = {"steps": steps, "batch_size": batch_size, "lr_micro": round(lr * 1_000_000)}
            fields |= {"optimiser": optimiser, "checkpoint_every": checkpoint_every, "seed": seed or 0}
            body: dict[str, Any] = training_body(
                client, model or "mlp", dataset, dataset_format, fields, private, seal_to
            )
        elif zk_input:
            body = {
                "type": "zk-inference",
                "model": model or ZKML_MODEL,
                "input": {"texts": [_zk_vector_text(v) for v in zk_input]},
            }
        elif prompt is not None:
            body = {
                "type": "inference",
                "model": model or _default_model(client, "text"),
                "input": {"prompt": prompt},
                "params": {
                    "max_tokens": max_tokens,
                    "temperature": temperature,
                    **({"seed": seed} if seed is not None else {}),
                },
            }
        else:
            body = {
                "type": "embedding",
                "model": model or _default_model(client, "embedding"),
                "input": {"texts": text},
            }
        if max_price is not None:
            body["max_price"] = parse_amount(max_price, base_units, "--max-price")
        if zk:
            body["constraints"] = {"zk_proof_required": True}
        reply_secret = None
        plain_body = body  # the price estimate needs the input's size, which a sealed body hides
        if private and not training:  # a training job's dataset is sealed to the miner above
            body, reply_secret = seal_body(client, body, wait, seal_to)
        node_url = client.health().get("node_url")
        if node_url is None:  # a coordinator without a chain runs jobs unpaid
            job = client.submit(body)
            console.print(f"submitted [bold]{job['job_id']}[/] ({job['type']}, {job['model']}): {job['state']}")
            if wait:
                _finish(client, job["job_id"], reply_secret, body)
            return
        account = None if escrow_path else client.account()
        if account is not None:
            if account["mode"] == "signed":  # the chain pays only jobs the deposit's owner signed
                if "max_price" not in body:
                    body["max_price"] = compute_default_max_price(plain_body, client.models())
                body = sign_deposit_job(body, account, _client_key(key, devnet))
            job = client.submit(body)
            reserved = job["payment"]["escrow_amount"]
            console.print(
                f"submitted [bold]{job['job_id']}[/] ({job['type']}, {job['model']}): {job['state']}; "
                f"{format_aitbc(reserved)} AITBC reserved on deposit {account['deposit_id'][:16]}… "
                f"({format_aitbc(account['available'] - reserved)} AITBC left available)"
            )
            if wait:
                _finish(client, job["job_id"], reply_secret, body)
                with NodeClient(rpc or os.environ.get("AITBC_RPC_URL") or node_url) as node:
                    _show_deposit_payment(node, job["job_id"])
            return
        payer = _client_key(key, devnet)
        with NodeClient(rpc or os.environ.get("AITBC_RPC_URL") or node_url) as node:
            if "max_price" not in body:
                body["max_price"] = compute_default_max_price(plain_body, client.models())
            with console.status("opening the job's escrow on chain and waiting for it to commit…"):
                escrow = open_job_escrow(
                    node, payer, client.health()["coordinator"], body["max_price"], deadline_blocks=deadline_blocks
                )
            _show_escrow(escrow)
            job = client.submit({**body, "job_id": escrow.job_id})
            console.print(f"submitted [bold]{job['job_id']}[/] ({job['type']}, {job['model']}): {job['state']}")
            if not wait:
                return
            _finish(client, job["job_id"], reply_secret, body)
            _show_payment(node, job["job_id"])


@app.command("status")
@handle_errors
def status(
    job_id: str, devnet: DevnetOpt = None, coordinator: CoordinatorOpt = None, api_key: ApiKeyOpt = None
) -> None:
    """A job's state, timestamps and attempts."""
    with coordinator_client(devnet, coordinator, api_key) as client:
        print_json(client.job(job_id))


@app.command("result")
@handle_errors
def result(
    job_id: str,
    out: Annotated[Path | None, typer.Option("--out", help="Training: save the trained weights (safetensors)")] = None,
    devnet: DevnetOpt = None,
    coordinator: CoordinatorOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """A finished job's output (an error while it is still running); --out saves a training job's weights."""
    with coordinator_client(devnet, coordinator, api_key) as client:
        print_json(client.result(job_id) if out is None else download_weights(client, job_id, out))


@app.command("reseal")
@handle_errors
def reseal(
    job_id: str,
    dataset: Annotated[Path, typer.Option("--dataset", help="The private dataset the job was sealed with")],
    to: Annotated[str, typer.Option("--to", help="The job's drawn auditor or referee (ait1…)")],
    devnet: DevnetOpt = None,
    coordinator: CoordinatorOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Audited private training: re-seal the dataset to the job's drawn auditor or referee (docs/training.md)."""
    with coordinator_client(devnet, coordinator, api_key) as client:
        print_json(client.reseal_dataset(job_id, read_dataset(dataset), to))


@app.command("receipt")
@handle_errors
def receipt(
    job_id: str, devnet: DevnetOpt = None, coordinator: CoordinatorOpt = None, api_key: ApiKeyOpt = None
) -> None:
    """The miner-signed, coordinator-countersigned receipt."""
    with coordinator_client(devnet, coordinator, api_key) as client:
        print_json(client.receipt(job_id))


@app.command("cancel")
@handle_errors
def cancel(
    job_id: str, devnet: DevnetOpt = None, coordinator: CoordinatorOpt = None, api_key: ApiKeyOpt = None
) -> None:
    """Cancel a job that has not finished."""
    with coordinator_client(devnet, coordinator, api_key) as client:
        job = client.cancel(job_id)
        console.print(f"{job_id}: {job['state']}")


@app.command("list")
@handle_errors
def list_jobs(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state")] = None,
    limit: Annotated[int, typer.Option(help="How many")] = 20,
    devnet: DevnetOpt = None,
    coordinator: CoordinatorOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the page as JSON (whole jobs and next_cursor)")
    ] = False,
) -> None:
    """Your jobs, newest first (whole ids, whatever the terminal's width)."""
    with coordinator_client(devnet, coordinator, api_key) as client:
        page = client.list_jobs(state=state, limit=limit)
    if as_json:
        print_json(page)
        return
    table = Table("job", "type", "model", "state", "attempts", "miner")
    table.columns[0].no_wrap = True
    table.columns[0].min_width = max((len(j["job_id"]) for j in page["jobs"]), default=3)
    table.columns[2].overflow = "fold"
    table.columns[5].overflow = "fold"
    for job in page["jobs"]:
        table.add_row(job["job_id"], job["type"], job["model"], job["state"], str(job["attempts"]), job["miner"] or "")
    console.print(table)


def _deposit_cost(job_id: str, paid: PaidJob, as_json: bool) -> None:
    drawn = paid.paid_to_miner + paid.protocol_fee
    summary = {
        "job_id": job_id,
        "state": "settled",
        "deposit_id": paid.deposit_id,
        "height": paid.height,
        "paid_to_miner": paid.paid_to_miner,
        "protocol_fee": paid.protocol_fee,
        "total_cost": drawn,
    }
    if as_json:
        print_json(summary)
        return
    table = Table("", "", show_header=False, title=f"cost of {job_id} (settled from a deposit)")
    table.add_row("deposit", paid.deposit_id)
    table.add_row("paid to miner", f"{format_aitbc(paid.paid_to_miner)} AITBC")
    table.add_row("protocol fee", f"{format_aitbc(paid.protocol_fee)} AITBC")
    table.add_row("tx fee", "none: the coordinator's settle batch pays its own fee")
    table.add_row("[bold]total cost[/]", f"[bold]{format_aitbc(drawn)} AITBC[/]")
    console.print(table)


@app.command("cost")
@handle_errors
def cost(
    job_id: Annotated[str, typer.Argument(help="Job id")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """What a job cost its client, from the chain: escrowed, paid to the miner, protocol fee, returned, tx fee
    (per-job escrow); drawn from the deposit, paid to the miner, protocol fee (deposit job)."""
    with node_client(devnet, rpc) as node:
        found = node.get_job(job_id)
        if found is None:
            paid = node.get_verified_paid_job(job_id)[0]
            if paid is None:
                raise RemoteError(
                    f"no escrow and no deposit payment for job {job_id} on chain (not paid yet, or a deposit job "
                    "forgotten after its expiry height)",
                    reason="not_found",
                )
            _deposit_cost(job_id, paid, as_json)
            return
        escrow = found["escrow"]
        opened = next((e for e in found["events"] if e["kind"] == "escrow_opened"), None)
        open_tx = None if opened is None else node.call("get_tx", opened["tx_hash"])
        tx_fee = int(open_tx["tx"]["fee"]) if open_tx else 0
    spent = escrow["amount"] - escrow["refunded"] if escrow["state"] != "open" else escrow["amount"]
    summary = {
        "job_id": job_id,
        "state": escrow["state"],
        "client": escrow["client"],
        "escrowed": escrow["amount"],
        "paid_to_miner": escrow["paid_to_miner"],
        "protocol_fee": escrow["protocol_fee"],
        "returned": escrow["refunded"],
        "escrow_tx_fee": tx_fee,
        "total_cost": spent + tx_fee,
    }
    if as_json:
        print_json(summary)
        return
    table = Table("", "", show_header=False, title=f"cost of {job_id} ({escrow['state']})")
    table.add_row("escrowed", f"{format_aitbc(escrow['amount'])} AITBC")
    table.add_row("paid to miner", f"{format_aitbc(escrow['paid_to_miner'])} AITBC")
    table.add_row("protocol fee", f"{format_aitbc(escrow['protocol_fee'])} AITBC")
    table.add_row("returned", f"{format_aitbc(escrow['refunded'])} AITBC")
    table.add_row("escrow tx fee", f"{format_aitbc(tx_fee)} AITBC")
    label = "total cost" if escrow["state"] != "open" else "locked so far"
    table.add_row(f"[bold]{label}[/]", f"[bold]{format_aitbc(spent + tx_fee)} AITBC[/]")
    console.print(table)
