"""A second, independent Groth16 verifier in pure Python (py-ecc), to cross-check groth16py.

Slow (seconds per proof) and used only by tests and bench/zk.py: it shares no code with the
arkworks verifier the node runs, so agreement on valid and tampered proofs is real evidence.
"""

from __future__ import annotations

import json
from typing import Any

from py_ecc.fields import optimized_bn128_FQ as FQ
from py_ecc.fields import optimized_bn128_FQ2 as FQ2
from py_ecc.fields import optimized_bn128_FQ12 as FQ12
from py_ecc.optimized_bn128 import optimized_curve as bn128
from py_ecc.optimized_bn128 import optimized_pairing

G1 = tuple[FQ, FQ, FQ]
G2 = tuple[FQ2, FQ2, FQ2]


def _g1(xy: list[Any]) -> G1:
    return (FQ(int(xy[0])), FQ(int(xy[1])), FQ.one())


def _g2(xy: list[list[Any]]) -> G2:
    # snarkjs writes an Fp2 element as [c0, c1]; py-ecc's FQ2 takes the coefficients in the same order.
    return (FQ2([int(xy[0][0]), int(xy[0][1])]), FQ2([int(xy[1][0]), int(xy[1][1])]), FQ2.one())


def _decode_proof(proof: bytes) -> tuple[G1, G2, G1]:
    """groth16py's layout: A.x A.y | B.x.c1 B.x.c0 B.y.c1 B.y.c0 | C.x C.y, 32-byte big-endian words."""
    w = [int.from_bytes(proof[i : i + 32], "big") for i in range(0, 256, 32)]
    return (
        (FQ(w[0]), FQ(w[1]), FQ.one()),
        (FQ2([w[3], w[2]]), FQ2([w[5], w[4]]), FQ2.one()),
        (FQ(w[6]), FQ(w[7]), FQ.one()),
    )


def _words(proof: bytes) -> list[int]:
    return [int.from_bytes(proof[i : i + 32], "big") for i in range(0, 256, 32)]


def is_valid_groth16_pyecc(vk_json: str, proof: bytes, public_inputs: list[int]) -> bool:
    """e(A, B) == e(alpha, beta) * e(sum IC_i x_i, gamma) * e(C, delta), with one final exponentiation."""
    vk = json.loads(vk_json)
    if len(proof) != 256 or len(public_inputs) != int(vk["nPublic"]):
        return False
    a, b, c = _decode_proof(proof)
    if any(x >= bn128.field_modulus for x in _words(proof)) or not (
        bn128.is_on_curve(a, bn128.b) and bn128.is_on_curve(b, bn128.b2) and bn128.is_on_curve(c, bn128.b)
    ):
        return False
    # B must also lie in the order-r subgroup of the twist (points on the curve outside it are forgeries)
    if bn128.multiply(b, bn128.curve_order)[2] != FQ2.zero():
        return False
    ic = [_g1(p) for p in vk["IC"]]
    acc: Any = ic[0]
    for point, x in zip(ic[1:], public_inputs, strict=True):
        acc = bn128.add(acc, bn128.multiply(point, x % bn128.curve_order))
    # e(-A, B) * e(alpha, beta) * e(acc, gamma) * e(C, delta) == 1
    terms = [
        (b, bn128.neg(a)),
        (_g2(vk["vk_beta_2"]), _g1(vk["vk_alpha_1"])),
        (_g2(vk["vk_gamma_2"]), acc),
        (_g2(vk["vk_delta_2"]), c),
    ]
    product = FQ12.one()
    for q, p in terms:
        product = product * optimized_pairing.pairing(q, p, final_exponentiate=False)
    return bool(optimized_pairing.final_exponentiate(product) == FQ12.one())
