"""``aitbc <service> run``: a flag overrides the environment only when it is given (flags > env > defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aitbc.cli.main import app


def invoke(*args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The settings each ``run`` command would start its service with (the service itself is not started)."""
    seen: dict[str, Any] = {}

    async def fake_serve_miner(settings: Any, key: Any, backend: Any, hardware: Any = None) -> None:
        seen["miner"] = settings

    monkeypatch.setattr("aitbc.coordinator.app.run_coordinator", lambda s: seen.__setitem__("coordinator", s))
    monkeypatch.setattr("aitbc.poolhub.app.run_poolhub", lambda s: seen.__setitem__("poolhub", s))
    monkeypatch.setattr("aitbc.node.app.run_node", lambda s: seen.__setitem__("node", s))
    monkeypatch.setattr("aitbc.miner.runner.serve_miner", fake_serve_miner)
    monkeypatch.setattr("aitbc.exchange.app.run_exchange", lambda s: seen.__setitem__("exchange", s))
    return seen


def test_the_environment_is_honoured_when_the_flag_is_absent(
    captured: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AITBC_COORDINATOR_LEASE_SECONDS", "99")
    monkeypatch.setenv("AITBC_COORDINATOR_PORT", "0")
    invoke("coordinator", "run", "--data-dir", str(tmp_path))
    assert captured["coordinator"].lease_seconds == 99
    assert captured["coordinator"].port == 0
    assert captured["coordinator"].max_attempts == 3, "neither flag nor env: the default"
    invoke("coordinator", "run", "--data-dir", str(tmp_path), "--lease-seconds", "5")
    assert captured["coordinator"].lease_seconds == 5, "a given flag wins over the environment"


def test_every_run_command_leaves_absent_flags_to_the_environment(
    captured: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AITBC_POOLHUB_MINER_TIMEOUT_SECONDS", "7")
    invoke("poolhub", "run", "--data-dir", str(tmp_path))
    assert captured["poolhub"].miner_timeout_seconds == 7
    monkeypatch.setenv("AITBC_NODE_TIMEOUT_VOTE_MS", "777")
    invoke("node", "run", "--data-dir", str(tmp_path))
    assert captured["node"].timeout_vote_ms == 777 and captured["node"].rpc_port == 9080
    monkeypatch.setenv("AITBC_MINER_BACKEND", "echo")
    monkeypatch.setenv("AITBC_MINER_MAX_CONCURRENCY", "3")
    monkeypatch.setenv("AITBC_MINER_DATA_DIR", str(tmp_path / "miner"))
    invoke("miner", "run")
    miner = captured["miner"]
    assert miner.backend == "echo" and miner.max_concurrency == 3 and miner.unit_price == 1
    assert (tmp_path / "miner" / "miner.key").exists()
    invoke("miner", "run", "--concurrency", "2", "--price", "4")  # --price is in AITBC: 4,000,000 base units
    assert captured["miner"].max_concurrency == 2 and captured["miner"].unit_price == 4_000_000


def test_exchange_run_takes_its_port_and_host_from_the_environment_unless_given(
    captured: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AITBC_EXCHANGE_PORT", "18014")
    monkeypatch.setenv("AITBC_EXCHANGE_LOG_LEVEL", "warning")
    invoke("exchange", "run", "--data-dir", str(tmp_path))
    exchange = captured["exchange"]
    assert (exchange.port, exchange.host, exchange.log_level.lower()) == (18014, "127.0.0.1", "warning")
    invoke("exchange", "run", "--data-dir", str(tmp_path), "--port", "0", "--host", "0.0.0.0", "--insecure-http")
    assert (captured["exchange"].port, captured["exchange"].host) == (0, "0.0.0.0"), "given flags win"
