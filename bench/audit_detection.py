"""How fast random audits catch a cheating miner: the analytic law beside a simulation with the chain's own draw.

A miner cheats on a fraction ``c`` of its jobs; each settled job is audited with probability ``p``
(``aitbc.chain.audits.is_selected_for_audit`` over the hash of the block that settled it). The chance a
cheat is caught within ``n`` jobs is ``1 - (1 - p*c)^n``; the expected number of jobs until the first
caught cheat is ``1/(p*c)``. The simulation draws real selections from random block hashes (one block per
job) and counts, so the two columns should agree within sampling error.

    .venv/bin/python bench/audit_detection.py [--trials 2000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

from aitbc.chain.audits import is_selected_for_audit


def simulate(p_bps: int, cheat_rate: float, trials: int, horizon: int, rng: random.Random) -> tuple[float, float]:
    """(share of trials caught within ``horizon`` jobs, mean jobs until caught among those caught)."""
    caught_at: list[int] = []
    for _ in range(trials):
        for job in range(1, horizon + 1):
            if rng.random() >= cheat_rate:
                continue  # an honest job: an audit finds nothing
            parent = rng.getrandbits(256).to_bytes(32, "big").hex()
            if is_selected_for_audit(parent, f"job-{job}", p_bps):
                caught_at.append(job)
                break
    share = len(caught_at) / trials
    return share, statistics.fmean(caught_at) if caught_at else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=2_000)
    parser.add_argument("--horizon", type=int, default=200, help="jobs per trial")
    args = parser.parse_args()
    rng = random.Random(7)
    started = time.perf_counter()
    print(f"conditions: {args.trials} trials x up to {args.horizon} jobs, chain draw (sha256 of block hash + job id),")
    print(f"            Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}")
    header = ("p", "cheat", "caught by n (analytic)", "(simulated)", "E[jobs] analytic", "simulated")
    print("{:>6} {:>6} | {:>22} {:>12} | {:>16} {:>10}".format(*header))
    for p_bps in (100, 500, 1_000):
        for cheat in (0.05, 0.2, 1.0):
            q = p_bps / 10_000 * cheat
            analytic = 1 - (1 - q) ** args.horizon
            simulated, mean_jobs = simulate(p_bps, cheat, args.trials, args.horizon, rng)
            row = f"{p_bps / 100:>5.1f}% {cheat:>6.2f} | {analytic:>22.3f} {simulated:>12.3f}"
            print(f"{row} | {1 / q:>16.1f} {mean_jobs:>10.1f}")
    took = time.perf_counter() - started
    print(f"({took:.1f} s; 'E[jobs] simulated' is the mean among trials caught within the horizon)")


if __name__ == "__main__":
    main()
