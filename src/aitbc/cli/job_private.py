"""Private jobs in the CLI: a prompt sealed to a miner (``--private``), a training dataset re-sealed to a drawn
auditor or referee (``aitbc job reseal``); the sealing itself is ``aitbc.protocol.sealed``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aitbc.cli.common import console
from aitbc.client.coordinator import CoordinatorClient
from aitbc.protocol.amounts import format_aitbc
from aitbc.protocol.errors import ConfigError
from aitbc.protocol.job import JobInput, Params
from aitbc.protocol.sealed import new_reply_key, seal_job_input


def read_dataset(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--dataset: {exc}") from None


def seal_body(
    client: CoordinatorClient, body: dict[str, Any], wait: bool, seal_to: str | None
) -> tuple[dict[str, Any], bytes]:
    """Replace the plaintext input by one sealed to ``seal_to``, else to the miner the coordinator quotes."""
    if body["type"] != "inference" or not wait:
        raise ConfigError("--private works with --prompt and --wait (the one-off reply key lives in this process)")
    quote = client.quote("inference", body["model"])
    params = body["params"]
    job_input = JobInput(
        type="inference",
        model=body["model"],
        prompt=body["input"]["prompt"],
        params=Params(
            max_tokens=params["max_tokens"],
            temperature_milli=round(params["temperature"] * 1000),
            seed=params.get("seed"),
        ),
    )
    miner = seal_to or quote["miner"]
    ciphertext, input_hash = seal_job_input(job_input, miner)
    reply_secret, reply_to = new_reply_key()
    price = f" ({format_aitbc(quote['unit_price'])} AITBC/token)" if miner == quote["miner"] else ""
    console.print(f"sealed to miner [bold]{miner}[/]{price}")
    sealed = {"miner": miner, "ciphertext": ciphertext, "input_hash": input_hash, "reply_to": reply_to}
    return {**{k: v for k, v in body.items() if k != "input"}, "sealed": sealed}, reply_secret
