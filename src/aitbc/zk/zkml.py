"""EXPERIMENTAL zkML: a tiny ONNX model whose inference is proved with EZKL (Halo2/KZG).

What exists: a fixed sample model (4 inputs → 8 ReLU → 2 outputs), its EZKL settings, compiled
circuit, verifying key, a locally generated SRS (``gen_srs``: a development SRS whose secret the
generating machine could have kept — never downloaded, and not a ceremony) and one sample proof,
committed under ``circuits/zkml/``; ``prove`` and ``verify`` around them; and what the
EXPERIMENTAL ``zk-inference`` job type needs: the model's digest, the proving key (≈ 140 MB, not
committed: generated on first use and cached), proving a job's vectors on the miner and verifying
a proof in the wallet. The wire rules (output hash = hash of the proven outputs) are pure, in
``aitbc.protocol.zkml``. See docs/zk.md.
"""

from __future__ import annotations

import asyncio
import filecmp
import hashlib
import inspect
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aitbc.zk.toolchain import default_circuits_dir

INPUTS: Final = 4
HIDDEN: Final = 8
OUTPUTS: Final = 2
SAMPLE_INPUT: Final = (0.1, -0.2, 0.3, 0.4)


@dataclass(frozen=True, slots=True)
class ZkmlPaths:
    root: Path

    @property
    def model(self) -> Path:
        return self.root / "mlp.onnx"

    @property
    def settings(self) -> Path:
        return self.root / "settings.json"

    @property
    def compiled(self) -> Path:
        return self.root / "mlp.compiled"

    @property
    def srs(self) -> Path:
        return self.root / "kzg.srs"

    @property
    def vk(self) -> Path:
        return self.root / "vk.key"

    @property
    def sample_input(self) -> Path:
        return self.root / "input.json"

    @property
    def sample_proof(self) -> Path:
        return self.root / "proof.json"


def default_zkml_paths() -> ZkmlPaths:
    return ZkmlPaths(default_circuits_dir() / "zkml")


def _run(result: Any) -> Any:
    """Some EZKL calls return an awaitable in some versions: run it to completion."""
    if inspect.iscoroutine(result):
        return asyncio.run(result)
    return result


def build_sample_model(path: Path) -> None:
    """The sample MLP with fixed weights (seeded), as ONNX (opset 13)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    w1 = (rng.normal(size=(INPUTS, HIDDEN)) * 0.5).astype(np.float32)
    b1 = (rng.normal(size=(HIDDEN,)) * 0.1).astype(np.float32)
    w2 = (rng.normal(size=(HIDDEN, OUTPUTS)) * 0.5).astype(np.float32)
    b2 = (rng.normal(size=(OUTPUTS,)) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h0"]),
        helper.make_node("Add", ["h0", "B1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "W2"], ["y0"]),
        helper.make_node("Add", ["y0", "B2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "aitbc-sample-mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, INPUTS])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, OUTPUTS])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "W1"), (b1, "B1"), (w2, "W2"), (b2, "B2"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="aitbc")
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def write_input(path: Path, values: tuple[float, ...]) -> None:
    path.write_text(json.dumps({"input_data": [list(values)]}))


def setup_sample(paths: ZkmlPaths, pk: Path) -> None:
    """Model, settings (public input and output, fixed params), compiled circuit, local SRS, keys."""
    import ezkl

    build_sample_model(paths.model)
    write_input(paths.sample_input, SAMPLE_INPUT)
    args = ezkl.PyRunArgs()
    # (the stubs do not list PyRunArgs' attributes)
    for name, value in (("input_visibility", "public"), ("output_visibility", "public"), ("param_visibility", "fixed")):
        setattr(args, name, value)
    ezkl.gen_settings(str(paths.model), str(paths.settings), args)
    _run(
        ezkl.calibrate_settings(
            str(paths.sample_input), str(paths.model), str(paths.settings), "resources", 2.0, None, [1], None
        )
    )
    ezkl.compile_circuit(str(paths.model), str(paths.compiled), str(paths.settings))
    logrows = json.loads(paths.settings.read_text())["run_args"]["logrows"]
    ezkl.gen_srs(str(paths.srs), logrows)  # generated here, never downloaded
    ezkl.setup(str(paths.compiled), str(paths.vk), str(pk), str(paths.srs), None, False)


def prove(paths: ZkmlPaths, pk: Path, input_path: Path, proof_path: Path) -> dict[str, Any]:
    import ezkl

    with tempfile.TemporaryDirectory(prefix="aitbc-zkml-") as tmp:
        witness = Path(tmp) / "witness.json"
        _run(ezkl.gen_witness(str(input_path), str(paths.compiled), str(witness), str(paths.vk), str(paths.srs)))
        ezkl.prove(str(witness), str(paths.compiled), str(pk), str(proof_path), str(paths.srs))
    proof: dict[str, Any] = json.loads(proof_path.read_text())
    return proof


def verify(paths: ZkmlPaths, proof_path: Path) -> bool:
    """EZKL raises on a bad proof instead of returning False: any failure is an invalid proof."""
    import ezkl

    try:
        return bool(ezkl.verify(str(proof_path), str(paths.settings), str(paths.vk), str(paths.srs), False))
    except Exception:
        return False


def get_public_outputs(proof: dict[str, Any]) -> list[str]:
    """The proof's public outputs (field elements as EZKL writes them): the last OUTPUTS instances."""
    instances: list[str] = proof["instances"][0]
    return instances[-OUTPUTS:]


