"""The receipt circuit's committed setup, and a prover over it (compiled once per session)."""

from __future__ import annotations

import pytest

from aitbc.zk.prover import Groth16pyProver
from aitbc.zk.toolchain import CircuitPaths, default_circuits_dir


@pytest.fixture(scope="session")
def circuit_paths() -> CircuitPaths:
    return CircuitPaths(default_circuits_dir())


@pytest.fixture(scope="session")
def prover(circuit_paths: CircuitPaths) -> Groth16pyProver:
    return Groth16pyProver(circuit_paths)
