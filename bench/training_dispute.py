"""How long a training dispute takes, in blocks and rounds, and what verifying a training job costs.

A miner commits to a run of ``16 x k`` steps with a checkpoint every ``k`` steps and skips one step (at a
random offset) in every segment, so whichever segment the chain draws holds a fault. The auditor, the
miner and the referee play it out with the miners' own move planning (``aitbc.market.training_disputes``)
on the toy deterministic runtime of the tests, through real blocks (``build_block``, in memory), each party
moving as soon as it can. Printed per segment length ``k``: bisection rounds, blocks from the draw to the
slash, the bound ``ceil(log2 k) + 3``, the worst case when every side waits out its window
(``audit_window + (ceil(log2 k) + 2) x dispute_window`` at the chain's default parameters), and the share of
the run the audit re-executes (``k / steps``) and the referee recomputes (1 step).

With ``--runtime`` it also measures what verification costs on the training runtime (``aitbc.training``,
one CPU thread): a whole run of logreg / mlp / cnn on scikit-learn's digits, the replay of one segment
(what an audit re-executes, loading its start state included) and of one step (what a referee recomputes).

    .venv/bin/python bench/training_dispute.py [--trials 5] [--runtime]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from aitbc.chain.audit_params import AuditParams
from aitbc.chain.audit_types import OPEN_AUDITS
from aitbc.chain.training_audit import max_dispute_rounds
from aitbc.market.training_disputes import plan_move, plan_replay
from aitbc.protocol.training import compute_commitment_hash
from aitbc.protocol.tx import AnswerTrainingAudit, RevealTrainingStep, SubmitTrainingAudit, Tx, TxBase
from support.audit_chain import MINERS, AuditChain
from support.toy_training import Store, ToyRunner, toy_train

SEGMENTS = 16
KINDS: dict[str, type[TxBase]] = {
    "submit_training_audit": SubmitTrainingAudit,
    "answer_training_audit": AnswerTrainingAudit,
    "reveal_training_step": RevealTrainingStep,
}


def play(k: int, rng: random.Random) -> tuple[int, int, str]:
    """(rounds, blocks from the draw to the decision, outcome) of one dispute over segments of ``k`` steps."""
    chain = AuditChain()
    chain.bond(*MINERS)
    skipped = frozenset(s * k + rng.randint(1, k) for s in range(SEGMENTS))
    stores: list[Store] = [{} for _ in MINERS]
    commitment = toy_train(SEGMENTS * k, k, stores[0], skip=skipped)
    commitments = {"job": commitment}
    runners = [ToyRunner(commitments, stores, stores[i], {"job": skipped} if i == 0 else None) for i in range(4)]
    chain.settle("job", MINERS[0], compute_commitment_hash(commitment))
    chain.block()
    selected = chain.audit("job").selected_height
    while (audit := chain.audit("job")).status in OPEN_AUDITS:
        txs: list[Tx] = []
        for key, runner in zip(MINERS, runners, strict=True):
            replay = plan_replay(audit, key.address, commitment)
            if replay is None:
                continue
            hashes = runner.replay("job", replay.start_step, replay.end_step, replay.start_hash) or []
            move = plan_move(audit, key.address, commitment, hashes)
            if move is not None:
                txs.append(chain.tx(key, KINDS[move.kind], **move.fields))
        chain.block(*txs)
    assert audit.training is not None
    return audit.training.rounds, audit.closed_height - selected, audit.status


def measure_runtime(steps: int, every: int) -> None:
    """Measured cost of verification against the run it verifies, on the real runtime."""
    from aitbc.training import replay_segment, run_training
    from support.runtime_training import digits, digits_spec

    raw, dataset = digits()
    print(f"\nruntime: {steps} steps, a checkpoint every {every} (share {every / steps:.2%}), batch 32, digits")
    print("{:>7} {:>10} {:>12} {:>8} {:>12} {:>8}".format("model", "run s", "segment s", "share", "1 step s", "share"))
    run_training(digits_spec(raw, 4, 2), dataset)  # warm-up: torch's first-call costs are no run's
    for model in ("logreg", "mlp", "cnn"):
        spec = msgspec.structs.replace(digits_spec(raw, steps, every), model=model)
        started = time.perf_counter()
        result = run_training(spec, dataset)
        run_s = time.perf_counter() - started
        start = every * (SEGMENTS // 2)
        started = time.perf_counter()
        replay_segment(spec, dataset, result.checkpoints[start], start, start + every)
        segment_s = time.perf_counter() - started
        started = time.perf_counter()
        replay_segment(spec, dataset, result.checkpoints[start], start, start + 1)
        step_s = time.perf_counter() - started
        shares = f"{segment_s / run_s:>8.2%} {step_s:>12.4f} {step_s / run_s:>8.2%}"
        print(f"{model:>7} {run_s:>10.2f} {segment_s:>12.3f} {shares}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--runtime", action="store_true", help="also measure verification on aitbc.training")
    args = parser.parse_args()
    rng = random.Random(22)
    defaults = AuditParams()
    print(f"conditions: {args.trials} disputes per k, runs of {SEGMENTS} x k steps, toy runtime, in-memory blocks;")
    print(f"            Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}")
    header = ("k", "rounds", "blocks", "bound", "worst (windows)", "outcome", "audit share", "referee share", "ms")
    print("{:>6} {:>7} {:>7} {:>6} {:>16} {:>14} {:>12} {:>14} {:>7}".format(*header))
    for k in (8, 64, 512, 4096):
        started = time.perf_counter()
        results = [play(k, rng) for _ in range(args.trials)]
        took = (time.perf_counter() - started) / args.trials * 1000
        rounds = statistics.fmean(r for r, _, _ in results)
        blocks = statistics.fmean(b for _, b, _ in results)
        outcomes = {o for _, _, o in results}
        bound = max_dispute_rounds(k) + 3
        worst = defaults.audit_window_blocks + (max_dispute_rounds(k) + 2) * defaults.dispute_window_blocks
        steps = SEGMENTS * k
        row = (f"{k:>6} {rounds:>7.1f} {blocks:>7.1f} {bound:>6} {worst:>16} {','.join(sorted(outcomes)):>14} "
               f"{k / steps:>12.2%} {1 / steps:>14.4%} {took:>7.0f}")  # fmt: skip
        print(row)
    print("(blocks: from the block that drew the audit to the one that slashed; 'ms': wall time per dispute)")
    if args.runtime:
        measure_runtime(SEGMENTS * 20, 20)


if __name__ == "__main__":
    main()
