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
from collections.abc import Callable
from typing import Any, Final

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from aitbc.node.metrics import NodeMetrics

log = logging.getLogger("aitbc.node.ws")

TOPICS: Final = frozenset({"new_blocks", "new_txs", "job_updates"})
QUEUE_LIMIT: Final = 1024
MAX_MESSAGE_BYTES: Final = 64 * 1024


class _Subscriber:
    __slots__ = ("conn", "dropped", "job_filter", "last_event_seq", "queue", "seq", "topics")

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn
        self.topics: set[str] = set()
        self.job_filter: dict[str, str] = {}
        self.last_event_seq = 0
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.seq = 0
        self.dropped = False


class EventHub:
    """Fans node events out to WebSocket subscribers."""

    def __init__(self, metrics: NodeMetrics, replay: Callable[[int], list[dict[str, Any]]] | None = None) -> None:
        self.metrics = metrics
        self.replay = replay
        """Stored job events from a height on, for subscribers that resume (``from_height``)."""
        self._subscribers: set[_Subscriber] = set()

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
                self._push(sub, topic, payload)

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
        job_filter = request.get("filter") or {}
        if not isinstance(job_filter, dict) or not set(job_filter) <= {"job_id", "address", "from_height"}:
            return _ws_error(id_, -32602, "filter must be an object with job_id, address and/or from_height")
        from_height = job_filter.get("from_height")
        if from_height is not None and (not isinstance(from_height, int) or from_height < 0):
            return _ws_error(id_, -32602, "filter.from_height must be a non-negative integer")
        if method == "unsubscribe":
            sub.topics.difference_update(params or list(sub.topics))
            return orjson.dumps({"id": id_, "result": {"subscribed": sorted(sub.topics)}})
        sub.topics.update(params)
        if "job_updates" in params:
            sub.job_filter = {k: str(v) for k, v in job_filter.items() if k in ("job_id", "address")}
        reply = orjson.dumps({"id": id_, "result": {"subscribed": sorted(sub.topics)}})
        if "job_updates" in params and from_height is not None and self.replay is not None:
            sub.queue.put_nowait(reply)
            for event in self.replay(from_height):
                if self._wants(sub, "job_updates", event):
                    self._push(sub, "job_updates", event)
            return None
        return reply

    def _push(self, sub: _Subscriber, topic: str, payload: dict[str, Any]) -> None:
        if topic == "job_updates":
            sub.last_event_seq = payload["event_seq"]
        sub.seq += 1
        message = orjson.dumps({"method": topic, "params": payload, "seq": sub.seq})
        try:
            sub.queue.put_nowait(message)
        except asyncio.QueueFull:
            self._drop(sub)

    def _drop(self, sub: _Subscriber) -> None:
        sub.dropped = True
        self.metrics.ws_dropped.inc()
        log.warning("dropping slow websocket subscriber", extra={"remote": str(sub.conn.remote_address)})
        asyncio.get_running_loop().create_task(sub.conn.close(1013, "subscriber too slow; reconnect"))


def _ws_error(id_: Any, code: int, message: str) -> bytes:
    return orjson.dumps({"id": id_, "error": {"code": code, "message": message}})


async def start_ws_server(hub: EventHub, host: str, port: int) -> Server:
    return await serve(hub.handle, host, port, max_size=MAX_MESSAGE_BYTES, ping_interval=20, ping_timeout=20)
