"""The receipt circuit through the committed setup: valid proofs verify (groth16py and py-ecc agree),
every tampered public input fails, an inconsistent or out-of-range witness cannot be proved."""

from __future__ import annotations

import os

import pytest

from aitbc.protocol.zk import (
    FIELD_MODULUS,
    ZkReceiptProof,
    commitment_hex,
    compute_commitment,
    compute_public_inputs,
    is_valid_receipt_proof,
    receipt_vk_json,
)
from aitbc.zk.prover import Groth16pyProver, SnarkjsProver, WitnessRejected
from aitbc.zk.reference import is_valid_groth16_pyecc
from aitbc.zk.toolchain import CircuitPaths
from support.zk import ESCROW, JOB_ID, MINER, has_node_toolchain, make_inputs, make_opening


@pytest.fixture(scope="module")
def valid(prover: Groth16pyProver) -> tuple[bytes, list[int]]:
    inputs = make_inputs()
    proof = prover.prove(inputs)
    public = compute_public_inputs(inputs["commitment"], inputs["total"], ESCROW, JOB_ID, MINER)
    return proof, public


def _wire(proof: bytes, commitment: int) -> ZkReceiptProof:
    return ZkReceiptProof(commitment=commitment_hex(commitment), salt=commitment_hex(0), proof=proof.hex())


def test_valid_proof_verifies(valid: tuple[bytes, list[int]]) -> None:
    proof, public = valid
    assert len(proof) == 256
    assert is_valid_receipt_proof(_wire(proof, public[0]), total=public[1], escrow=ESCROW, job_id=JOB_ID, miner=MINER)


def test_pyecc_agrees_on_the_valid_proof(valid: tuple[bytes, list[int]]) -> None:
    proof, public = valid
    assert is_valid_groth16_pyecc(receipt_vk_json(), proof, public)


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("commitment", lambda p: p[0] + 1),
        ("total", lambda p: p[1] + 1),
        ("escrow", lambda p: p[2] - 1),
        ("job", lambda p: None),
        ("miner", lambda p: None),
    ],
)
def test_each_tampered_public_input_fails(valid: tuple[bytes, list[int]], field: str, change: object) -> None:
    proof, public = valid
    commitment, total, escrow, job_id, miner = public[0], public[1], ESCROW, JOB_ID, MINER
    if field == "commitment":
        commitment += 1
    elif field == "total":
        total += 1
    elif field == "escrow":
        escrow -= 1
    elif field == "job":
        job_id = "job-zk-2"
    else:
        miner = "ait1other"
    assert not is_valid_receipt_proof(_wire(proof, commitment), total=total, escrow=escrow, job_id=job_id, miner=miner)
    # the pure-Python verifier agrees on the tampered statement
    tampered = compute_public_inputs(commitment, total, escrow, job_id, miner)
    assert not is_valid_groth16_pyecc(receipt_vk_json(), proof, tampered)


@pytest.mark.parametrize("index", [0, 40, 100, 200, 255])
def test_tampered_proof_bytes_fail(valid: tuple[bytes, list[int]], index: int) -> None:
    proof, public = valid
    bad = bytearray(proof)
    bad[index] ^= 0x01
    assert not is_valid_receipt_proof(_wire(bytes(bad), public[0]), public[1], ESCROW, JOB_ID, MINER)


@pytest.mark.parametrize(
    "opening",
    [
        make_opening(units=2**32),  # units out of range
        make_opening(unit_price=2**64),  # price out of range
        make_opening(units=1000, unit_price=11),  # total 11000 > escrow 10000
    ],
    ids=["units_out_of_range", "price_out_of_range", "total_above_escrow"],
)
def test_out_of_range_witness_fails(prover: Groth16pyProver, opening: object) -> None:
    with pytest.raises(WitnessRejected):
        prover.prove(make_inputs(opening))  # type: ignore[arg-type]


def test_inconsistent_witness_fails(prover: Groth16pyProver) -> None:
    inputs = make_inputs()
    with pytest.raises(WitnessRejected):
        prover.prove({**inputs, "commitment": inputs["commitment"] + 1})  # commitment does not open
    with pytest.raises(WitnessRejected):
        prover.prove({**inputs, "total": inputs["total"] - 1})  # total is not units x price
    with pytest.raises(WitnessRejected):
        prover.prove({**inputs, "escrow": 2**64})  # escrow out of range


def test_wrapping_total_cannot_be_proved(prover: Groth16pyProver) -> None:
    """A product that wraps the field to a small number is excluded by the range checks."""
    huge = make_opening(units=2**32 - 1, unit_price=2**64 - 1)
    inputs = make_inputs(huge)
    inputs["total"] = (huge.units * huge.unit_price) % FIELD_MODULUS
    inputs["escrow"] = 2**64 - 1
    with pytest.raises(WitnessRejected):
        prover.prove(inputs)
    assert compute_commitment(huge) > 0


@pytest.fixture(scope="module")
def snarkjs_prover(circuit_paths: CircuitPaths) -> SnarkjsProver:
    if not has_node_toolchain(circuit_paths):
        if os.environ.get("AITBC_REQUIRE_ZK_TOOLCHAIN"):
            pytest.fail("AITBC_REQUIRE_ZK_TOOLCHAIN is set but node or circuits/node_modules is missing")
        pytest.skip("needs node and `npm ci` in circuits/")
    return SnarkjsProver(circuit_paths)


def test_snarkjs_proof_verifies_in_the_node_verifier(snarkjs_prover: SnarkjsProver) -> None:
    """The other backend, same zkey: its proof (converted to groth16py's bytes) verifies, and py-ecc agrees."""
    inputs = make_inputs()
    proof = snarkjs_prover.prove(inputs)
    public = compute_public_inputs(inputs["commitment"], inputs["total"], ESCROW, JOB_ID, MINER)
    assert is_valid_receipt_proof(_wire(proof, public[0]), public[1], ESCROW, JOB_ID, MINER)
    assert is_valid_groth16_pyecc(receipt_vk_json(), proof, public)


def test_snarkjs_refuses_an_out_of_range_witness_at_witness_generation(snarkjs_prover: SnarkjsProver) -> None:
    with pytest.raises(WitnessRejected, match="Error in template Num2Bits"):
        snarkjs_prover.prove(make_inputs(make_opening(units=2**32)))
