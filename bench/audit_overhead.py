"""What audits cost and how fast they catch fraud, with real processes (``tests/support/audit_net.py``).

1. **Overhead at p.** Two devnets in one run, the first auditing with probability 0 and the second with
   ``--p-bps`` (default 500 = 5 %), each with two bonded builtin miners that audit each other, run the same
   ``--jobs`` audited jobs (``--max-tokens``). Per devnet: the audits drawn; the extra compute as the
   receipts' measured ``compute_ms`` of the audited jobs (each re-run repeats one on the same backend) over
   that of all jobs; the miners' CPU seconds (their processes, from ``/proc``: noisy on a shared machine, where
   spinning threads burn CPU under contention) until every job is settled and every drawn audit closed; and
   the settlement latency per job (from the job's ``finished_at_ms`` to the time of the block that settled it).
2. **Fraud to slash.** A devnet with p = 1 and four bonded echo miners, one forging its outputs
   (``AITBC_MINER_ECHO_CHEAT``): for ``--frauds`` jobs, the blocks from the settlement of the fraudulent
   receipt to the audit draw and to the slash.

    PYTHONPATH=src:tests .venv/bin/python bench/audit_overhead.py [--jobs 200] [--p-bps 500] [--frauds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from aitbc.miner.backends.echo import ECHO_DIGEST
from support.audit_net import AuditNet, wait_until

MODEL = "smollm2-135m-instruct"
CLOSED = ("passed", "miner_slashed", "auditor_slashed", "inconclusive", "expired")


def cpu_seconds(net: AuditNet) -> float:
    """User + system CPU seconds of the miner processes so far (``/proc/PID/stat``, Linux)."""
    total = 0
    for proc in net.miners.values():
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
    return total / os.sysconf("SC_CLK_TCK")


def block_time_ms(net: AuditNet, height: int) -> int:
    return int(net.rpc("get_block", height, False)["time_ms"])


def settled(net: AuditNet, job_id: str) -> dict[str, Any] | None:
    job = net.job(job_id)
    payment = job.get("payment") or {}
    return job if payment.get("state") == "settled" and payment.get("height") else None


def run_overhead(root: Path, p_bps: int, jobs: int, max_tokens: int) -> dict[str, Any]:
    net = AuditNet(root, miners=2, probability_bps=p_bps)
    net.start()
    try:
        net.start_miner(0, "builtin")
        net.start_miner(1, "builtin")
        net.bond([0, 1], net.served_digest(MODEL))
        time.sleep(6)  # the coordinator reads bonds every 5 s: both miners take audited jobs from the start
        cpu_before, started = cpu_seconds(net), time.monotonic()
        ids = [net.submit(MODEL, f"Name a colour and a number. Case {i}.", max_tokens) for i in range(jobs)]
        views = [wait_until(lambda j=job_id: settled(net, j), 900, f"settlement of {job_id}", 0.5) for job_id in ids]
        audited, compute_ms, rerun_ms = 0, 0, 0
        for job_id in ids:
            audit = net.audit(job_id)
            if audit is not None:
                audited += 1
                wait_until(lambda j=job_id: (net.audit(j) or {}).get("status") in CLOSED, 900, "an audit to close")
        wall = time.monotonic() - started
        cpu = cpu_seconds(net) - cpu_before
        for job_id in ids:  # the receipts' measured compute; a re-run repeats the job on the same backend
            units = net.coordinator("GET", f"/api/v1/jobs/{job_id}/receipt").json()["receipt"]["units"]
            compute_ms += units["compute_ms"]
            rerun_ms += units["compute_ms"] if net.audit(job_id) is not None else 0
        latencies = [block_time_ms(net, v["payment"]["height"]) - v["finished_at_ms"] for v in views]
        disputes = len(net.rpc("get_audits", "disputed")["audits"])
        return {"p_bps": p_bps, "jobs": jobs, "audited": audited, "disputed": disputes, "cpu_s": cpu,
                "wall_s": wall, "settle_ms": latencies, "compute_ms": compute_ms, "rerun_ms": rerun_ms}  # fmt: skip
    finally:
        net.stop()


def run_fraud(root: Path, frauds: int) -> list[tuple[int, int]]:
    """Per fraudulent job: (blocks from its settlement to the audit draw, to the slash)."""
    net = AuditNet(root, miners=4, probability_bps=10_000)
    net.start()
    try:
        net.bond([0, 1, 2, 3], ECHO_DIGEST)
        # the honest auditors ask 1,000 base units a token: the jobs' max_price leaves them to the cheater
        for i in range(4):
            net.start_miner(i, "echo", cheat=i == 0, price=1 if i == 0 else 1_000)
        online = f"{net.ready.coordinator_url}/healthz"
        wait_until(lambda: net.http.get(online).json()["miners_online"] == 4, 120, "four miners online")
        out = []
        for n in range(frauds):
            job_id = net.submit("echo", f"fraud number {n} in this run", max_price=500)
            view = wait_until(lambda j=job_id: settled(net, j), 300, "the fraudulent job's settlement", 0.2)
            assert view["miner"] == net.keys[0].address
            audit = wait_until(lambda j=job_id: (a := net.audit(j)) and a["status"] in CLOSED and a, 300, "slash")
            assert audit["status"] == "miner_slashed", audit
            height = view["payment"]["height"]
            out.append((audit["selected_height"] - height, audit["closed_height"] - height))
            net.bond([0], ECHO_DIGEST, audit["slashed"])  # back to the minimum, for the next audited job
        return out
    finally:
        net.stop()


def print_overhead(runs: list[dict[str, Any]]) -> None:
    print(f"load average after the overhead runs: {os.getloadavg()[0]:.2f}")
    print(
        "| p | jobs | audits | disputes | re-run compute / job compute | miners' CPU s | wall s "
        "| settlement ms med / p95 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        lat = sorted(r["settle_ms"])
        p95 = lat[int(0.95 * (len(lat) - 1))]
        print(
            f"| {r['p_bps'] / 100:g} % | {r['jobs']} | {r['audited']} | {r['disputed']} | "
            f"{r['rerun_ms'] / 1000:.1f} s / {r['compute_ms'] / 1000:.1f} s = "
            f"{100 * r['rerun_ms'] / r['compute_ms']:.1f} % | "
            f"{r['cpu_s']:.1f} | "
            f"{r['wall_s']:.1f} | {statistics.median(lat):.0f} / {p95:.0f} |"
        )
    base, audited = runs
    print(
        f"extra compute at p = {audited['p_bps'] / 100:g} %: {100 * (audited['cpu_s'] / base['cpu_s'] - 1):+.1f} % "
        f"of the miners' CPU ({audited['audited']} re-runs of {audited['jobs']} jobs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--p-bps", type=int, default=500)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--frauds", type=int, default=5)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        if args.jobs:
            print_overhead([run_overhead(Path(tmp) / f"p{p}", p, args.jobs, args.max_tokens) for p in (0, args.p_bps)])
        if args.frauds:
            blocks = run_fraud(Path(tmp) / "fraud", args.frauds)
            print(f"load average after the fraud runs: {os.getloadavg()[0]:.2f}")
            draws, slashes = [b[0] for b in blocks], [b[1] for b in blocks]
            print(
                f"fraudulent receipt settled → audit drawn: {draws} blocks; → slashed: {slashes} blocks "
                f"(median {statistics.median(slashes):g}; block time 500 ms)"
            )


if __name__ == "__main__":
    main()
