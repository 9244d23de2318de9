"""Train a small CNN on scikit-learn's digits on the devnet's miners, then load the weights it returns.

python examples/train_digits.py        # against ~/.aitbc/devnet (or $AITBC_DEVNET); a miner run with --training

The dataset goes up as a blob; the job names it by hash. Any honest miner of the same runtime build returns
bit-identical weights, and the receipt commits to the checkpoints a verifier can replay (docs/training.md).
"""

from __future__ import annotations

import io
import json

import msgspec
import numpy as np
from safetensors.torch import load as load_safetensors
from sklearn.datasets import load_digits

from aitbc.client.devnet import load_devnet
from aitbc.protocol.training import TrainingSpec


def main() -> None:
    digits = load_digits()
    buf = io.BytesIO()
    np.savez(buf, x=(digits.images / 16.0).astype(np.float32), y=digits.target)
    devnet = load_devnet()
    with devnet.coordinator() as coordinator:
        dataset = coordinator.put_blob(buf.getvalue())
        spec = TrainingSpec(
            model="cnn", steps=120, batch_size=32, lr_micro=3000, optimiser="adam", seed=1,
            checkpoint_every=20, dataset_hash=dataset, dataset_format="npz",
        )  # fmt: skip
        job = coordinator.submit({"type": "training", "model": "cnn", "input": {"training": msgspec.to_builtins(spec)}})
        print("submitted", job["job_id"], "on dataset", dataset[:16])
        done = coordinator.wait(job["job_id"], timeout=600)
        assert done["state"] == "completed", done
        output = coordinator.result(job["job_id"])["output"]["training"]
        losses = json.loads(coordinator.get_blob(output["losses_blob"], job["job_id"]))["losses"]
        weights = load_safetensors(coordinator.get_blob(output["weights_blob"], job["job_id"]))
        print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; tensors {sorted(weights)}")
        print("committed checkpoints:", len(output["commitment"]["checkpoint_hashes"]))


if __name__ == "__main__":
    main()
