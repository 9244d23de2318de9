"""WebSocket push on its own port: ``subscribe`` / ``unsubscribe`` to ``new_blocks``, ``new_txs``, ``job_updates``
(the chain's job events) and ``governance`` (proposal status changes and enacted parameters).

Each client has a bounded queue; the block producer only ever does a
non-blocking put, so a slow or dead client is dropped (close code 1013)
instead of slowing anything down. Every pushed event carries a per-connection
``seq`` so a client can tell it missed nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Final

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from aitbc.node.metrics import NodeMetrics

log = logging.getLogger("aitbc.node.ws")

TOPICS: Final = frozenset({"new_blocks", "new_txs", "job_updates", "governance"})
QUEUE_LIMIT: Final = 1024
MAX_MESSAGE_BYTES: Final = 64 * 1024


REPLAY_PAGE: Final = 1_000
HELD_LIMIT: Final = 50_000
"""Live job events kept for a subscriber while its resume is replayed (past this, it is dropped)."""

ReplayPage = Callable[[int, int, int], list[dict[str, Any]]]
"""``(from_height, after_seq, limit)`` → stored job events, oldest first."""


class _Subscriber:
    __slots__ = ("conn", "dropped", "held", "job_filter", "last_event_seq", "queue", "replaying", "seq", "topics")

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn
        self.topics: set[str] = set()
        self.job_filter: dict[str, str] = {}
        self.last_event_seq = 0
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.seq = 0
        self.dropped = False
        self.replaying = False
        self.held: list[dict[str, Any]] = []
        """Live job events that arrived during a replay, sent after it (see ``EventHub._replay``)."""


class EventHub:
    """Fans node events out to WebSocket subscribers."""

    def __init__(self, metrics: NodeMetrics, replay: ReplayPage | None = None) -> None:
        self.metrics = metrics
        self.replay = replay
        """Stored job events from a height on, page by page, for subscribers that resume (``from_height``)."""
        self._subscribers: set[_Subscriber] = set()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def has_subscribers(self, topic: str) -> bool:
        return any(topic in sub.topics and not sub.dropped for sub in self._subscribers)

    @staticmethod
    def _wants(sub: _Subscriber, topic: str, payload: dict[str, Any]) -> bool:
        if topic not in sub.topics or sub.dropped:
            return False
        if topic != "job_updates":
            return True
        if payload["event_seq"] <= sub.last_event_seq:  # already sent by a replay
            return False
        job_id = sub.job_filter.get("job_id")
        address = sub.job_filter.get("address")
        if job_id is not None and payload["job_id"] != job_id:
            return False
        return address is None or address in (payload["client"], payload["coordinator"], payload["miner"])

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        for sub in list(self._subscribers):
            if self._wants(sub, topic, payload):
                if sub.replaying and topic == "job_updates":
                    self._hold(sub, payload)
                else:
                    self._push(sub, topic, payload)

    def _hold(self, sub: _Subscriber, payload: dict[str, Any]) -> None:
        if len(sub.held) >= HELD_LIMIT:
            self._drop(sub)
            return
        sub.held.append(payload)

    async def _replay(self, sub: _Subscriber, from_height: int) -> None:
        """Send stored job events from ``from_height`` on, then the live ones that arrived meanwhile.

        Replayed pages wait for room in the subscriber's queue (a resume may be far longer than the
        queue); live events for this subscriber are held meanwhile and follow in order, so the
        stream stays ordered by ``event_seq`` with nothing lost and nothing twice.
        """
        assert self.replay is not None
        sub.replaying = True
        try:
            after = 0
            while not sub.dropped:
                page = self.replay(from_height, after, REPLAY_PAGE)
                for event in page:
                    if self._wants(sub, "job_updates", event):
                        await sub.queue.put(self._message(sub, "job_updates", event))
                    if sub.dropped:
                        return
                if len(page) < REPLAY_PAGE:
                    break
                after = page[-1]["event_seq"]
            held, sub.held = sub.held, []
            for event in held:
                if self._wants(sub, "job_updates", event):
                    self._push(sub, "job_updates", event)
        finally:
            sub.replaying = False

    async def handle(self, conn: ServerConnection) -> None:
        if conn.request is not None and conn.request.path.split("?")[0] != "/ws":
            await conn.close(1008, "unknown path; use /ws")
            return
        sub = _Subscriber(conn)
        self._subscribers.add(sub)
        self.metrics.ws_subscribers.inc()
        sender = asyncio.create_task(self._pump(sub))
        try:
            async for raw in conn:
                reply, resume_from = self._on_message(sub, raw)
                if reply is not None:
                    sub.queue.put_nowait(reply) if not sub.queue.full() else None
                if resume_from is not None:
                    await self._replay(sub, resume_from)
        except ConnectionClosed:
            pass
        finally:
            self._subscribers.discard(sub)
            self.metrics.ws_subscribers.dec()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _pump(self, sub: _Subscriber) -> None:
        try:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await sub.conn.send(await sub.queue.get())
        finally:
            # The connection is gone: free the queue so a replay waiting for room sees it and stops.
            sub.dropped = True
            while not sub.queue.empty():
                sub.queue.get_nowait()

    def _on_message(self, sub: _Subscriber, raw: str | bytes) -> tuple[bytes | None, int | None]:
        """The reply to one client message, and the height to replay job events from (if it asked)."""
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _ws_error(None, -32700, "parse error: messages must be JSON"), None
        if not isinstance(request, dict):
            return _ws_error(None, -32600, "invalid request: expected a JSON object"), None
        return self._on_request(sub, request)

    def _on_request(self, sub: _Subscriber, request: dict[str, Any]) -> tuple[bytes | None, int | None]:
        id_ = request.get("id")
        method = request.get("method")
        params = request.get("params", [])
        if method not in ("subscribe", "unsubscribe"):
            return _ws_error(id_, -32601, f"method not found: {method}; use subscribe or unsubscribe"), None
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return _ws_error(id_, -32602, "params must be a list of topic names"), None
        unknown = [p for p in params if p not in TOPICS]
        if unknown:
            known = ", ".join(sorted(TOPICS))
            return _ws_error(id_, -32602, f"unknown topics: {', '.join(unknown)}; known: {known}"), None
        job_filter = request.get("filter") or {}
        if not isinstance(job_filter, dict) or not set(job_filter) <= {"job_id", "address", "from_height"}:
            return _ws_error(id_, -32602, "filter must be an object with job_id, address and/or from_height"), None
        from_height = job_filter.get("from_height")
        if from_height is not None and (not isinstance(from_height, int) or from_height < 0):
            return _ws_error(id_, -32602, "filter.from_height must be a non-negative integer"), None
        if method == "unsubscribe":
            sub.topics.difference_update(params or list(sub.topics))
            return orjson.dumps({"id": id_, "result": {"subscribed": sorted(sub.topics)}}), None
        sub.topics.update(params)
        if "job_updates" in params:
            sub.job_filter = {k: str(v) for k, v in job_filter.items() if k in ("job_id", "address")}
        reply = orjson.dumps({"id": id_, "result": {"subscribed": sorted(sub.topics)}})
        resume = "job_updates" in params and from_height is not None and self.replay is not None
        return reply, from_height if resume else None

    def _message(self, sub: _Subscriber, topic: str, payload: dict[str, Any]) -> bytes:
        """Number the next message for ``sub`` (and note the last job event it was sent)."""
        if topic == "job_updates":
            sub.last_event_seq = payload["event_seq"]
        sub.seq += 1
        return orjson.dumps({"method": topic, "params": payload, "seq": sub.seq})

    def _push(self, sub: _Subscriber, topic: str, payload: dict[str, Any]) -> None:
        try:
            sub.queue.put_nowait(self._message(sub, topic, payload))
        except asyncio.QueueFull:
            self._drop(sub)

    def _drop(self, sub: _Subscriber) -> None:
        sub.dropped = True
        self.metrics.ws_dropped.inc()
        log.warning("dropping slow websocket subscriber", extra={"remote": str(sub.conn.remote_address)})
        asyncio.get_running_loop().create_task(sub.conn.close(1013, "subscriber too slow; reconnect"))


def _ws_error(id_: Any, code: int, message: str) -> bytes:
    return orjson.dumps({"id": id_, "error": {"code": code, "message": message}})


async def start_ws_server(
    hub: EventHub,
    host: str,
    port: int,
    sock: socket.socket | None = None,
    max_connections: int = 1024,
    open_timeout_s: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
) -> Server:
    """The WebSocket server, on ``sock`` when the caller bound it already (else on ``host:port``).

    A connection must finish its opening handshake within ``open_timeout_s`` (an idle or half-sent one is
    closed then); past ``max_connections`` subscribers a new one is answered 503 before the upgrade. With
    ``ssl_context`` it serves ``wss://`` (the node's certificate, ``aitbc.runtime.tls``)."""

    def process_request(conn: ServerConnection, _request: Request) -> Response | None:
        if hub.subscriber_count >= max_connections:
            hub.metrics.ws_refused.inc()
            return conn.respond(HTTPStatus.SERVICE_UNAVAILABLE, f"more than {max_connections} WebSocket clients\n")
        return None

    options: dict[str, Any] = {
        "max_size": MAX_MESSAGE_BYTES,
        "ping_interval": 20,
        "ping_timeout": 20,
        "open_timeout": open_timeout_s,
        "process_request": process_request,
    }
    if ssl_context is not None:
        options["ssl"] = ssl_context
    if sock is not None:
        return await serve(hub.handle, sock=sock, **options)
    return await serve(hub.handle, host, port, **options)
