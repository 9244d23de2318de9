"""``LoopbackGuard``: an ASGI layer for services that only local programs may use (the wallet daemon).

Listening on 127.0.0.1 keeps other machines out, but not a web page in the user's browser: the page can
send requests to 127.0.0.1 (cross-origin, carrying an ``Origin`` header) or rebind its own DNS name to
127.0.0.1 and read the answers as same-origin (the ``Host`` header still names the page's domain). So
every request must name a loopback host (``127.0.0.1``, ``localhost``, ``::1``, any port) or one the
operator allowed, and a request carrying an ``Origin`` is refused unless that origin was allowed. Local
programs (the CLI, SDKs, curl) send a loopback ``Host`` and no ``Origin``, so they are unaffected.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})


def host_of(value: str) -> str:
    """The host part of a ``Host`` header value (no port; IPv6 without brackets), lower-cased."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


class LoopbackGuard:
    def __init__(
        self, app: ASGIApp, allowed_hosts: Collection[str] = (), allowed_origins: Collection[str] = ()
    ) -> None:
        self.app = app
        self.allowed_hosts = LOOPBACK_HOSTS | {host_of(h) for h in allowed_hosts}
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = origin = None
            for name, value in scope["headers"]:
                if name == b"host" and host is None:
                    host = value.decode("latin-1")
                elif name == b"origin" and origin is None:
                    origin = value.decode("latin-1")
            if host is None or host_of(host) not in self.allowed_hosts:
                await _refuse(send, "host_not_allowed", f"Host {host!r} is not a loopback or allowed host")
                return
            if origin is not None and origin.rstrip("/").lower() not in self.allowed_origins:
                await _refuse(send, "origin_not_allowed", f"cross-origin requests from {origin!r} are not allowed")
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, reason: str, message: str) -> None:
    payload = orjson.dumps({"error": {"reason": reason, "message": message}})
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
