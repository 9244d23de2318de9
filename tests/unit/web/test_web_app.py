"""``aitbc web serve``: the built app with its config and security headers, and a clear error when the
app is not built; ``aitbc web openapi`` writes every service's document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aitbc.cli.main import app as cli
from aitbc.web.app import NotBuilt, create_app
from aitbc.web.config import WebSettings
from aitbc.web.openapi import SERVICES, write_openapi


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>AITBC</title>")
    (root / "assets" / "index-abc123.js").write_text("console.log(1)")
    return root


def settings(dist: Path) -> WebSettings:
    return WebSettings(
        dist_dir=dist,
        coordinator_url="http://127.0.0.1:8011",
        node_url="http://127.0.0.1:9080/",
        ws_url="ws://127.0.0.1:9081/ws",
        chain_id="aitbc-devnet",
    )


def test_serves_the_app_its_config_and_headers(dist: Path) -> None:
    client = TestClient(create_app(settings(dist)))
    index = client.get("/")
    assert index.status_code == 200
    assert "<title>AITBC</title>" in index.text
    assert index.headers["cache-control"] == "no-cache"
    csp = index.headers["content-security-policy"]
    assert "connect-src 'self' http://127.0.0.1:8011 http://127.0.0.1:9080 ws://127.0.0.1:9081;" in csp
    assert "script-src 'self';" in csp
    assert index.headers["x-content-type-options"] == "nosniff"
    asset = client.get("/assets/index-abc123.js")
    assert asset.status_code == 200
    assert "immutable" in asset.headers["cache-control"]
    config = client.get("/config.json").json()
    assert config == {
        "coordinator_url": "http://127.0.0.1:8011",
        "node_url": "http://127.0.0.1:9080/",
        "ws_url": "ws://127.0.0.1:9081/ws",
        "poolhub_url": None,
        "exchange_url": None,
        "chain_id": "aitbc-devnet",
    }
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/missing.js").status_code == 404


def test_csp_allows_the_exchange_feed(dist: Path) -> None:
    web = WebSettings(dist_dir=dist, exchange_url="https://exchange.example:8014")
    csp = TestClient(create_app(web)).get("/").headers["content-security-policy"]
    assert "connect-src 'self' https://exchange.example:8014 wss://exchange.example:8014;" in csp


def test_refuses_to_start_when_not_built(tmp_path: Path) -> None:
    with pytest.raises(NotBuilt, match="make web"):
        create_app(settings(tmp_path / "nothing"))


def test_cli_says_how_to_build(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["web", "serve", "--dist", str(tmp_path / "nothing"), "--port", "0"])
    assert result.exit_code != 0
    assert "not built" in result.output
    assert "make web" in result.output


def test_writes_every_service_openapi(tmp_path: Path) -> None:
    written = write_openapi(tmp_path)
    assert sorted(p.stem for p in written) == sorted(SERVICES)
    coordinator = json.loads((tmp_path / "coordinator.json").read_text())
    assert "/api/v1/jobs" in coordinator["paths"]
    assert "/v1/blocks/{ref}" in json.loads((tmp_path / "node.json").read_text())["paths"]
