"""EXPERIMENTAL ``zk-inference`` jobs: the wire rules, pure (docs/zk.md, zkML).

A zk-inference job runs one small, fixed ONNX model (the 4 → 8 → 2 MLP of ``aitbc.zk.zkml``) on
numeric input vectors, and the miner proves each run with EZKL. The input travels as
``JobInput.texts``: one string per vector, its numbers comma-separated (so the input hash and the
encoding of ``JobInput`` are those of every other job). The output is the decoded model outputs
(``JobOutput.vectors_f32``) and the EZKL proofs (``JobOutput.text``, JSON). The receipt's
``output_hash`` is the hash of the proofs' public outputs: a receipt is tied to what was proven,
not to anything the miner could state beside it.

EZKL writes field elements as 32-byte little-endian hex; a value ``v`` at scale ``s`` is the
field element of ``round(v * 2^s)`` (negatives wrap modulo the BN254 scalar field).

The input side (the model, its vectors and their text form) is ``aitbc.protocol.zkml_input``, which
``aitbc.protocol.job`` uses to check a job's input without depending on receipts and proofs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from aitbc.protocol.job import JobOutput, compute_output_hash
from aitbc.protocol.training import compute_commitment_hash
from aitbc.protocol.zk import FIELD_MODULUS
from aitbc.protocol.zkml_input import MAX_ZK_VECTORS, ZKML_INPUTS, parse_zk_vector

ZK_INFERENCE: Final = "zk-inference"
ZKML_OUTPUTS: Final = 2
ZKML_SCALE: Final = 13
"""The model's input and output scale in its EZKL settings (fixed point, 2^13)."""
MAX_PROOF_TEXT: Final = 256 * 1024


def compute_felt_of_float(value: float, scale: int) -> int:
    """EZKL's quantization of an input: round(value * 2^scale) as a field element."""
    return round(value * (1 << scale)) % FIELD_MODULUS


def get_felt(hex_le: str) -> int:
    value = int.from_bytes(bytes.fromhex(hex_le), "little")
    if value >= FIELD_MODULUS:
        raise ValueError("not a field element")
    return value


def compute_float_of_felt(hex_le: str, scale: int) -> float:
    """A public instance as a number: field elements above half the modulus are negative."""
    value = get_felt(hex_le)
    signed = value - FIELD_MODULUS if value > FIELD_MODULUS // 2 else value
    return signed / (1 << scale)


def get_instances(proof: dict[str, Any]) -> list[str]:
    """The proof's public instances (the inputs, then the outputs); ValueError if malformed."""
    try:
        instances = proof["instances"][0]
    except (KeyError, IndexError, TypeError):
        raise ValueError("the proof has no instances") from None
    if not isinstance(instances, list) or len(instances) != ZKML_INPUTS + ZKML_OUTPUTS:
        raise ValueError(f"the proof has not {ZKML_INPUTS} inputs and {ZKML_OUTPUTS} outputs")
    if not all(isinstance(i, str) and len(i) == 64 for i in instances):
        raise ValueError("the proof's instances are not 32-byte hex")
    return instances


def compute_zk_inference_output_hash(proofs: list[dict[str, Any]]) -> str:
    """A zk-inference receipt's output_hash: sha256 over every proof's public outputs, in order."""
    outputs = [felt for proof in proofs for felt in get_instances(proof)[ZKML_INPUTS:]]
    return hashlib.sha256("\n".join(outputs).encode()).hexdigest()


def parse_zk_inference_proofs(text: str | None) -> list[dict[str, Any]]:
    """The proofs a zk-inference output carries (``{"proofs": [...]}``); ValueError if malformed."""
    if text is None or len(text) > MAX_PROOF_TEXT * MAX_ZK_VECTORS:
        raise ValueError("a zk-inference output carries its EZKL proofs as JSON text")
    try:
        proofs = json.loads(text)["proofs"]
    except (ValueError, KeyError, TypeError):
        raise ValueError("the zk-inference output's text is not {'proofs': [...]}") from None
    if not isinstance(proofs, list) or not 1 <= len(proofs) <= MAX_ZK_VECTORS:
        raise ValueError(f"a zk-inference output carries 1..{MAX_ZK_VECTORS} proofs")
    for proof in proofs:
        if not isinstance(proof, dict):
            raise ValueError("a proof is not a JSON object")
        get_instances(proof)
    return proofs


def get_zk_inference_problem(proofs: list[dict[str, Any]], texts: list[str], scale: int) -> str | None:
    """Why these proofs are not about these input vectors (one proof per vector, public inputs equal to
    the quantized vector), or None. It checks the statement, not the proof: that is EZKL's verify."""
    if len(proofs) != len(texts):
        return f"{len(proofs)} proofs for {len(texts)} input vectors"
    for index, (proof, text) in enumerate(zip(proofs, texts, strict=True)):
        expected = [compute_felt_of_float(v, scale) for v in parse_zk_vector(text)]
        if [get_felt(f) for f in get_instances(proof)[:ZKML_INPUTS]] != expected:
            return f"proof {index} is about another input than vector {index} ({text})"
    return None


def compute_job_output_hash(job_type: str, output: JobOutput) -> str:
    """The output_hash a receipt must carry for ``output``: for zk-inference, the hash of the proven
    outputs (ValueError if the output carries no well-formed proofs); for training, the hash of the
    training commitment (ValueError without one); else ``compute_output_hash``."""
    if job_type == "training":
        if output.training is None:
            raise ValueError("a training result carries its training commitment")
        return compute_commitment_hash(output.training.commitment)
    if job_type == ZK_INFERENCE:
        return compute_zk_inference_output_hash(parse_zk_inference_proofs(output.text))
    return compute_output_hash(output)
