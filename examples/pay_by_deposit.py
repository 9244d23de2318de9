"""Pay for jobs from a deposit: the devnet's API key is bound to the client's deposit, so a plain
submission is paid from it (reserved at once, settled on chain in a batch).

    python examples/pay_by_deposit.py
"""

from __future__ import annotations

import os
import time

from aitbc.client.devnet import load_devnet

MODEL = os.environ.get("AITBC_EXAMPLE_MODEL", "smollm2-135m-instruct")


def main() -> None:
    devnet = load_devnet()
    with devnet.coordinator() as coordinator:
        account = coordinator.account()
        assert account is not None, "this API key has no deposit (aitbc deposit open; aitbc coordinator keys bind)"
        print("deposit", account["deposit_id"], "available", account["available"], "base units")
        job = coordinator.submit_inference(MODEL, "Say hello.", params={"max_tokens": 16})
        print("job", job["job_id"], "payment", job["payment"]["state"])  # reserved
        coordinator.wait(job["job_id"], timeout=120)
        deadline = time.monotonic() + 60
        while (payment := coordinator.job(job["job_id"])["payment"])["state"] != "settled":
            assert time.monotonic() < deadline, payment
            time.sleep(0.5)
        print(
            "settled in tx", payment["tx_hash"], "at height", payment["height"], "miner got", payment["paid_to_miner"]
        )
        print("spent so far:", coordinator.account()["spent"])  # type: ignore[index]


if __name__ == "__main__":
    main()
