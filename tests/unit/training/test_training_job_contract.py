"""The training job in the one job contract: shape rules, price bound, result acceptance, output hash."""

from __future__ import annotations

import msgspec
import pytest

from aitbc.market.acceptance import get_output_problem
from aitbc.market.deposits import compute_worst_case_price
from aitbc.market.matching import JobRequirements, compute_max_units
from aitbc.protocol.errors import InvalidInput
from aitbc.protocol.job import JobInput, JobOutput, check_job_input, compute_input_hash, compute_input_units
from aitbc.protocol.job_messages import JobRequest
from aitbc.protocol.training import TrainingCommitment, TrainingOutput, compute_commitment_hash, compute_spec_hash
from aitbc.protocol.zkml import compute_job_output_hash
from support.training_data import iris_csv, make_spec

SPEC = make_spec(iris_csv(), "csv", model="mlp", steps=12, batch_size=16, checkpoint_every=4)
DENSE = msgspec.structs.replace(SPEC, checkpoint_every=1, steps=999)


def _commitment(**fields: object) -> TrainingCommitment:
    base: dict[str, object] = {
        "spec_hash": compute_spec_hash(SPEC),
        "dataset_hash": SPEC.dataset_hash,
        "runtime_build": "aitbc-training/1 test",
        "steps": 12,
        "checkpoint_every": 4,
        "checkpoint_hashes": ["ab" * 32] * 4,
    }
    base.update(fields)
    return msgspec.convert(base, TrainingCommitment)


def _output(commitment: TrainingCommitment) -> JobOutput:
    return JobOutput(training=TrainingOutput(commitment=commitment, weights_blob="cd" * 32, losses_blob="ef" * 32))


def test_shape_rules() -> None:
    job = JobInput(type="training", model="mlp", training=SPEC)
    check_job_input(job)
    assert compute_input_units(job) == 12 * 16
    for bad, reason in [
        (JobInput(type="training", model="mlp"), "input.training"),
        (JobInput(type="training", model="mlp", training=SPEC, prompt="hi"), "nothing else"),
        (JobInput(type="training", model="cnn", training=SPEC), "spec's"),
        (JobInput(type="inference", model="mlp", prompt="hi", training=SPEC), "only for training"),
        (
            JobInput(
                type="training", model="mlp", training=msgspec.structs.replace(SPEC, checkpoint_every=1, steps=999)
            ),
            "checkpoints",
        ),
    ]:
        with pytest.raises(InvalidInput, match=reason):
            check_job_input(bad)


def test_request_carries_the_spec_into_the_hashed_input() -> None:
    body = {"type": "training", "model": "mlp", "input": {"training": msgspec.to_builtins(SPEC)}}
    request = msgspec.convert(body, JobRequest)
    job = request.to_job_input()
    assert job.training == SPEC
    other = msgspec.structs.replace(SPEC, seed=SPEC.seed + 1)
    assert compute_input_hash(job) != compute_input_hash(JobInput(type="training", model="mlp", training=other))


def test_price_is_per_sample_step() -> None:
    job = JobInput(type="training", model="mlp", training=SPEC)
    assert compute_max_units(JobRequirements("training", "mlp", compute_input_units(job), 128)) == 192
    assert compute_worst_case_price(job, [3, 5]) == 5 * 192


def test_result_acceptance_and_output_hash() -> None:
    good = _output(_commitment())
    assert get_output_problem("training", (), good, SPEC) is None
    assert compute_job_output_hash("training", good) == compute_commitment_hash(good.training.commitment)  # type: ignore[union-attr]
    for bad, reason in [
        (_output(_commitment(spec_hash="00" * 32)), "another training spec"),
        (_output(_commitment(dataset_hash="00" * 32)), "another dataset"),
        (_output(_commitment(steps=13)), "steps"),
        (_output(_commitment(checkpoint_hashes=["ab" * 32] * 3)), "one checkpoint per segment"),
        (JobOutput(text="weights"), "training output"),
    ]:
        problem = get_output_problem("training", (), bad, SPEC)
        assert problem is not None and reason in problem, problem
    assert get_output_problem("training", (), good, None) == "the job has no training spec"
    assert get_output_problem("inference", (), good) == "only a training result carries a training output"
    with pytest.raises(ValueError, match="commitment"):
        compute_job_output_hash("training", JobOutput(text="x"))
