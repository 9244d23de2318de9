"""Settings-driven CORS on the node, coordinator and pool hub: the listed origin is allowed (preflight and
answers, including the coordinator's fast-path routes), any other origin gets no CORS header."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aitbc.coordinator.app import create_app as create_coordinator
from aitbc.coordinator.config import CoordinatorSettings
from aitbc.node.http import create_http_app
from aitbc.node.service import NodeService
from aitbc.poolhub.app import create_app as create_poolhub
from aitbc.poolhub.config import PoolHubSettings

WEB = "http://127.0.0.1:8015"
EVIL = "http://evil.example"


def preflight(client: TestClient, path: str, origin: str) -> dict[str, str]:
    response = client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key,content-type",
        },
    )
    return dict(response.headers)


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[TestClient]:
    app = create_coordinator(CoordinatorSettings(data_dir=tmp_path, cors_origins=[WEB]))
    with TestClient(app) as client:
        yield client


def test_coordinator_allows_the_web_origin_only(coordinator: TestClient) -> None:
    allowed = preflight(coordinator, "/api/v1/jobs", WEB)
    assert allowed["access-control-allow-origin"] == WEB
    assert "X-Api-Key" in allowed["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in allowed
    assert "access-control-allow-origin" not in preflight(coordinator, "/api/v1/jobs", EVIL)
    models = coordinator.get("/api/v1/models", headers={"Origin": WEB})
    assert models.status_code == 200
    assert models.headers["access-control-allow-origin"] == WEB
    assert "access-control-allow-origin" not in coordinator.get("/api/v1/models", headers={"Origin": EVIL}).headers


def test_coordinator_fast_path_routes_answer_browsers_with_cors(coordinator: TestClient) -> None:
    # GET /api/v1/jobs/{id} is a fast-path route: from a browser (Origin) it takes the full stack.
    answer = coordinator.get("/api/v1/jobs/job_x", headers={"Origin": WEB, "X-Api-Key": "bad"})
    assert answer.status_code == 401
    assert answer.headers["access-control-allow-origin"] == WEB
    assert answer.json()["error"]["reason"]
    program = coordinator.get("/api/v1/jobs/job_x", headers={"X-Api-Key": "bad"})
    assert program.status_code == 401
    assert "access-control-allow-origin" not in program.headers


def test_no_origins_configured_means_no_cors(tmp_path: Path) -> None:
    with TestClient(create_coordinator(CoordinatorSettings(data_dir=tmp_path))) as client:
        assert "access-control-allow-origin" not in preflight(client, "/api/v1/jobs", WEB)


def test_node_and_poolhub_allow_the_web_origin(tmp_path: Path) -> None:
    node = create_http_app(cast(NodeService, None), cors_origins=[WEB])
    hub = create_poolhub(PoolHubSettings(data_dir=tmp_path, cors_origins=[WEB]))
    apps: list[FastAPI] = [node, hub]
    for app in apps:
        with TestClient(app) as client:
            ok = client.get("/openapi.json", headers={"Origin": WEB})
            assert ok.headers["access-control-allow-origin"] == WEB
            assert "access-control-allow-origin" not in client.get("/openapi.json", headers={"Origin": EVIL}).headers


def test_origins_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AITBC_COORDINATOR_CORS_ORIGINS", f'["{WEB}"]')
    assert CoordinatorSettings(data_dir=tmp_path).cors_origins == [WEB]
