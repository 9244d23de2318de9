"""EXPERIMENTAL zk-inference jobs on the miner: the ONNX model run and proved with EZKL (docs/zk.md)."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import orjson

from aitbc.miner.backends.base import ModelInfo
from aitbc.protocol.errors import RemoteError
from aitbc.protocol.job import JobInput, JobOutput, pack_vectors
from aitbc.protocol.zkml import ZKML_SCALE, compute_float_of_felt, get_instances
from aitbc.protocol.zkml_input import ZKML_INPUTS, ZKML_MODEL, parse_zk_vector


class ZkmlJobs:
    """Proves in one spawned worker process, started at the first such job."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def model(self) -> ModelInfo:
        """The zk-inference model, offered only when asked for and the zkml extra is installed."""
        from aitbc.zk import zkml

        if not zkml.is_zkml_available():
            raise RemoteError("zk-inference needs the zkml extra: pip install 'aitbc[zkml]'", reason="zkml_unavailable")
        return ModelInfo(ZKML_MODEL, zkml.compute_zkml_model_digest(zkml.default_zkml_paths()), "zk-inference", "ezkl")

    def run(self, job: JobInput) -> tuple[JobOutput, int]:
        """Run the ONNX model on each vector and prove it with EZKL (the proving key is generated into the
        data dir at the first such job); the output carries the proofs."""
        from aitbc.zk import zkml

        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            pool = self._pool
        cache = self.data_dir / "zkml"
        vectors = [parse_zk_vector(t) for t in job.texts or []]
        root = str(zkml.default_zkml_paths().root)
        proofs = pool.submit(zkml.prove_job, root, str(cache), vectors).result()
        outputs = [[compute_float_of_felt(f, ZKML_SCALE) for f in get_instances(p)[ZKML_INPUTS:]] for p in proofs]
        dims, packed = pack_vectors(outputs)
        text = orjson.dumps({"proofs": proofs}).decode()
        return JobOutput(text=text, dimensions=dims, vectors_f32=packed), len(vectors)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
