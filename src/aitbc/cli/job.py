"""``aitbc job``: submit AI jobs, follow them live, read results and receipts."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aitbc.cli.common import (
    ApiKeyOpt,
    CoordinatorOpt,
    DevnetOpt,
    console,
    coordinator_client,
    handle_errors,
    print_json,
)
from aitbc.client.coordinator import CoordinatorClient
from aitbc.protocol.errors import ConfigError, RemoteError

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


def _print_result(client: CoordinatorClient, job: dict[str, Any]) -> None:
    if job["state"] != "completed":
        raise RemoteError(f"job {job['job_id']} {job['state']}: {job.get('error') or ''}", reason=f"job_{job['state']}")
    result = client.result(job["job_id"])
    if "text" in result["output"]:
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
    table.add_row("price", f"{receipt['total_price']} base units ({receipt['unit_price']}/token)")
    table.add_row("signatures", "miner ✓ coordinator ✓" if receipt["coordinator_signature"] else "miner ✓")
    console.print(table)


@app.command("submit")
@handle_errors
def submit(
    prompt: Annotated[str | None, typer.Option("--prompt", help="Prompt for an inference job")] = None,
    text: Annotated[list[str] | None, typer.Option("--text", help="Text to embed (repeat for several)")] = None,
    model: Annotated[str | None, typer.Option(help="Model (default: the first one served)")] = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens to generate")] = 128,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0 = greedy)")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Sampling seed")] = None,
    max_price: Annotated[int | None, typer.Option(help="Most you pay, in base units")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Stream the tokens live, then show result and receipt")] = False,
    devnet: DevnetOpt = None,
    coordinator: CoordinatorOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Submit an inference (--prompt) or embedding (--text …) job."""
    if (prompt is None) == (not text):
        raise ConfigError("give either --prompt (inference) or one or more --text (embedding)")
    with coordinator_client(devnet, coordinator, api_key) as client:
        if prompt is not None:
            body: dict[str, Any] = {
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
            body["max_price"] = max_price
        job = client.submit(body)
        console.print(f"submitted [bold]{job['job_id']}[/] ({job['type']}, {job['model']}): {job['state']}")
        if not wait:
            return
        job = _follow(client, job["job_id"])
        _print_result(client, job)


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
    job_id: str, devnet: DevnetOpt = None, coordinator: CoordinatorOpt = None, api_key: ApiKeyOpt = None
) -> None:
    """A finished job's output (an error while it is still running)."""
    with coordinator_client(devnet, coordinator, api_key) as client:
        print_json(client.result(job_id))


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
) -> None:
    """Your jobs, newest first."""
    with coordinator_client(devnet, coordinator, api_key) as client:
        page = client.list_jobs(state=state, limit=limit)
        table = Table("job", "type", "model", "state", "attempts", "miner")
        for job in page["jobs"]:
            table.add_row(
                job["job_id"], job["type"], job["model"], job["state"], str(job["attempts"]), (job["miner"] or "")[:16]
            )
        console.print(table)
