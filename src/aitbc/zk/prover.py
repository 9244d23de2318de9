"""Receipt provers behind one Protocol: groth16py in-process, or snarkjs in a Node subprocess.

Both prove from the same ceremony zkey and return groth16py's 256-byte proof encoding, so the
node cannot tell them apart. The miner uses ``Groth16pyProver`` (no Node needed; bench/zk.py
measures both): it compiles the circuit once at start-up with the circomlib groth16py vendors,
then each proof is a witness + prove in Rust.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import threading
from pathlib import Path
from typing import Protocol

import groth16py

from aitbc.protocol.errors import AitbcError
from aitbc.protocol.receipt import Receipt
from aitbc.protocol.zk import (
    FIELD_MODULUS,
    PUBLIC_SIGNALS,
    ZkReceiptProof,
    commitment_hex,
    compute_circuit_inputs,
    compute_receipt_opening,
    is_valid_groth16,
)
from aitbc.zk.toolchain import CircuitPaths, run_snarkjs


class WitnessRejected(AitbcError):
    """The inputs do not satisfy the circuit (out of range, total above escrow, wrong commitment)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="witness_rejected")


class ReceiptProver(Protocol):
    name: str

    def prove(self, inputs: dict[str, int]) -> bytes:
        """A proof for the named circuit inputs; raises ``WitnessRejected`` if they do not satisfy it."""
        ...


class Groth16pyProver:
    """Witness generation and proving in-process (arkworks via groth16py)."""

    name = "groth16py"

    def __init__(self, paths: CircuitPaths) -> None:
        self._pk, vk = groth16py.import_zkey(
            str(paths.zkey), str(paths.source), link_libraries=[groth16py.circomlib_path(2)]
        )
        self._verifier = groth16py.Verifier(vk)
        self._lock = threading.Lock()

    def prove(self, inputs: dict[str, int]) -> bytes:
        try:
            with self._lock:
                proof = bytes(groth16py.prove(self._pk, dict(inputs)))
        except groth16py.WitnessError as exc:
            raise WitnessRejected(f"the receipt does not satisfy the circuit: {exc}") from None
        # groth16py's witness generator does not stop at a failed constraint: it returns a proof that
        # cannot verify. Checking it here (~2 ms) turns that into the same refusal snarkjs gives.
        public = [inputs[name] for name in PUBLIC_SIGNALS]
        if not is_valid_groth16(self._verifier, proof, public):
            raise WitnessRejected("the receipt does not satisfy the circuit (the proof does not verify)")
        return proof


class SnarkjsProver:
    """``snarkjs groth16 fullprove`` with the committed wasm and zkey (needs Node and circuits/node_modules)."""

    name = "snarkjs"

    def __init__(self, paths: CircuitPaths) -> None:
        self._paths = paths

    def prove(self, inputs: dict[str, int]) -> bytes:
        from aitbc.zk.toolchain import ToolchainError

        with tempfile.TemporaryDirectory(prefix="aitbc-prove-") as tmp_name:
            tmp = Path(tmp_name)
            (tmp / "input.json").write_text(json.dumps({k: str(v) for k, v in inputs.items()}))
            try:
                run_snarkjs(
                    self._paths,
                    "groth16",
                    "fullprove",
                    str(tmp / "input.json"),
                    str(self._paths.wasm),
                    str(self._paths.zkey),
                    str(tmp / "proof.json"),
                    str(tmp / "public.json"),
                    timeout=120,
                )
            except ToolchainError as exc:
                raise WitnessRejected(f"the receipt does not satisfy the circuit: {exc.message[-300:]}") from None
            return encode_snarkjs_proof(json.loads((tmp / "proof.json").read_text()))


def encode_snarkjs_proof(proof: dict[str, list[object]]) -> bytes:
    """snarkjs ``proof.json`` as groth16py's bytes: A.x A.y | B.x.c1 B.x.c0 B.y.c1 B.y.c0 | C.x C.y (32 B each)."""

    def word(value: object) -> bytes:
        return int(str(value)).to_bytes(32, "big")

    a, b, c = proof["pi_a"], proof["pi_b"], proof["pi_c"]
    bx, by = b[0], b[1]
    assert isinstance(bx, list) and isinstance(by, list)
    return b"".join(
        [word(a[0]), word(a[1]), word(bx[1]), word(bx[0]), word(by[1]), word(by[0]), word(c[0]), word(c[1])]
    )


def make_receipt_proof(prover: ReceiptProver, receipt: Receipt, escrow: int, salt: int | None = None) -> ZkReceiptProof:
    """Prove ``receipt`` against an escrow of ``escrow``, with a fresh random salt unless one is given."""
    salt = secrets.randbelow(FIELD_MODULUS) if salt is None else salt
    opening = compute_receipt_opening(receipt, salt)
    inputs = compute_circuit_inputs(opening, escrow, receipt.job_id, receipt.miner)
    if inputs["total"] != receipt.total_price:
        raise WitnessRejected("the receipt's total is not its units x unit price")
    proof = prover.prove(inputs)
    return ZkReceiptProof(commitment=commitment_hex(inputs["commitment"]), salt=commitment_hex(salt), proof=proof.hex())
