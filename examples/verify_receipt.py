"""Verify a job's receipt yourself: the miner's and coordinator's signatures, that it is about this job,
and that the chain settled it (the settle tx in a committed block, the amounts).

    python examples/verify_receipt.py [JOB_ID]      # default: run a new escrow-paid job first
"""

from __future__ import annotations

import os
import sys
import time

from aitbc.client.devnet import load_devnet
from aitbc.client.payment import submit_paid_job
from aitbc.wallet.receipts import verify_receipt_end_to_end

MODEL = os.environ.get("AITBC_EXAMPLE_MODEL", "smollm2-135m-instruct")


def main() -> None:
    devnet = load_devnet()
    with devnet.coordinator() as coordinator, devnet.node() as node:
        if len(sys.argv) > 1:
            job_id = sys.argv[1]
        else:
            body = {"type": "inference", "model": MODEL, "input": {"prompt": "Hi"}, "params": {"max_tokens": 8}}
            job, _ = submit_paid_job(coordinator, node, devnet.client_key(), body)
            job_id = job["job_id"]
            coordinator.wait(job_id, timeout=120)
            deadline = time.monotonic() + 60
            while coordinator.job(job_id)["payment"]["state"] != "settled":
                assert time.monotonic() < deadline, "not settled in time"
                time.sleep(0.5)
        report = verify_receipt_end_to_end(node, coordinator, job_id=job_id)
        for check in report.checks:
            print(f"{check.outcome:5} {check.name}: {check.detail}")
        print("receipt", report.receipt_hash, "OK" if report.ok else "FAILED")
        sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
