"""Paying for a job as a client: size the escrow, open it on chain, wait for it, then submit the job.

The client's own key signs the escrow; the coordinator only ever sees the committed escrow on chain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from aitbc.chain.escrow import compute_escrow_amount
from aitbc.chain.params import ChainParams
from aitbc.client.coordinator import CoordinatorClient
from aitbc.client.node import NodeClient
from aitbc.market.matching import JobRequirements, compute_max_units
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import ConfigError, RemoteError
from aitbc.protocol.job import compute_model_kind
from aitbc.protocol.training import TrainingSpec
from aitbc.protocol.tx import OpenEscrow

DEFAULT_DEADLINE_BLOCKS: Final = 900
"""How long an escrow stays open by default: 15 minutes of 1-second blocks, above the job's default ttl."""


@dataclass(frozen=True, slots=True)
class JobEscrow:
    job_id: str
    coordinator: str
    client: str
    max_price: int
    amount: int
    """``max_price`` plus the protocol fee on it: what is locked."""
    fee: int
    """The open_escrow tx's own fee."""
    deadline_height: int
    tx_hash: str
    height: int
    """The block the escrow was committed in."""


def new_job_id() -> str:
    return "job_" + os.urandom(10).hex()


def compute_default_max_price(body: dict[str, Any], models: list[dict[str, Any]]) -> int:
    """The worst-case price of a job at the dearest live miner serving its model, so any of them may take it."""
    model = body["model"]
    kind = compute_model_kind(body["type"])
    prices = [int(m["max_unit_price"]) for m in models if m["name"] == model and m["kind"] == kind]
    if not prices:
        raise ConfigError(f"no live miner serves {kind} model {model!r}, so no price can be offered")
    job_input = body["input"]
    chars = (
        len(job_input.get("prompt") or "")
        + sum(len(m["content"]) for m in job_input.get("messages") or [])
        + sum(len(t) for t in job_input.get("texts") or [])
    )
    if job_input.get("training"):  # billed by sample-steps (docs/tokenomics.md)
        spec = msgspec.convert(job_input["training"], TrainingSpec)
        chars = spec.steps * spec.batch_size
    max_tokens = int(body.get("params", {}).get("max_tokens", 128))
    units = compute_max_units(JobRequirements(body["type"], model, chars, max_tokens))
    return max(prices) * units


def open_job_escrow(
    node: NodeClient,
    key: KeyPair,
    coordinator: str,
    max_price: int,
    *,
    job_id: str | None = None,
    deadline_blocks: int = DEFAULT_DEADLINE_BLOCKS,
    timeout: float = 60.0,
) -> JobEscrow:
    """Lock ``max_price`` + protocol fee for a new job and return once the escrow is committed."""
    info = node.get_chain_info()
    params = msgspec.convert(info["params"], ChainParams)
    amount = compute_escrow_amount(max_price, params)
    deadline = int(info["height"]) + deadline_blocks
    job_id = job_id or new_job_id()
    tx = OpenEscrow(
        sender=key.address,
        nonce=node.next_nonce(key.address),
        fee=params.min_fee,
        chain_id=info["chain_id"],
        job_id=job_id,
        coordinator=coordinator,
        amount=amount,
        deadline_height=deadline,
    )
    tx_hash = node.sign_and_send(key, tx)
    status = node.wait_for_tx(tx_hash, timeout=timeout)
    if status["status"] != "committed":
        reason = status.get("reason") or "rejected"
        raise RemoteError(f"the escrow tx {tx_hash} was refused: {status.get('error') or reason}", reason=reason)
    return JobEscrow(
        job_id=job_id,
        coordinator=coordinator,
        client=key.address,
        max_price=max_price,
        amount=amount,
        fee=params.min_fee,
        deadline_height=deadline,
        tx_hash=tx_hash,
        height=int(status["height"]),
    )


def submit_paid_job(
    coordinator: CoordinatorClient,
    node: NodeClient,
    key: KeyPair,
    body: dict[str, Any],
    *,
    deadline_blocks: int = DEFAULT_DEADLINE_BLOCKS,
) -> tuple[dict[str, Any], JobEscrow]:
    """Open the escrow for ``body`` (its ``max_price``, or the worst case at the live miners) and submit it."""
    max_price = body.get("max_price")
    if max_price is None:
        max_price = compute_default_max_price(body, coordinator.models())
    escrow = open_job_escrow(
        node, key, coordinator.health()["coordinator"], int(max_price), deadline_blocks=deadline_blocks
    )
    job = coordinator.submit({**body, "job_id": escrow.job_id, "max_price": max_price})
    return job, escrow
