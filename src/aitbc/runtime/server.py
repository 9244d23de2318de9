"""The one way a service serves HTTP: bind, announce, wrap in the transport limits, run under uvicorn.

Node, coordinator, pool hub and wallet all go through ``serve`` (or, for a node that runs several
servers on one loop, ``build_server``):

1. ``bind_socket`` binds before anything is announced, so a busy port is one clear ``ConfigError``;
   port 0 lets the OS pick a free port.
2. ``announce`` logs where the service listens and, when the settings name an ``announce_file``, writes
   ``{"service", "host", "port", "url", "pid"}`` there (atomically) — how a supervisor or a test learns a
   port the OS picked.
3. ``build_server`` wraps the app in ``BodyLimit`` and runs it with ``GuardedConfig`` from the service's
   settings (``HttpServerSettings``): every transport limit is configured here, from that one object.
4. ``aitbc.runtime.tls``: with ``tls_cert_file`` + ``tls_key_file`` set, uvicorn serves HTTPS (and the
   announcement says ``https://``); without them plain HTTP is allowed only on loopback (``ConfigError``
   otherwise, unless ``allow_plain_http``).
5. ``GracefulServer`` stops cleanly on SIGINT/SIGTERM and exits 0; ``on_stop`` runs first, so a service
   can end its long polls before uvicorn waits for open requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import orjson
import uvicorn
import uvloop
from starlette.types import ASGIApp

from aitbc.protocol.errors import ConfigError
from aitbc.runtime.files import atomic_write
from aitbc.runtime.limits import BodyLimit, GuardedConfig, HttpServerSettings
from aitbc.runtime.tls import server_tls

log = logging.getLogger("aitbc.runtime.server")

GRACEFUL_SHUTDOWN_S = 2
"""How long a stop waits for open requests (long polls are ended by ``on_stop`` before that)."""


class GracefulServer(uvicorn.Server):
    """uvicorn that stops cleanly on SIGINT/SIGTERM and then exits 0 (it does not re-raise the signal).

    ``on_stop`` runs on the event loop as soon as a stop is asked for, before uvicorn waits for open
    requests: a service ends its long polls there, so the graceful wait is short and nothing is cancelled.
    With ``own_signals=False`` the server leaves signals to its caller (a node stops all its servers together).
    """

    def __init__(
        self, config: uvicorn.Config, on_stop: Callable[[], None] | None = None, own_signals: bool = True
    ) -> None:
        super().__init__(config)
        self._on_stop = on_stop
        self._own_signals = own_signals

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._on_stop is not None and not self.should_exit:
            self._on_stop()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self._own_signals:
            yield
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def bind_socket(host: str, port: int, what: str) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port), or a ``ConfigError`` that says which."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family, reuse_port=False)
    except OSError as exc:
        raise ConfigError(f"cannot listen for {what} on {host}:{port}: {exc.strerror}; pick another port") from None


def url_of(sock: socket.socket, scheme: str = "http") -> str:
    host, port = sock.getsockname()[:2]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def scheme_of(settings: HttpServerSettings) -> str:
    """``https`` when ``settings`` name a certificate, else ``http``."""
    return "http" if settings.tls_cert_file is None else "https"


def announce(
    service: str, sock: socket.socket, announce_file: Path | None, *, scheme: str = "http", **extra: Any
) -> str:
    """Say where ``service`` listens (log, and ``announce_file`` when set); returns its URL."""
    host, port = sock.getsockname()[:2]
    url = url_of(sock, scheme)
    record = {"service": service, "host": host, "port": port, "url": url, "pid": os.getpid(), **extra}
    if announce_file is not None:
        announce_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(announce_file, orjson.dumps(record) + b"\n", mode=0o600)
    log.info("listening", extra=record)
    return url


def read_announcement(path: Path) -> dict[str, Any] | None:
    """What ``announce`` wrote, or None while nothing (complete) is there yet."""
    try:
        value: dict[str, Any] = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    return value


def build_server(
    app: ASGIApp,
    settings: HttpServerSettings,
    *,
    rpc_paths: Collection[str] = (),
    openai_prefix: str | None = None,
    on_reject: Callable[[str], None] | None = None,
    on_stop: Callable[[], None] | None = None,
    lifespan: Literal["auto", "on", "off"] = "auto",
    own_signals: bool = True,
    wrap: Callable[[ASGIApp], ASGIApp] | None = None,
    ws_max_size: int = 16 * 1024 * 1024,
    streamed_paths: Collection[str] = (),
) -> GracefulServer:
    """``app`` behind every transport limit of ``settings`` (``aitbc.runtime.limits``), ready to ``serve``.

    ``wrap`` adds a layer outside the body limit (the wallet's loopback guard refuses foreign hosts and
    origins before a byte of the body is read). ``ConfigError`` when the TLS settings are incomplete or do not
    load, or when plain HTTP would be served outside loopback (``aitbc.runtime.tls.server_tls``)."""
    tls = server_tls(settings)
    # the body limit wraps everything: no handler, fast path or key check reads past it
    guarded: ASGIApp = BodyLimit(
        app,
        settings,
        rpc_paths=rpc_paths,
        on_reject=on_reject,
        openai_prefix=openai_prefix,
        streamed_paths=streamed_paths,
    )
    config = GuardedConfig(
        guarded if wrap is None else wrap(guarded),
        settings,
        log_level="warning",
        access_log=False,
        lifespan=lifespan,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        ws_max_size=ws_max_size,
        ssl_certfile=None if tls is None else tls.cert_file,
        ssl_keyfile=None if tls is None else tls.key_file,
    )
    return GracefulServer(config, on_stop, own_signals)


FULL_COLLECTION_EVERY = 100
"""Young-generation (gen 1) collections between two looks at a full one; CPython's default is 10.

