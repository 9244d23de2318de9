"""Receipt-circuit test data: a fixed opening, its circuit inputs, whether the Node toolchain is here."""

from __future__ import annotations

import shutil

from aitbc.protocol.zk import ReceiptOpening, compute_circuit_inputs
from aitbc.zk.toolchain import CircuitPaths

JOB_ID = "job-zk-1"
MINER = "ait1miner"
ESCROW = 10_000


def make_opening(**overrides: int) -> ReceiptOpening:
    fields = {
        "input_hash": 0x1234,
        "output_hash": 0x5678,
        "model_digest": 0x9ABC,
        "units": 120,
        "unit_price": 50,
        "salt": 0xDEADBEEF,
    }
    fields.update(overrides)
    return ReceiptOpening(**fields)


def make_inputs(opening: ReceiptOpening | None = None, escrow: int = ESCROW) -> dict[str, int]:
    return compute_circuit_inputs(opening or make_opening(), escrow, JOB_ID, MINER)


def has_node_toolchain(paths: CircuitPaths) -> bool:
    return shutil.which("node") is not None and (paths.node_modules / "snarkjs").exists()
