"""Transport limits every HTTP service enforces, on the stream, before any handler or authentication runs.

Two layers, both configured from the service's settings (``HttpServerSettings``):

* ``GuardedHttpProtocol`` (the connection, below ASGI): at most ``max_connections`` open connections (one
  more is answered 503 and closed at once); a connection with no request in progress is closed after
  ``idle_timeout_s``; a request whose line and headers have not all arrived ``header_timeout_s`` after its
  first byte, or that are larger than ``max_header_bytes``, is answered 408 / 431 and closed. uvicorn alone
  holds an idle or half-sent connection forever and lets headers grow without bound.
* ``BodyLimit`` (the outermost ASGI layer): reads the request body itself, chunked or not, refusing it with
  413 as soon as more than ``max_body_bytes`` have arrived (at once when ``Content-Length`` says so) and with
  408 if it has not all arrived ``body_timeout_s`` after the headers; only then does the application see the
  request, with the body replayed. So no handler, dependency or authentication check ever buffers more than
  the limit, whatever the framing.

A refused body is not read to its end: the server answers, half-closes its side (FIN) and discards what
the client still sends for ``linger_s`` before it closes. That way an honest client that sent a large
``Content-Length`` body still reads the 413 (closing at once would reset the connection and lose the
answer) while a hostile one costs no memory and is cut off after ``linger_s``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Final

import orjson
import uvicorn
from pydantic import Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from aitbc.runtime.settings import ServiceSettings

log = logging.getLogger("aitbc.runtime.limits")

MiB: Final = 1024 * 1024


class HttpServerSettings(ServiceSettings):
    """The transport limits of one HTTP service; each service's settings inherit them (``AITBC_<SVC>_…``)."""

    max_body_bytes: int = Field(1 * MiB, ge=1024)
    """Largest request body (413 past it), counted on the received stream, chunked or not."""
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    """Largest request line + headers (431 past it)."""
    max_connections: int = Field(1024, ge=1)
    """Open HTTP connections; one more is answered 503 and closed."""
    idle_timeout_s: float = Field(30.0, gt=0)
    """A connection with no request in progress (new, or kept alive after a response) is closed after this."""
    header_timeout_s: float = Field(10.0, gt=0)
    """A request's line and headers must all arrive within this of its first byte (else 408 and close)."""
    body_timeout_s: float = Field(30.0, gt=0)
    """A request's body must all arrive within this of its headers (else 408 and close)."""
    linger_s: float = Field(2.0, ge=0)
    """After refusing a body, how long the rest of it is read and discarded before the connection closes."""
    host: str = "127.0.0.1"
    """The interface to listen on; plain HTTP is allowed only on loopback (``aitbc.runtime.tls``)."""
    tls_cert_file: Path | None = None
    """Serve HTTPS with this certificate chain (PEM; with ``tls_key_file``)."""
    tls_key_file: Path | None = None
    """The private key (PEM) of ``tls_cert_file``."""
    allow_plain_http: bool = False
    """Serve plain HTTP on a non-loopback ``host`` (a private network behind a TLS proxy); refused otherwise."""
    announce_file: Path | None = None
    """Once listening, write ``{"service", "host", "port", "url", "pid"}`` here (``aitbc.runtime.server``):
    with port 0 the OS picks a free port, and this is how a supervisor or a test learns it."""


