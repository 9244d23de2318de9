"""Pay for one job with its own escrow on chain: the client's key locks max_price + fee for this job id,
the coordinator settles it from the miner's receipt and refunds the rest.

    python examples/pay_by_escrow.py
"""

from __future__ import annotations

import os

from aitbc.client.devnet import load_devnet
from aitbc.client.payment import submit_paid_job

MODEL = os.environ.get("AITBC_EXAMPLE_MODEL", "smollm2-135m-instruct")


def main() -> None:
    devnet = load_devnet()
    body = {"type": "inference", "model": MODEL, "input": {"prompt": "Say hello."}, "params": {"max_tokens": 16}}
    with devnet.coordinator() as coordinator, devnet.node() as node:
        job, escrow = submit_paid_job(coordinator, node, devnet.client_key(), body)
        print("escrow", escrow.job_id, "locked", escrow.amount, "in tx", escrow.tx_hash, "at height", escrow.height)
        done = coordinator.wait(job["job_id"], timeout=120)
        print("job", done["state"], "answer:", coordinator.result(job["job_id"])["output"]["text"])


if __name__ == "__main__":
    main()