def get_public_inputs(proof: dict[str, Any]) -> list[str]:
    instances: list[str] = proof["instances"][0]
    return instances[:INPUTS]


def decode_outputs(paths: ZkmlPaths, proof: dict[str, Any]) -> list[float]:
    import ezkl

    scale = json.loads(paths.settings.read_text())["model_output_scales"][0]
    return [float(ezkl.felt_to_float(felt, scale)) for felt in get_public_outputs(proof)]


def compute_zkml_output_hash(proof: dict[str, Any]) -> str:
    """What a zk-inference receipt's output_hash would be: sha256 over the proved public outputs."""
    return hashlib.sha256("\n".join(get_public_outputs(proof)).encode()).hexdigest()


def copy_sample(paths: ZkmlPaths, target: Path) -> ZkmlPaths:
    shutil.copytree(paths.root, target)
    return ZkmlPaths(target)


def compute_zkml_model_digest(paths: ZkmlPaths) -> str:
    """The zk-inference model's digest: sha256 over the ONNX model, the EZKL settings and the verifying
    key, so a receipt names exactly the circuit its proofs verify against."""
    digest = hashlib.sha256()
    for part in (paths.model, paths.settings, paths.vk):
        digest.update(hashlib.sha256(part.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def ensure_proving_key(paths: ZkmlPaths, cache_dir: Path) -> Path:
    """The proving key for the committed circuit, generated on first use (≈ 10-30 s) and cached in
    ``cache_dir``. EZKL's key generation is deterministic: the verifying key it derives must equal the
    committed one, else the cached key would make proofs nobody can verify."""
    import ezkl

    pk = cache_dir / f"zkml-pk-{compute_zkml_model_digest(paths)[7:19]}.key"
    if pk.exists():
        return pk
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zkml-setup-", dir=cache_dir) as tmp:
        vk, new_pk = Path(tmp) / "vk.key", Path(tmp) / "pk.key"
        ezkl.setup(str(paths.compiled), str(vk), str(new_pk), str(paths.srs), None, False)
        if not filecmp.cmp(vk, paths.vk, shallow=False):
            raise RuntimeError("EZKL setup derived another verifying key than the committed circuits/zkml/vk.key")
        new_pk.replace(pk)
    return pk


def prove_vectors(paths: ZkmlPaths, pk: Path, vectors: list[list[float]]) -> list[dict[str, Any]]:
    """Run the model on each vector (EZKL's witness generation executes the ONNX graph) and prove it."""
    proofs = []
    with tempfile.TemporaryDirectory(prefix="aitbc-zkml-job-") as tmp:
        for index, vector in enumerate(vectors):
            input_path, proof_path = Path(tmp) / f"input{index}.json", Path(tmp) / f"proof{index}.json"
            write_input(input_path, tuple(vector))
            proofs.append(prove(paths, pk, input_path, proof_path))
    return proofs


def prove_job(root: str, cache_dir: str, vectors: list[list[float]]) -> list[dict[str, Any]]:
    """A zk-inference job's proofs, in a worker process: EZKL holds the GIL while it proves, which would
    stall the miner's event loop (its heartbeats keep the job's lease)."""
    paths = ZkmlPaths(Path(root))
    return prove_vectors(paths, ensure_proving_key(paths, Path(cache_dir)), vectors)


def verify_proof(paths: ZkmlPaths, proof: dict[str, Any]) -> bool:
    """EZKL verify of one proof (as JSON) against the committed settings, verifying key and SRS."""
    with tempfile.TemporaryDirectory(prefix="aitbc-zkml-verify-") as tmp:
        proof_path = Path(tmp) / "proof.json"
        proof_path.write_text(json.dumps(proof))
        return verify(paths, proof_path)


def is_zkml_available() -> bool:
    """Is the zkml extra (ezkl) installed? Miners advertise zk-inference only then."""
    try:
        import ezkl  # noqa: F401
    except ImportError:
        return False
    return True