def _error_body(reason: str, message: str, extra: dict[str, Any], json_rpc: bool, openai: bool = False) -> bytes:
    if openai:  # an OpenAI-compatible route: OpenAI's error shape
        return orjson.dumps(
            {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": reason}}
        )
    if json_rpc:  # a JSON-RPC client expects its own error shape even from the transport
        code = -32600
        return orjson.dumps(
            {
                "jsonrpc": "2.0",
                "error": {"code": code, "message": message, "data": {"reason": reason, **extra}},
                "id": None,
            }
        )
    return orjson.dumps({"error": {"reason": reason, "message": message, **extra}})


class BodyLimit:
    """Outermost ASGI layer: the whole body, at most ``max_body_bytes``, within ``body_timeout_s``, or an error.

    ``rpc_paths`` are answered in JSON-RPC's error shape, paths under ``openai_prefix`` in OpenAI's;
    ``on_reject(reason)`` lets a service count refusals. A POST to one of ``streamed_paths`` passes unread:
    its handler streams the body and limits it itself (the coordinator's blob uploads).
    """

    def __init__(
        self,
        app: ASGIApp,
        limits: HttpServerSettings,
        rpc_paths: Collection[str] = (),
        on_reject: Callable[[str], None] | None = None,
        openai_prefix: str | None = None,
        streamed_paths: Collection[str] = (),
    ) -> None:
        self.app = app
        self.openai_prefix = openai_prefix
        self.streamed_paths = frozenset(streamed_paths)
        self.max_body_bytes = limits.max_body_bytes
        self.body_timeout_s = limits.body_timeout_s
        self.rpc_paths = frozenset(rpc_paths)
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        framed = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                framed = True
                declared = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                framed = True
        if not framed or declared == 0 or scope["path"] in self.streamed_paths:
            # HTTP/1.1: no Content-Length and no Transfer-Encoding means no body
            await self.app(scope, receive, send)
            return
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(scope, send, 413, "too_large", self._too_large_message())
            return
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away; nothing to answer
                    body += message.get("body", b"")
                    if len(body) > self.max_body_bytes:
                        del body
                        await self._refuse(scope, send, 413, "too_large", self._too_large_message())
                        return
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._refuse(
                scope,
                send,
                408,
                "body_timeout",
                f"request body not received within {self.body_timeout_s:g} s (body_timeout_s)",
            )
            return
        await self.app(scope, _replay(bytes(body), receive), send)

    def _too_large_message(self) -> str:
        return f"request body larger than {self.max_body_bytes} bytes (max_body_bytes)"

    async def _refuse(self, scope: Scope, send: Send, status: int, reason: str, message: str) -> None:
        if self.on_reject is not None:
            self.on_reject(reason)
        extra: dict[str, Any] = {"limit": "max_body_bytes", "max_bytes": self.max_body_bytes}
        if status == 408:
            extra = {"limit": "body_timeout_s", "seconds": self.body_timeout_s}
        path: str = scope["path"]
        openai = self.openai_prefix is not None and path.startswith(self.openai_prefix)
        payload = _error_body(reason, message, extra, path in self.rpc_paths, openai)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then defers to the real one (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class GuardedConfig(uvicorn.Config):
    """A uvicorn config that carries the limits to ``GuardedHttpProtocol``."""

    def __init__(self, app: ASGIApp, limits: HttpServerSettings, **kwargs: Any) -> None:
        kwargs.setdefault("timeout_keep_alive", max(1, round(limits.idle_timeout_s)))
        super().__init__(app, http=GuardedHttpProtocol, **kwargs)
        self.limits = limits


_STATUS_TEXT: Final = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a connection cap, idle / header timeouts, a header size cap and
    a lingering close after a refused body (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        limits = config.limits if isinstance(config, GuardedConfig) else HttpServerSettings()
        self.limits = limits
        self.timeout_keep_alive = limits.idle_timeout_s  # type: ignore[assignment]  # uvicorn types it int
        self._awaiting_headers = True
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._lingering = False

    # -- connection ------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._answer_and_close(503, f"more than {self.limits.max_connections} connections (max_connections)")
            return
        # uvicorn arms its keep-alive timer only after a first response; an idle new connection needs one too
        self.timeout_keep_alive_task = self.loop.call_later(self.limits.idle_timeout_s, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of a refused body: dropped unread
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._awaiting_headers and self._header_bytes > self.limits.max_header_bytes:
            self._answer_and_close(431, f"request headers larger than {self.limits.max_header_bytes} bytes")

    # -- parser callbacks ------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._header_timeout)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_headers = True

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.disconnected and not self.transport.is_closing():
            self._linger()  # answered (413, 408) before the body ended: never read the rest into a request
            return
        super().on_response_complete()

    # -- helpers ---------------------------------------------------------------------------------------
    def _linger(self) -> None:
        self.server_state.total_requests += 1
        self._lingering = True
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(self.limits.linger_s, self.transport.close)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self._awaiting_headers or self.transport.is_closing():
            return
        self._answer_and_close(408, f"request headers not received within {self.limits.header_timeout_s:g} s")

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _answer_and_close(self, status: int, message: str) -> None:
        self._cancel_header_timer()
        self._unset_keepalive_if_required()
        if self.transport.is_closing():
            return
        reason = {408: "header_timeout", 431: "headers_too_large", 503: "too_many_connections"}[status]
        payload = orjson.dumps({"error": {"reason": reason, "message": message}})
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, _STATUS_TEXT[status], len(payload), payload)
        )
        self.transport.close()
