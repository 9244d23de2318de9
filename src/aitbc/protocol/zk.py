"""Zero-knowledge receipt proofs: the field encoding, the Poseidon commitment, the verifier.

What a valid proof establishes (docs/zk.md): whoever made it knows an opening (input hash,
output hash, model digest, units, unit price, salt) of ``commitment`` with units < 2^32 and
unit price < 2^64, units x unit price = ``total`` <= ``escrow``, for this job id and this miner.
It does not establish that any model ran.

The verifying key is a protocol constant: the ceremony's ``vk.json`` ships with this package and
its hash is pinned in ``RECEIPT_VK_SHA256``, so every node verifies against the same key and a
changed key is a protocol upgrade (as a changed tx rule would be).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Final

import groth16py
import light_poseidon_python
import msgspec

from aitbc.protocol.receipt import Receipt
from aitbc.protocol.types import Hash32, HexBytes

FIELD_MODULUS: Final = 21888242871839275222246405745257275088548364400416034343698204186575808495617
"""BN254's scalar field: circuit signals and public inputs live here."""
PROOF_BYTES: Final = 256
"""A Groth16 proof on BN254 as groth16py encodes it: A (64) | B (128) | C (64), uncompressed."""
MAX_UNITS: Final = 2**32 - 1
MAX_UNIT_PRICE: Final = 2**64 - 1
PUBLIC_SIGNALS: Final = ("commitment", "total", "escrow", "jobIdHash", "minerHash")
"""The circuit's public inputs, in the order of its public signals."""
RECEIPT_VK_SHA256: Final = "8254d46dc404b77ba168279abeb5db0b379d0cdff62c8c6bfae533228cf2dffe"
"""sha256 of the canonical JSON of the ceremony's verifying key (``aitbc zk verify-setup`` checks it)."""


