"""The job contract (``aitbc.protocol.job_messages``): one declaration per limit, shared by every side."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_type_hints

import msgspec
import pytest

from aitbc.coordinator.app import create_app
from aitbc.coordinator.config import CoordinatorSettings
from aitbc.protocol import job
from aitbc.protocol.errors import InvalidRequest
from aitbc.protocol.job_messages import (
    AssignedJob,
    JobAssignment,
    JobRequest,
    MinerRegistration,
    RequestParams,
    decode_message,
)


def meta_of(annotated: Any) -> msgspec.Meta:
    return next(a for a in get_args(annotated) if isinstance(a, msgspec.Meta))


def test_request_and_wire_params_share_the_very_same_limit_objects() -> None:
    request = get_type_hints(RequestParams, include_extras=True)
    wire = get_type_hints(job.Params, include_extras=True)
    for name in ("max_tokens", "stop"):
        assert request[name] is wire[name], name
    assert request["stop"] is job.StopList
    model = get_type_hints(JobRequest, include_extras=True)["model"]
    assert model is get_type_hints(job.JobInput, include_extras=True)["model"] is job.ModelName


def test_the_openapi_document_states_the_protocol_limits(tmp_path: Path) -> None:
    app = create_app(CoordinatorSettings(data_dir=tmp_path))
    document = app.openapi()
    schemas = document["components"]["schemas"]
    stop = schemas["RequestParams"]["properties"]["stop"]
    assert stop["maxItems"] == meta_of(job.StopList).max_length == job.MAX_STOPS
    assert stop["items"]["maxLength"] == meta_of(job.StopString).max_length == job.MAX_STOP_CHARS
    max_tokens = schemas["RequestParams"]["properties"]["max_tokens"]
    assert max_tokens["maximum"] == meta_of(job.MaxTokens).le == job.MAX_TOKENS_LIMIT
    assert schemas["JobRequest"]["properties"]["model"]["maxLength"] == meta_of(job.ModelName).max_length
    assert schemas["JobRequest"]["additionalProperties"] is False
    # each route's request body is that message's schema, and the claim answers with the assignment
    paths = document["paths"]
    body = paths["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/JobRequest"}
    register = paths["/api/v1/miners/register"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert register == {"$ref": "#/components/schemas/MinerRegistration"}
    claimed = paths["/api/v1/miners/claim"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert claimed == {"$ref": "#/components/schemas/JobAssignment"}
    assert "AssignedJob" in schemas and "JobCreate" not in schemas


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"type":"inference","model":"m","params":{"stop":["' + b"x" * 100 + b'"]}}', "params.stop[0]"),
        (b'{"type":"inference","model":"m","params":{"stop":["a","b","c","d","e","f","g","h","i"]}}', "params.stop"),
        (b'{"type":"inference","model":"m","params":{"max_tokens":4097}}', "params.max_tokens"),
        (b'{"type":"inference","model":"m","input":{"messages":[{"role":"god","content":"x"}]}}',
         "input.messages[0].role"),
        (b'{"type":"fine-tuning","model":"m"}', "type"),
        (b'{"type":"inference","model":"m","priority":1}', ""),
    ],
)  # fmt: skip
def test_a_violated_limit_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_message(JobRequest, body)
    assert caught.value.field == field
    assert caught.value.reason == "invalid_request"
    if field:
        assert caught.value.message.startswith(field + ": ")
        assert caught.value.to_dict()["details"][0]["loc"][:2] == ["body", field.split(".")[0].split("[")[0]]


def test_a_body_that_is_not_json_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        decode_message(JobRequest, b"{not json")


def test_a_request_becomes_the_exact_input_a_miner_runs() -> None:
    request = decode_message(
        JobRequest,
        b'{"type":"inference","model":"m","input":{"prompt":"hi"},"params":{"temperature":0.7,"stop":["."]}}',
    )
    job_input = request.to_job_input()
    assert job_input == job.JobInput(
        type="inference", model="m", prompt="hi", params=job.Params(temperature_milli=700, stop=["."])
    )
    # and a miner decodes its assignment, with that input, typed
    assignment = JobAssignment(
        job=AssignedJob(
            job_id="job_1",
            type="inference",
            model="m",
            model_digest="sha256:" + "0" * 64,
            input=job_input,
            input_hash=job.compute_input_hash(job_input),
            client="key1",
            max_price=None,
            unit_price=1,
            attempt=1,
            chain_id="aitbc-devnet",
            coordinator="ait1" + "q" * 58,
            assigned_at_ms=1,
        ),
        lease={"lease_id": "l1", "expires_at_ms": 2, "lease_seconds": 15.0},  # type: ignore[arg-type]
    )
    wire = msgspec.json.encode(msgspec.to_builtins(assignment))
    assert msgspec.json.decode(wire, type=JobAssignment).job.input == job_input


def test_a_registration_with_unknown_hardware_fields_keeps_the_known_ones() -> None:
    registration = decode_message(
        MinerRegistration,
        b'{"models":[{"name":"m","digest":"d","kind":"text","unit_price":1}],"backend":"echo",'
        b'"hardware":{"kind":"cpu","cpu_cores":2,"future_field":1}}',
    )
    assert registration.hardware.cpu_cores == 2
    with pytest.raises(InvalidRequest) as caught:
        decode_message(MinerRegistration, b'{"models":[],"backend":"echo","hardware":{"kind":"cpu"}}')
    assert caught.value.field == "models"