A service under load keeps a churning set of objects for a minute or so (the coordinator's live job
events: ~90k objects at 600 jobs/s), and CPython walked all of them every ~1.2 s: a 25-45 ms pause with
every thread stopped, the largest spike in ``POST /api/v1/jobs`` latency (``bench/settlement.py``, open
loop at 600/s: coordinator-side p99 21 -> 19 ms, max 77 -> 29 ms). Only garbage in reference cycles
waits for a full collection (everything else is freed at once), so this delays little memory."""


def quiet_full_collections() -> None:
    """Freeze what the loaded app holds for good and make full garbage collections rare.

    The objects of the loaded app (FastAPI, pydantic, SQLAlchemy, …) live as long as the process: freezing
    them keeps every full collection from walking them again (a ~75 ms pause on 2 cores).
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


def serve(
    service: str,
    app: ASGIApp,
    settings: HttpServerSettings,
    sock: socket.socket,
    *,
    rpc_paths: Collection[str] = (),
    openai_prefix: str | None = None,
    on_reject: Callable[[str], None] | None = None,
    on_stop: Callable[[], None] | None = None,
    ws_max_size: int = 16 * 1024 * 1024,
    streamed_paths: Collection[str] = (),
) -> None:
    """Serve ``app`` on the bound ``sock`` until SIGINT/SIGTERM (announced first); ``openai_prefix``: paths
    whose transport errors (413, 408) take OpenAI's error shape; ``ws_max_size``: largest WebSocket message;
    ``streamed_paths``: POST paths whose handler reads and limits the body itself (``BodyLimit``)."""
    server = build_server(
        app,
        settings,
        rpc_paths=rpc_paths,
        openai_prefix=openai_prefix,
        on_reject=on_reject,
        on_stop=on_stop,
        ws_max_size=ws_max_size,
        streamed_paths=streamed_paths,
    )
    announce(service, sock, settings.announce_file, scheme=scheme_of(settings))
    quiet_full_collections()
    uvloop.run(server.serve(sockets=[sock]))