class ZkReceiptProof(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A Groth16 proof about a receipt, as it travels in a tx."""

    commitment: Hash32
    """The Poseidon commitment to the receipt's private fields (a field element, 32-byte big-endian hex)."""
    salt: Hash32
    """The commitment's blinding salt (a field element). Published because the receipt itself is public
    in ``settle_job``: the node recomputes the commitment from the receipt, binding the proof to it."""
    proof: HexBytes
    """groth16py's 256-byte proof encoding."""


@dataclass(frozen=True, slots=True)
class ReceiptOpening:
    """The private fields a commitment opens to; all as field elements except the salt's origin."""

    input_hash: int
    output_hash: int
    model_digest: int
    units: int
    unit_price: int
    salt: int


def compute_field_of_hex_hash(digest_hex: str) -> int:
    """A 32-byte digest as a field element: its first 31 bytes (248 bits, always below the modulus)."""
    return int.from_bytes(bytes.fromhex(digest_hex)[:31], "big")


def compute_field_of_text(text: str) -> int:
    """Any identifier (job id, address, model digest) as a field element: its sha256, truncated as above."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:31], "big")


def compute_poseidon2(a: int, b: int) -> int:
    """circomlib's ``Poseidon(2)`` over BN254 (light-poseidon, the circomlibjs constants)."""
    return int(light_poseidon_python.poseidon_hash([a % FIELD_MODULUS, b % FIELD_MODULUS]))


def compute_commitment(opening: ReceiptOpening) -> int:
    """The receipt circuit's commitment: H(H(H(in, out), H(model, units)), H(price, salt))."""
    hashes = compute_poseidon2(opening.input_hash, opening.output_hash)
    work = compute_poseidon2(opening.model_digest, opening.units)
    pay = compute_poseidon2(opening.unit_price, opening.salt)
    return compute_poseidon2(compute_poseidon2(hashes, work), pay)


def compute_receipt_opening(receipt: Receipt, salt: int) -> ReceiptOpening:
    """A receipt's private fields as the circuit takes them (units = prompt + completion tokens)."""
    return ReceiptOpening(
        input_hash=compute_field_of_hex_hash(receipt.input_hash),
        output_hash=compute_field_of_hex_hash(receipt.output_hash),
        model_digest=compute_field_of_text(receipt.model_digest),
        units=receipt.units.prompt_tokens + receipt.units.completion_tokens,
        unit_price=receipt.unit_price,
        salt=salt,
    )


def commitment_hex(value: int) -> str:
    return value.to_bytes(32, "big").hex()


def compute_public_inputs(commitment: int, total: int, escrow: int, job_id: str, miner: str) -> list[int]:
    """The circuit's public signals, in its declared order."""
    return [commitment, total, escrow, compute_field_of_text(job_id), compute_field_of_text(miner)]


def compute_circuit_inputs(opening: ReceiptOpening, escrow: int, job_id: str, miner: str) -> dict[str, int]:
    """Every input signal by name, as a prover (snarkjs or groth16py) takes them."""
    return {
        "commitment": compute_commitment(opening),
        "total": opening.units * opening.unit_price,
        "escrow": escrow,
        "jobIdHash": compute_field_of_text(job_id),
        "minerHash": compute_field_of_text(miner),
        "inputHash": opening.input_hash,
        "outputHash": opening.output_hash,
        "modelDigest": opening.model_digest,
        "units": opening.units,
        "unitPrice": opening.unit_price,
        "salt": opening.salt,
    }


def compute_proof_escrow(escrow_amount: int | None, max_price: int | None, total: int) -> int:
    """The ``escrow`` public input a receipt proof is made against: the escrow locked on chain for a
    paid job (what the node checks at settlement), else the client's max price, else the total itself."""
    if escrow_amount is not None:
        return escrow_amount
    return max_price if max_price is not None else total


def compute_vk_hash(vk_json: str) -> str:
    """Hash of a snarkjs verifying key, independent of its JSON formatting."""
    canonical = json.dumps(json.loads(vk_json), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@functools.cache
def receipt_vk_json() -> str:
    """The ceremony's verifying key, as shipped in this package."""
    return resources.files("aitbc.protocol").joinpath("zk_receipt_vk.json").read_text()


@functools.cache
def _receipt_verifier() -> groth16py.Verifier:
    vk_json = receipt_vk_json()
    if compute_vk_hash(vk_json) != RECEIPT_VK_SHA256:
        raise RuntimeError("the packaged receipt verifying key is not the pinned one (RECEIPT_VK_SHA256)")
    return groth16py.Verifier(groth16py.VerifyingKey.from_snarkjs(vk_json))


def is_valid_groth16(verifier: groth16py.Verifier, proof: bytes, public_inputs: list[int]) -> bool:
    """A malformed proof (bad length, point off the curve) is simply invalid, never an exception."""
    if len(proof) != PROOF_BYTES or any(not 0 <= x < FIELD_MODULUS for x in public_inputs):
        return False
    try:
        return bool(verifier.verify(proof, public_inputs))
    except (groth16py.EncodingError, groth16py.VerificationError, ValueError):
        return False


def is_valid_receipt_proof(proof: ZkReceiptProof, total: int, escrow: int, job_id: str, miner: str) -> bool:
    """Does ``proof`` show a commitment opening that prices ``total`` <= ``escrow`` for this job and miner?"""
    public = compute_public_inputs(int(proof.commitment, 16), total, escrow, job_id, miner)
    return is_valid_groth16(_receipt_verifier(), bytes.fromhex(proof.proof), public)


def get_receipt_proof_problem(proof: ZkReceiptProof, receipt: Receipt, escrow: int) -> str | None:
    """Why ``proof`` does not prove ``receipt`` against an escrow of ``escrow`` (None: it does)."""
    salt = int(proof.salt, 16)
    commitment = int(proof.commitment, 16)
    if salt >= FIELD_MODULUS or commitment >= FIELD_MODULUS:
        return "commitment or salt is not a field element"
    if commitment != compute_commitment(compute_receipt_opening(receipt, salt)):
        return "the commitment does not open to this receipt's fields"
    if not is_valid_receipt_proof(proof, receipt.total_price, escrow, receipt.job_id, receipt.miner):
        return "the Groth16 proof does not verify for this commitment, total, escrow, job and miner"
    return None
