"""WebSocket push on its own port: ``subscribe`` / ``unsubscribe`` to ``new_blocks`` and ``new_txs``.

Each client has a bounded queue; the block producer only ever does a
non-blocking put, so a slow or dead client is dropped (close code 1013)
instead of slowing anything down. Every pushed event carries a per-connection
``seq`` so a client can tell it missed nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from aitbc.node.metrics import NodeMetrics

log = logging.getLogger("aitbc.node.ws")

TOPICS: Final = frozenset({"new_blocks", "new_txs"})
QUEUE_LIMIT: Final = 1024
MAX_MESSAGE_BYTES: Final = 64 * 1024


class _Subscriber:
    __slots__ = ("conn", "dropped", "queue", "seq", "topics")

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn
        self.topics: set[str] = set()
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.seq = 0
        self.dropped = False


class EventHub:
    """Fans node events out to WebSocket subscribers."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics
        self._subscribers: set[_Subscriber] = set()

    def has_subscribers(self, topic: str) -> bool:
        return any(topic in sub.topics and not sub.dropped for sub in self._subscribers)

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        for sub in list(self._subscribers):
            if topic not in sub.topics or sub.dropped:
                continue
            sub.seq += 1
            message = orjson.dumps({"method": topic, "params": payload, "seq": sub.seq})
            try:
                sub.queue.put_nowait(message)
            except asyncio.QueueFull:
                sub.dropped = True
                self.metrics.ws_dropped.inc()
                log.warning("dropping slow websocket subscriber", extra={"remote": str(sub.conn.remote_address)})
                asyncio.get_running_loop().create_task(sub.conn.close(1013, "subscriber too slow; reconnect"))

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
                reply = self._on_message(sub, raw)
                if reply is not None:
                    sub.queue.put_nowait(reply) if not sub.queue.full() else None
        except ConnectionClosed:
            pass
        finally:
            self._subscribers.discard(sub)
            self.metrics.ws_subscribers.dec()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _pump(self, sub: _Subscriber) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await sub.conn.send(await sub.queue.get())

    def _on_message(self, sub: _Subscriber, raw: str | bytes) -> bytes | None:
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _ws_error(None, -32700, "parse error: messages must be JSON")
        if not isinstance(request, dict):
            return _ws_error(None, -32600, "invalid request: expected a JSON object")
        id_ = request.get("id")
        method = request.get("method")
        params = request.get("params", [])
        if method not in ("subscribe", "unsubscribe"):
            return _ws_error(id_, -32601, f"method not found: {method}; use subscribe or unsubscribe")
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return _ws_error(id_, -32602, "params must be a list of topic names")
        unknown = [p for p in params if p not in TOPICS]
        if unknown:
            return _ws_error(id_, -32602, f"unknown topics: {', '.join(unknown)}; known: {', '.join(sorted(TOPICS))}")
        if method == "subscribe":
            sub.topics.update(params)
        else:
            sub.topics.difference_update(params or list(sub.topics))
        return orjson.dumps({"id": id_, "result": {"subscribed": sorted(sub.topics)}})


def _ws_error(id_: Any, code: int, message: str) -> bytes:
    return orjson.dumps({"id": id_, "error": {"code": code, "message": message}})


async def start_ws_server(hub: EventHub, host: str, port: int) -> Server:
    return await serve(hub.handle, host, port, max_size=MAX_MESSAGE_BYTES, ping_interval=20, ping_timeout=20)
