"""Pure parts of the zk receipt: field encoding, Poseidon matching circomlib, the commitment."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitbc.protocol.zk import (
    FIELD_MODULUS,
    RECEIPT_VK_SHA256,
    ReceiptOpening,
    ZkReceiptProof,
    commitment_hex,
    compute_commitment,
    compute_field_of_hex_hash,
    compute_field_of_text,
    compute_poseidon2,
    compute_public_inputs,
    compute_vk_hash,
    is_valid_receipt_proof,
    receipt_vk_json,
)

# circomlib / circomlibjs test vector (Poseidon with 2 inputs over BN254), see shared FACTS
POSEIDON_1_2 = 7853200120776062878684798364095072458815029376092732009249414926327459813530


def test_poseidon_matches_circomlib_vector() -> None:
    assert compute_poseidon2(1, 2) == POSEIDON_1_2


def test_poseidon_differs_on_order_and_reduces_mod_field() -> None:
    assert compute_poseidon2(2, 1) != POSEIDON_1_2
    assert compute_poseidon2(1 + FIELD_MODULUS, 2) == POSEIDON_1_2


@given(st.binary(min_size=32, max_size=32))
def test_hash_field_encoding_is_below_the_modulus_and_keeps_31_bytes(digest: bytes) -> None:
    value = compute_field_of_hex_hash(digest.hex())
    assert 0 <= value < FIELD_MODULUS
    assert value.to_bytes(31, "big") == digest[:31]


def test_text_field_encoding_is_sha256_prefix() -> None:
    assert compute_field_of_text("job-1") == int.from_bytes(hashlib.sha256(b"job-1").digest()[:31], "big")
    assert compute_field_of_text("job-1") != compute_field_of_text("job-2")


def _opening(**overrides: int) -> ReceiptOpening:
    fields = {"input_hash": 11, "output_hash": 22, "model_digest": 33, "units": 7, "unit_price": 5, "salt": 99}
    fields.update(overrides)
    return ReceiptOpening(**fields)


@pytest.mark.parametrize("field", ["input_hash", "output_hash", "model_digest", "units", "unit_price", "salt"])
def test_commitment_depends_on_every_private_field(field: str) -> None:
    base = _opening()
    assert compute_commitment(_opening(**{field: getattr(base, field) + 1})) != compute_commitment(base)


def test_commitment_is_the_documented_tree() -> None:
    o = _opening()
    left = compute_poseidon2(compute_poseidon2(11, 22), compute_poseidon2(33, 7))
    assert compute_commitment(o) == compute_poseidon2(left, compute_poseidon2(5, 99))
    assert int(commitment_hex(compute_commitment(o)), 16) == compute_commitment(o)


def test_public_inputs_order() -> None:
    assert compute_public_inputs(1, 2, 3, "job", "ait1x") == [
        1,
        2,
        3,
        compute_field_of_text("job"),
        compute_field_of_text("ait1x"),
    ]


def test_packaged_verifying_key_is_the_pinned_one() -> None:
    assert compute_vk_hash(receipt_vk_json()) == RECEIPT_VK_SHA256


@pytest.mark.parametrize("proof_hex", ["", "00" * 256, "ff" * 256, "01" * 255])
def test_malformed_proofs_are_invalid_not_errors(proof_hex: str) -> None:
    proof = ZkReceiptProof(commitment=commitment_hex(1), salt=commitment_hex(0), proof=proof_hex)
    assert not is_valid_receipt_proof(proof, total=35, escrow=100, job_id="job", miner="ait1x")
