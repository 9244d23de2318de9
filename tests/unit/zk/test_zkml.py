"""EXPERIMENTAL zkML (EZKL): the committed sample proof verifies, a tampered output does not, and the
receipt-side output hash is bound to the proved outputs. Proving (≈ 30 s here) is in bench/zk.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ezkl = pytest.importorskip("ezkl", reason="the zkml extra (ezkl, onnx) is not installed")

from aitbc.zk import zkml  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def paths() -> zkml.ZkmlPaths:
    return zkml.default_zkml_paths()


def test_committed_sample_proof_verifies(paths: zkml.ZkmlPaths) -> None:
    assert zkml.verify(paths, paths.sample_proof)


def test_proof_is_about_the_committed_input_and_a_plausible_output(paths: zkml.ZkmlPaths) -> None:
    proof = json.loads(paths.sample_proof.read_text())
    scale = json.loads(paths.settings.read_text())["model_input_scales"][0]
    inputs = [ezkl.felt_to_float(f, scale) for f in zkml.get_public_inputs(proof)]
    assert inputs == pytest.approx(list(zkml.SAMPLE_INPUT), abs=1e-3)
    assert len(zkml.decode_outputs(paths, proof)) == zkml.OUTPUTS


def test_tampered_output_fails_and_changes_the_output_hash(paths: zkml.ZkmlPaths, tmp_path: Path) -> None:
    proof = json.loads(paths.sample_proof.read_text())
    original_hash = zkml.compute_zkml_output_hash(proof)
    last = proof["instances"][0][-1]
    proof["instances"][0][-1] = ("01" if last[:2] != "01" else "02") + last[2:]
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(proof))
    assert not zkml.verify(paths, tampered)
    assert zkml.compute_zkml_output_hash(proof) != original_hash


def test_sample_model_is_rebuilt_byte_for_byte(paths: zkml.ZkmlPaths, tmp_path: Path) -> None:
    """The committed ONNX file is the documented model (seeded weights), not an arbitrary one."""
    rebuilt = tmp_path / "mlp.onnx"
    zkml.build_sample_model(rebuilt)
    assert rebuilt.read_bytes() == paths.model.read_bytes()
