"""HTTPS for every HTTP service, and the rule that plain HTTP is the default only on loopback.

A service serves HTTPS when its settings name a certificate and a key (``tls_cert_file``, ``tls_key_file``;
``AITBC_<SVC>_TLS_CERT_FILE`` / ``…_TLS_KEY_FILE``, or ``--tls-cert`` / ``--tls-key`` on its ``run`` command).
Without them it serves plain HTTP, which ``server_tls`` allows only on a loopback host (127.0.0.0/8, ::1,
localhost): binding any other address in the clear is refused with a ``ConfigError`` unless the operator opts
out explicitly (``allow_plain_http``, ``--insecure-http``): a service on a private network behind a TLS proxy.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from aitbc.protocol.errors import ConfigError
from aitbc.runtime.limits import HttpServerSettings


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; anything else (0.0.0.0, a LAN address, a name) is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A certificate chain (PEM) and its private key (PEM), both checked to load together."""

    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side context (TLS 1.2+) holding this certificate; what the node's WebSocket server uses
        (uvicorn builds its own from the same two files)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def server_tls(settings: HttpServerSettings) -> TlsFiles | None:
    """The certificate ``settings`` serve HTTPS with, or None for plain HTTP (loopback or opted out).

    ``ConfigError`` when only one of the two files is given, a file is missing, they do not load as a
    certificate and its key, or a non-loopback ``host`` would serve plain HTTP without ``allow_plain_http``."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if (cert is None) != (key is None):
        raise ConfigError(
            "TLS needs both a certificate and its key: give tls_cert_file and tls_key_file (--tls-cert and "
            "--tls-key) together",
            reason="tls_incomplete",
        )
    if cert is not None and key is not None:
        for what, path in (("certificate", cert), ("key", key)):
            if not path.is_file():
                raise ConfigError(f"TLS {what} file {path} does not exist", reason="tls_file_missing")
        files = TlsFiles(cert, key)
        try:
            files.server_context()
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"cannot load the TLS certificate {cert} with the key {key}: {exc}; both must be PEM and match",
                reason="tls_invalid",
            ) from None
        return files
    if not is_loopback_host(settings.host) and not settings.allow_plain_http:
        raise ConfigError(
            f"refusing to serve plain HTTP on {settings.host}: outside loopback give a certificate "
            "(--tls-cert/--tls-key, or *_TLS_CERT_FILE/*_TLS_KEY_FILE), or opt out with --insecure-http "
            "(allow_plain_http) when a TLS proxy fronts this service on a private network",
            reason="plain_http_not_loopback",
        )
    return None
