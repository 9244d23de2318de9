"""EXPERIMENTAL zk-inference wire rules (pure): input vectors, EZKL field elements, the output hash."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitbc.protocol.errors import InvalidInput
from aitbc.protocol.job import JobInput, JobOutput, check_job_input, compute_model_kind, compute_output_hash
from aitbc.protocol.zk import FIELD_MODULUS
from aitbc.protocol.zkml import (
    ZKML_SCALE,
    compute_felt_of_float,
    compute_float_of_felt,
    compute_job_output_hash,
    compute_zk_inference_output_hash,
    get_zk_inference_problem,
    parse_zk_inference_proofs,
)
from aitbc.protocol.zkml_input import ZKML_MODEL, format_zk_vector, parse_zk_vector
from aitbc.zk.zkml import compute_zkml_output_hash, default_zkml_paths

SAMPLE = default_zkml_paths()


def _proof() -> dict[str, object]:
    proof: dict[str, object] = json.loads(SAMPLE.sample_proof.read_text())
    return proof


def test_settings_scale_is_the_protocol_constant() -> None:
    settings = json.loads(SAMPLE.settings.read_text())
    assert settings["model_input_scales"] == [ZKML_SCALE] and settings["model_output_scales"] == [ZKML_SCALE]


def test_zk_inference_input_rules() -> None:
    ok = JobInput(type="zk-inference", model=ZKML_MODEL, texts=["0.1,-0.2,0.3,0.4"])
    check_job_input(ok)
    for texts in (None, [], ["1,2,3"], ["a,b,c,d"], ["1,2,3,inf"], ["1,2,3,1e9"], ["1,2,3,4"] * 5):
        with pytest.raises(InvalidInput):
            check_job_input(JobInput(type="zk-inference", model=ZKML_MODEL, texts=texts))
    with pytest.raises(InvalidInput):
        check_job_input(JobInput(type="zk-inference", model=ZKML_MODEL, prompt="x", texts=["1,2,3,4"]))
    assert compute_model_kind("zk-inference") == "zk-inference" and compute_model_kind("inference") == "text"


@given(st.lists(st.floats(min_value=-1000, max_value=1000), min_size=4, max_size=4))
def test_vector_text_round_trips(values: list[float]) -> None:
    assert parse_zk_vector(format_zk_vector(values)) == values


@given(st.integers(min_value=-(2**40), max_value=2**40))
def test_felt_round_trip(units: int) -> None:
    value = units / 2**ZKML_SCALE
    felt = compute_felt_of_float(value, ZKML_SCALE)
    assert 0 <= felt < FIELD_MODULUS
    assert compute_float_of_felt(felt.to_bytes(32, "little").hex(), ZKML_SCALE) == value


def test_sample_proof_is_about_the_sample_input_and_hashes_its_outputs() -> None:
    proof = _proof()
    assert get_zk_inference_problem([proof], ["0.1,-0.2,0.3,0.4"], ZKML_SCALE) is None
    assert "another input" in str(get_zk_inference_problem([proof], ["0.1,-0.2,0.3,0.5"], ZKML_SCALE))
    assert "2 proofs" in str(get_zk_inference_problem([proof, proof], ["0.1,-0.2,0.3,0.4"], ZKML_SCALE))
    assert compute_zk_inference_output_hash([proof]) == compute_zkml_output_hash(proof)


def test_output_hash_is_bound_to_the_proven_outputs() -> None:
    proof = _proof()
    output = JobOutput(text=json.dumps({"proofs": [proof]}), dimensions=2, vectors_f32="00" * 8)
    assert compute_job_output_hash("zk-inference", output) == compute_zk_inference_output_hash([proof])
    assert compute_job_output_hash("embedding", output) == compute_output_hash(output)
    tampered = json.loads(json.dumps(proof))
    tampered["instances"][0][-1] = "01" + "00" * 31
    assert compute_zk_inference_output_hash([tampered]) != compute_zk_inference_output_hash([proof])
    for bad in (None, "not json", "{}", json.dumps({"proofs": []}), json.dumps({"proofs": [{"instances": [[]]}]})):
        with pytest.raises(ValueError):
            parse_zk_inference_proofs(bad)
