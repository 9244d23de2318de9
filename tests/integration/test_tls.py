"""HTTPS end to end: a real coordinator and a real node started with a certificate made in the test
(``--tls-cert/--tls-key``), reached with certificate verification on."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.certs import CertFiles, make_certs
from support.cli import run_cli
from support.ports import wait_for_announcement


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _start(args: list[str], announce: Path, env_prefix: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")}
    env[f"{env_prefix}_ANNOUNCE_FILE"] = str(announce)
    return subprocess.Popen(
        [sys.executable, "-m", "aitbc", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def https_services(certs: CertFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """Each service's announcement (``url``, ``port``; the node's ``ws_port``)."""
    base = tmp_path_factory.mktemp("tls")
    tls = ["--tls-cert", str(certs.cert_file), "--tls-key", str(certs.key_file)]
    assert run_cli("node", "init", "--data-dir", str(base / "node")).returncode == 0
    procs = {
        "coordinator": _start(
            ["coordinator", "run", "--data-dir", str(base / "coord"), "--port", "0", *tls],
            base / "coordinator.json",
            "AITBC_COORDINATOR",
        ),
        "node": _start(
            ["node", "run", "--data-dir", str(base / "node"), "--rpc-port", "0", "--ws-port", "0", *tls],
            base / "node.json",
            "AITBC_NODE",
        ),
    }
    try:
        yield {name: wait_for_announcement(base / f"{name}.json", proc) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            _stop(proc)


def _trusting(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


@pytest.mark.parametrize("service", ["coordinator", "node"])
def test_https_with_verification(
    service: str, https_services: dict[str, dict[str, Any]], certs: CertFiles, tmp_path: Path
) -> None:
    url = https_services[service]["url"]
    assert url.startswith("https://127.0.0.1:")  # the announcement says it serves HTTPS
    # a client that trusts the test CA verifies the certificate (host name 127.0.0.1 included) and gets 200
    with httpx.Client(verify=_trusting(certs.ca_file), timeout=10) as client:
        assert client.get(f"{url}/healthz").status_code == 200
    # one that does not trust it refuses the connection
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{url}/healthz", verify=ssl.create_default_context(), timeout=10)
    # a certificate from another CA does not pass either
    other = make_certs(tmp_path, ca_name="Another CA")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", verify=_trusting(other.ca_file), timeout=10)
    # plain HTTP on the HTTPS port gets no answer
    with pytest.raises(httpx.TransportError):
        httpx.get(url.replace("https://", "http://") + "/healthz", timeout=10)


def test_aitbc_clients_trust_a_private_ca_through_ssl_cert_file(
    https_services: dict[str, dict[str, Any]], certs: CertFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aitbc.client.node import NodeClient
    from aitbc.protocol.errors import RemoteError

    url = https_services["node"]["url"] + "/"
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(RemoteError, match="CERTIFICATE_VERIFY_FAILED") as exc:
        NodeClient(url).get_head()
    assert exc.value.reason == "unreachable"
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_file))
    assert NodeClient(url).get_head()["height"] >= 0


def test_node_websocket_serves_wss(https_services: dict[str, dict[str, Any]], certs: CertFiles) -> None:
    from websockets.sync.client import connect

    url = f"wss://127.0.0.1:{https_services['node']['ws_port']}/ws"
    with connect(url, ssl=_trusting(certs.ca_file), open_timeout=10) as ws:
        ws.ping().wait(10)
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(url, ssl=ssl.create_default_context(), open_timeout=10)


def test_refusals_are_clear_config_errors(tmp_path: Path, certs: CertFiles) -> None:
    only_cert = run_cli(
        "coordinator", "run", "--data-dir", str(tmp_path / "c"), "--port", "0", "--tls-cert", str(certs.cert_file)
    )
    assert only_cert.returncode == 1 and "tls_incomplete" in only_cert.stderr
    plain = run_cli("poolhub", "run", "--data-dir", str(tmp_path / "p"), "--port", "0", "--host", "0.0.0.0")
    assert plain.returncode == 1 and "plain_http_not_loopback" in plain.stderr and "--insecure-http" in plain.stderr
