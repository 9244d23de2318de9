"""JSON shapes shared by the node's RPC, REST and WebSocket replies."""

from __future__ import annotations

from typing import Any

import msgspec

from aitbc.chain.entries import ChainEvent
from aitbc.chain.smt import SmtProof


def proof_to_json(proof: SmtProof) -> dict[str, Any]:
    return {
        "siblings": [s.hex() for s in proof.siblings],
        "leaf_key": None if proof.leaf_key is None else proof.leaf_key.hex(),
        "leaf_value_hash": None if proof.leaf_value_hash is None else proof.leaf_value_hash.hex(),
    }


def job_event_json(seq: int, height: int, block_hash: str | None, event: ChainEvent) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(event)
    body["event_seq"] = seq
    body["height"] = height
    if block_hash is not None:
        body["block_hash"] = block_hash
    return body
