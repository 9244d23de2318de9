"""``aitbc job submit --type training``: upload the dataset, follow step and loss, fetch the weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aitbc.cli.common import console
from aitbc.client.coordinator import CoordinatorClient
from aitbc.protocol.crypto import sha256_hex
from aitbc.protocol.errors import ConfigError, RemoteError
from aitbc.protocol.sealed import seal_dataset
from aitbc.protocol.training import DATASET_FORMATS, SealedDataset, TrainingSpec, check_training_spec

FORMAT_OF_SUFFIX = {".csv": "csv", ".npz": "npz", ".jsonl": "jsonl"}


def training_body(
    client: CoordinatorClient,
    model: str,
    dataset: Path,
    dataset_format: str | None,
    spec_fields: dict[str, Any],
    private: bool = False,
    seal_to: str | None = None,
) -> dict[str, Any]:
    """The job request of a training job, its dataset uploaded first as a blob (``private``: sealed to
    ``seal_to``, else to the miner the coordinator quotes, so the coordinator holds only ciphertext and only
    that miner can train)."""
    fmt = dataset_format or FORMAT_OF_SUFFIX.get(dataset.suffix.lower())
    if fmt not in DATASET_FORMATS:
        raise ConfigError(f"--dataset-format: one of {', '.join(DATASET_FORMATS)} (not given by {dataset.name})")
    try:
        data = dataset.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--dataset: {exc}") from None
    fields = {"model": model, "dataset_format": fmt, "dataset_hash": "0" * 64, **spec_fields}
    try:
        spec = msgspec.convert(fields, TrainingSpec)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"training spec: {exc}") from None
    check_training_spec(spec)
    sealed_to, plain_hash = None, sha256_hex(data)
    if private:  # only the quoted miner can open it; the coordinator holds ciphertext
        sealed_to = seal_to or client.quote("training", model)["miner"]
        data = seal_dataset(data, sealed_to)
        console.print(f"dataset sealed to miner [bold]{sealed_to}[/]")
    with console.status(f"uploading {dataset.name} ({len(data):,} bytes)…"):
        blob = client.put_blob(data)
    console.print(f"dataset [bold]{blob[:16]}…[/] uploaded ({fmt})")
    if sealed_to is None:
        spec = msgspec.structs.replace(spec, dataset_hash=blob)
    else:
        sealed = SealedDataset(miner=sealed_to, blob=blob)
        spec = msgspec.structs.replace(spec, dataset_hash=plain_hash, sealed_dataset=sealed)
    return {"type": "training", "model": model, "input": {"training": msgspec.to_builtins(spec)}}


def follow_training(client: CoordinatorClient, job_id: str, steps: int) -> dict[str, Any]:
    """A progress bar of the job's steps, with the last reported loss, until it finishes."""
    columns = (
        TextColumn("[bold]{task.fields[state]}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps · loss [cyan]{task.fields[loss]}[/]"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(job_id, total=steps, state="queued", loss="-")
        for event, data in client.events(job_id):
            if event == "status":
                progress.update(task, state=data["state"])
            elif event == "token":
                for line in str(data["text"]).splitlines():
                    try:
                        point = json.loads(line)
                        progress.update(task, completed=int(point["step"]), loss=f"{float(point['loss']):.4f}")
                    except (ValueError, KeyError, TypeError):
                        continue
    return client.job(job_id)


def print_training_result(job_id: str, output: dict[str, Any]) -> None:
    """The trained model's figures and where its weights are."""
    commitment = output["commitment"]
    table = Table("training", "", show_header=False, border_style="green")
    table.add_row("final loss", f"{output['final_loss_micro'] / 1e6:.6f}")
    table.add_row("steps", f"{commitment['steps']} ({len(commitment['checkpoint_hashes'])} checkpoints)")
    table.add_row("runtime", commitment["runtime_build"])
    table.add_row("final state", commitment["checkpoint_hashes"][-1])
    table.add_row("weights", f"blob {output['weights_blob']} (`aitbc job result {job_id} --out FILE`)")
    table.add_row("loss curve", f"blob {output['losses_blob']}")
    console.print(table)


def download_weights(client: CoordinatorClient, job_id: str, out: Path) -> dict[str, Any]:
    """Save a training job's weights (safetensors) to ``out``, once checked against the committed final state
    (its checkpoint blob hashes to the commitment's last hash and holds exactly these tensors); returns what
    was saved."""
    output = client.result(job_id).get("output", {})
    if "training" not in output:
        raise ConfigError(f"job {job_id} is not a training job: --out saves trained weights")
    training = output["training"]
    blob = training["weights_blob"]
    data = client.get_blob(blob, job_id)
    verified = False
    if training.get("checkpoint_blobs"):  # the weights must be the committed final state's model
        from aitbc.training.state import get_weights_problem

        final = client.get_blob(training["checkpoint_blobs"][-1], job_id)
        problem = get_weights_problem(data, final, training["commitment"]["checkpoint_hashes"][-1])
        if problem is not None:
            raise RemoteError(f"job {job_id}: {problem}", reason="weights_not_committed")
        verified = True
    out.write_bytes(data)
    losses = json.loads(client.get_blob(training["losses_blob"], job_id))["losses"]
    return {
        "job_id": job_id,
        "weights": str(out),
        "bytes": len(data),
        "sha256": blob,
        "final_loss": losses[-1],
        "matches_commitment": verified,
    }
