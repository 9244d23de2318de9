"""Receipt-proof timings: prove (groth16py in-process vs snarkjs in Node) and verify (groth16py vs py-ecc).

What it does, in order:

1. measures the baseline: one Ed25519 signature verify (PyNaCl), the check a plain settle_job costs;
2. loads the committed ceremony zkey into groth16py (compiles the circuit once, reported as start-up);
3. proves ``--proofs`` receipts with groth16py (witness + prove, in-process), and a few with snarkjs
   (``groth16 fullprove`` in a Node subprocess, start-up included: what a miner shelling out pays);
4. verifies every proof with the node's verifier (groth16py against the pinned key, the exact call
   the state transition makes) and a few with the pure-Python py-ecc verifier beside it;
5. prints medians and p90s, the targets (verify <= 5 ms, prove <= 0.5 s) and ratios to the baseline,
   with the machine's conditions (cores, load average: the machine is shared).

    .venv/bin/python bench/zk.py            # 20 proofs
    .venv/bin/python bench/zk.py --quick    # 5 proofs
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import nacl.signing

from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.receipt import Receipt, ReceiptUnits, sign_receipt_as_miner
from aitbc.protocol.zk import (
    ZkReceiptProof,
    compute_public_inputs,
    get_receipt_proof_problem,
    receipt_vk_json,
)
from aitbc.zk.prover import Groth16pyProver, SnarkjsProver, make_receipt_proof
from aitbc.zk.reference import is_valid_groth16_pyecc
from aitbc.zk.toolchain import CircuitPaths, default_circuits_dir

T = TypeVar("T")
VERIFY_TARGET_MS = 5.0
PROVE_TARGET_MS = 500.0


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - start) * 1000


def summary(name: str, samples: list[float], target: float | None = None, baseline: float | None = None) -> str:
    med = statistics.median(samples)
    p90 = sorted(samples)[max(0, int(len(samples) * 0.9) - 1)]
    line = f"{name:<34} n={len(samples):<3} median {med:9.2f} ms   p90 {p90:9.2f} ms"
    if target is not None:
        line += f"   target <= {target:g} ms: {'MET' if med <= target else 'MISSED'}"
    if baseline:
        line += f"   = {med / baseline:,.0f}x ed25519 verify"
    return line


def make_receipt(i: int, miner: KeyPair) -> Receipt:
    receipt = Receipt(
        chain_id="bench",
        job_id=f"job-{i}",
        miner=miner.address,
        client="client-1",
        coordinator=miner.address,
        model="smollm2-135m",
        model_digest="sha256:" + "ab" * 32,
        input_hash=f"{i:064x}",
        output_hash=f"{i + 1:064x}",
        units=ReceiptUnits(prompt_tokens=20 + i, completion_tokens=100, compute_ms=1000),
        unit_price=7,
        total_price=(120 + i) * 7,
        started_at_ms=1,
        finished_at_ms=1001,
    )
    return sign_receipt_as_miner(receipt, miner)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proofs", type=int, default=20)
    parser.add_argument("--snarkjs", type=int, default=3, help="proofs made with snarkjs (0: skip)")
    parser.add_argument("--pyecc", type=int, default=3, help="proofs verified with py-ecc (0: skip)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ezkl", action="store_true", help="also time the EXPERIMENTAL EZKL sample model (minutes)")
    args = parser.parse_args()
    if args.quick:
        args.proofs, args.snarkjs, args.pyecc = 5, 1, 1
    paths = CircuitPaths(default_circuits_dir())
    escrow = 10**9
    miner = KeyPair.from_seed(b"\x07" * 32)

    # Baseline: one Ed25519 verify
    signer = nacl.signing.SigningKey(b"\x01" * 32)
    signed = signer.sign(b"x" * 150)
    verify_key = signer.verify_key
    ed = [timed(lambda: verify_key.verify(signed))[1] for _ in range(2000)]
    ed25519_ms = statistics.median(ed)

    start = time.perf_counter()
    prover = Groth16pyProver(paths)
    load_s = time.perf_counter() - start

    receipts = [make_receipt(i, miner) for i in range(args.proofs)]
    proofs: list[ZkReceiptProof] = []
    prove_ms: list[float] = []
    for receipt in receipts:
        t0 = time.perf_counter()
        proofs.append(make_receipt_proof(prover, receipt, escrow))
        prove_ms.append((time.perf_counter() - t0) * 1000)

    snark_ms: list[float] = []
    snarkjs = SnarkjsProver(paths)
    for receipt in receipts[: args.snarkjs]:
        t0 = time.perf_counter()
        proof = make_receipt_proof(snarkjs, receipt, escrow)
        snark_ms.append((time.perf_counter() - t0) * 1000)
        assert get_receipt_proof_problem(proof, receipt, escrow) is None, "snarkjs proof rejected"

    verify_ms: list[float] = []
    for receipt, proof in zip(receipts, proofs, strict=True):
        problem, ms = timed(lambda r=receipt, p=proof: get_receipt_proof_problem(p, r, escrow))  # type: ignore[misc]
        assert problem is None, problem
        verify_ms.append(ms)

    pyecc_ms: list[float] = []
    vk = receipt_vk_json()
    for receipt, proof in list(zip(receipts, proofs, strict=True))[: args.pyecc]:
        public = compute_public_inputs(
            int(proof.commitment, 16), receipt.total_price, escrow, receipt.job_id, miner.address
        )
        ok, ms = timed(lambda pr=proof, pu=public: is_valid_groth16_pyecc(vk, bytes.fromhex(pr.proof), pu))  # type: ignore[misc]
        assert ok
        pyecc_ms.append(ms)

    print("AITBC zk receipt bench")
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
        f"(shared machine), Python {platform.python_version()}, circuit: receipt.circom (1459 constraints, 2^11 ptau)"
    )
    print(f"{'baseline: ed25519 verify (PyNaCl)':<34} n={len(ed):<4} median {ed25519_ms * 1000:8.1f} us")
    print(f"groth16py prover start-up (import zkey + compile circuit): {load_s:.2f} s (once per miner process)")
    print(summary("prove: groth16py in-process", prove_ms, PROVE_TARGET_MS))
    if snark_ms:
        print(summary("prove: snarkjs fullprove (Node)", snark_ms, PROVE_TARGET_MS))
    print(summary("verify: node (groth16py + opening)", verify_ms, VERIFY_TARGET_MS, ed25519_ms))
    if pyecc_ms:
        print(summary("verify: py-ecc (pure Python)", pyecc_ms, None, ed25519_ms))
        print(f"py-ecc / groth16py verify: {statistics.median(pyecc_ms) / statistics.median(verify_ms):,.0f}x")
    if snark_ms:
        print(f"snarkjs / groth16py prove: {statistics.median(snark_ms) / statistics.median(prove_ms):.1f}x")
    if args.ezkl:
        bench_ezkl()


def bench_ezkl() -> None:
    """EZKL on the sample MLP (4-8-2): setup from the committed compiled model and SRS, one prove, verifies."""
    import tempfile
    from pathlib import Path

    from aitbc.zk import zkml

    paths = zkml.default_zkml_paths()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        work = zkml.copy_sample(paths, tmp / "zkml")
        import ezkl

        start = time.perf_counter()
        ezkl.setup(str(work.compiled), str(tmp / "vk.key"), str(tmp / "pk.key"), str(work.srs), None, False)
        setup_s = time.perf_counter() - start
        _, prove_ms = timed(lambda: zkml.prove(work, tmp / "pk.key", work.sample_input, tmp / "proof.json"))
        verify_ms = [timed(lambda: zkml.verify(paths, paths.sample_proof))[1] for _ in range(5)]
        pk_mb = (tmp / "pk.key").stat().st_size / 1e6
    print(f"EZKL (experimental) sample MLP 4-8-2, logrows 15: setup {setup_s:.1f} s (proving key {pk_mb:.0f} MB)")
    print(summary("EZKL prove", [prove_ms]))
    print(summary("EZKL verify (committed proof)", verify_ms))


if __name__ == "__main__":
    main()
