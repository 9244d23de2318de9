"""schemathesis over every service's OpenAPI document, against the real processes: whatever a client sends
that the schema allows or not, the answer is never a 5xx and the service stays up.

Each operation gets ``EXAMPLES`` generated requests (``AITBC_OPENAPI_EXAMPLES`` raises it for a long run);
hypothesis draws unbounded integers and strings, so 30-digit numbers reach every integer parameter. Bodies
with ``NaN``/``Infinity`` (valid for Python's JSON reader, not for JSON) are sent to every JSON operation by
``test_nan_and_huge_numbers_in_every_json_body``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from e2e.hostile import PYTHON, Service, start_service

EXAMPLES = int(os.environ.get("AITBC_OPENAPI_EXAMPLES", "10"))


@pytest.fixture(scope="module")
def fuzz_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Service]]:
    root = tmp_path_factory.mktemp("openapi")
    running: dict[str, Service] = {}
    try:
        for name in ("node", "coordinator", "poolhub", "wallet"):
            running[name] = start_service(name, root)
        yield running
    finally:
        for service in running.values():
            service.stop()


def _auth(service: Service) -> dict[str, str]:
    """The credentials a real client of the service sends (so the fuzzing reaches past authentication)."""
    if service.name == "poolhub":
        return {"Authorization": "Bearer secret-token"}
    if service.name == "wallet":
        wallet_dir = Path(service.args[service.args.index("--wallet-dir") + 1])
        return {"Authorization": f"Bearer {(wallet_dir / 'daemon.token').read_text().strip()}"}
    if service.name == "coordinator":
        import subprocess

        data_dir = service.args[service.args.index("--data-dir") + 1]
        created = subprocess.run(
            [PYTHON, "-m", "aitbc", "coordinator", "keys", "create", "--data-dir", data_dir, "--name", "fuzz"],
            capture_output=True,
            text=True,
            env=service.env,
            check=True,
        )
        return {"X-Api-Key": created.stdout.strip().splitlines()[-1].strip()}
    return {}


_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


def _run(case: Any, service: Service, headers: dict[str, str]) -> None:
    response = case.call(base_url=service.url, headers=headers, timeout=30)
    case.validate_response(response, checks=[not_a_server_error])


@pytest.fixture(scope="module")
def credentials(fuzz_services: dict[str, Service]) -> dict[str, dict[str, str]]:
    return {name: _auth(service) for name, service in fuzz_services.items()}


@pytest.mark.parametrize("name", ["node", "coordinator", "poolhub", "wallet"])
def test_openapi_operations_never_answer_5xx(
    name: str, fuzz_services: dict[str, Service], credentials: dict[str, dict[str, str]]
) -> None:
    """Every operation of the service's OpenAPI document, ``EXAMPLES`` generated requests each."""
    service = fuzz_services[name]
    schema = schemathesis.openapi.from_url(service.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:

        @given(case=operation.as_strategy())
        @_SETTINGS
        def call(case: Any) -> None:
            _run(case, service, credentials[name])

        call()
    service.healthy()


POISON = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 30, b"-" + b"9" * 30]


@pytest.mark.parametrize("name", ["node", "coordinator", "poolhub", "wallet"])
def test_nan_and_huge_numbers_in_every_json_body(
    name: str, fuzz_services: dict[str, Service], credentials: dict[str, dict[str, str]]
) -> None:
    """Every POST route, every top-level field of its schema set to each poison value: never a 5xx."""
    service = fuzz_services[name]
    document = httpx.get(service.url + "/openapi.json").json()
    headers = {**credentials[name], "Content-Type": "application/json"}
    tried = 0
    for path, item in document["paths"].items():
        if "post" not in item or "{" in path:
            continue
        content = item["post"].get("requestBody", {}).get("content", {}).get("application/json", {})
        schema = content.get("schema", {})
        if "$ref" in schema:
            schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        fields = list(schema.get("properties", {})) or ["value"]
        for field in fields:
            for poison in POISON:
                body = b'{"' + field.encode() + b'": ' + poison + b"}"
                reply = httpx.post(service.url + path, content=body, headers=headers, timeout=30)
                assert reply.status_code < 500, (path, field, poison, reply.status_code, reply.text[:300])
                tried += 1
    assert tried > 0
    service.healthy()
