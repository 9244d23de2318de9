"""Submit a job to the devnet's coordinator, wait for it, print the answer and what it cost.

python examples/submit_and_wait.py            # against ~/.aitbc/devnet (or $AITBC_DEVNET)
"""

from __future__ import annotations

import os

from aitbc.client.devnet import load_devnet

MODEL = os.environ.get("AITBC_EXAMPLE_MODEL", "smollm2-135m-instruct")


def main() -> None:
    devnet = load_devnet()
    with devnet.coordinator() as coordinator:
        job = coordinator.submit_inference(MODEL, "Name three colours.", params={"max_tokens": 32})
        print("submitted", job["job_id"], "state", job["state"])
        done = coordinator.wait(job["job_id"], timeout=120)
        assert done["state"] == "completed", done
        result = coordinator.result(job["job_id"])
        print("answer:", result["output"]["text"])
        print("tokens:", result["usage"], "price:", result["total_price"], "base units")


if __name__ == "__main__":
    main()
