"""The TLS settings of every HTTP service (``aitbc.runtime.tls``): plain HTTP only on loopback unless opted out,
a certificate needs its key, files must exist and load."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from aitbc.coordinator.config import CoordinatorSettings
from aitbc.protocol.errors import ConfigError
from aitbc.runtime.limits import HttpServerSettings
from aitbc.runtime.server import build_server
from aitbc.runtime.tls import is_loopback_host, server_tls
from support.certs import make_certs


async def _app(scope: object, receive: object, send: object) -> None:  # never called
    raise AssertionError


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_plain_http_is_allowed_on_loopback(host: str) -> None:
    assert is_loopback_host(host)
    assert server_tls(HttpServerSettings(host=host)) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.1", "example.com"])
def test_plain_http_off_loopback_is_refused_unless_opted_out(host: str) -> None:
    assert not is_loopback_host(host)
    with pytest.raises(ConfigError) as exc:
        server_tls(HttpServerSettings(host=host))
    assert exc.value.reason == "plain_http_not_loopback"
    assert "--insecure-http" in exc.value.message and "--tls-cert" in exc.value.message
    # every server goes through build_server, which refuses the same way
    with pytest.raises(ConfigError):
        build_server(_app, HttpServerSettings(host=host))
    assert server_tls(HttpServerSettings(host=host, allow_plain_http=True)) is None


def test_opt_out_and_certificate_come_from_the_service_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    certs = make_certs(tmp_path)
    monkeypatch.setenv("AITBC_COORDINATOR_HOST", "0.0.0.0")
    with pytest.raises(ConfigError):
        server_tls(CoordinatorSettings(data_dir=tmp_path))
    monkeypatch.setenv("AITBC_COORDINATOR_ALLOW_PLAIN_HTTP", "true")
    assert server_tls(CoordinatorSettings(data_dir=tmp_path)) is None
    monkeypatch.delenv("AITBC_COORDINATOR_ALLOW_PLAIN_HTTP")
    monkeypatch.setenv("AITBC_COORDINATOR_TLS_CERT_FILE", str(certs.cert_file))
    monkeypatch.setenv("AITBC_COORDINATOR_TLS_KEY_FILE", str(certs.key_file))
    files = server_tls(CoordinatorSettings(data_dir=tmp_path))
    assert files is not None and files.cert_file == certs.cert_file
    assert isinstance(files.server_context(), ssl.SSLContext)
    server = build_server(_app, CoordinatorSettings(data_dir=tmp_path))
    assert server.config.ssl_certfile == certs.cert_file and server.config.ssl_keyfile == certs.key_file


def test_incomplete_missing_or_broken_tls_files_are_config_errors(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    with pytest.raises(ConfigError) as exc:
        server_tls(HttpServerSettings(tls_cert_file=certs.cert_file))
    assert exc.value.reason == "tls_incomplete"
    with pytest.raises(ConfigError) as exc:
        server_tls(HttpServerSettings(tls_key_file=certs.key_file))
    assert exc.value.reason == "tls_incomplete"
    with pytest.raises(ConfigError) as exc:
        server_tls(HttpServerSettings(tls_cert_file=tmp_path / "nope.pem", tls_key_file=certs.key_file))
    assert exc.value.reason == "tls_file_missing" and "nope.pem" in exc.value.message
    other = make_certs(tmp_path / "other")
    with pytest.raises(ConfigError) as exc:  # a key that is not the certificate's
        server_tls(HttpServerSettings(tls_cert_file=certs.cert_file, tls_key_file=other.key_file))
    assert exc.value.reason == "tls_invalid"
    with pytest.raises(ConfigError) as exc:  # not PEM at all
        server_tls(HttpServerSettings(tls_cert_file=certs.key_file, tls_key_file=certs.key_file))
    assert exc.value.reason == "tls_invalid"
    # with a certificate, any host may serve (HTTPS)
    assert server_tls(HttpServerSettings(host="0.0.0.0", tls_cert_file=certs.cert_file, tls_key_file=certs.key_file))
