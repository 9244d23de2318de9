"""``/api/v1/ws``: the node's ``subscribe`` protocol for ``job_updates``, on the coordinator.

The node's ``job_updates`` carry what the chain sees of a job (escrow, settlement); the coordinator's
carry its whole life as the coordinator sees it: status changes, tokens as the miner reports them, the
receipt, and each change of its payment (reserved, batching, settling, settled, refunded …). A client
uses one subscription protocol for both:

    → {"id": 1, "method": "subscribe", "params": ["job_updates"], "filter": {"job_id": J, "after_seq": N}}
    ← {"id": 1, "result": {"subscribed": ["job_updates"], "last_event_seq": E}}
    ← {"method": "job_updates", "params": {"event_seq", "job_id", "job_seq", "event", "data"}, "seq": n}

``seq`` counts the messages of this connection (1, 2, …: a gap is visible), ``job_seq`` a job's events
(1, 2, …) and ``event_seq`` all of the coordinator's events (``aitbc.coordinator.events``). Without
``job_id`` the subscription follows every job of the calling API key; with it, that one job (404 error
if it is not the key's). ``after_seq`` resumes after a reconnect: the events after that ``event_seq``
that the coordinator still holds are sent first, then the live ones, with nothing lost and nothing
twice (the replay and the switch to live events happen in one step of the event loop). A resume point
older than what is kept is refused (``-32005``) rather than answered with a silent gap.

Auth: ``X-Api-Key`` or ``Authorization: Bearer`` on the upgrade request (or ``?api_key=`` for
browsers, which cannot set headers on a WebSocket). A subscriber that does not keep up is closed with
1013, as on the node; each key may hold ``ws_max_connections_per_key`` connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any, Final

import orjson
from fastapi import WebSocket, WebSocketDisconnect

from aitbc.coordinator.auth import ApiKey
from aitbc.coordinator.events import JobEvent
from aitbc.coordinator.services import CoordinatorService
from aitbc.protocol.errors import AitbcError, NotFound

log = logging.getLogger("aitbc.coordinator.ws")

TOPIC: Final = "job_updates"
QUEUE_LIMIT: Final = 8192
MAX_MESSAGE_BYTES: Final = 64 * 1024
RESUME_LOST: Final = -32005


class _Subscriber:
    __slots__ = ("client", "dropped", "job_id", "last_event_seq", "queue", "seq", "socket", "subscribed")

    def __init__(self, socket: WebSocket, client: ApiKey) -> None:
        self.socket = socket
        self.client = client
        self.subscribed = False
        self.job_id: str | None = None
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.seq = 0
        self.last_event_seq = 0
        self.dropped = False

    def wants(self, event: JobEvent) -> bool:
        if not self.subscribed or self.dropped or event.event_seq <= self.last_event_seq:
            return False
        if self.job_id is not None:
            return event.job_id == self.job_id
        return event.owner == self.client.id


def job_update(event: JobEvent) -> dict[str, Any]:
    return {
        "event_seq": event.event_seq,
        "job_id": event.job_id,
        "job_seq": event.seq,
        "event": event.event,
        "data": event.data,
    }


class JobUpdatesHub:
    def __init__(self, service: CoordinatorService, max_per_key: int) -> None:
        self.service = service
        self.max_per_key = max_per_key
        self._subscribers: set[_Subscriber] = set()
        self._per_key: dict[str, int] = {}
        service.events.listeners.add(self._on_event)

    def _on_event(self, event: JobEvent) -> None:
        for sub in self._subscribers:
            if sub.wants(event):
                self._push(sub, event)

    def _push(self, sub: _Subscriber, event: JobEvent) -> None:
        sub.last_event_seq = event.event_seq
        sub.seq += 1
        message = orjson.dumps({"method": TOPIC, "params": job_update(event), "seq": sub.seq})
        try:
            sub.queue.put_nowait(message)
        except asyncio.QueueFull:
            sub.dropped = True
            log.warning("dropping slow job_updates subscriber", extra={"key": sub.client.id})
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.get_nowait()
                sub.queue.put_nowait(None)  # the sender closes with 1013

    @staticmethod
    def _token(socket: WebSocket) -> str | None:
        token = socket.headers.get("x-api-key")
        scheme, _, value = (socket.headers.get("authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
        return token or socket.query_params.get("api_key")

    async def handle(self, socket: WebSocket) -> None:
        # Accepted before the checks, so a refused client reads why in the close frame (a refusal before
        # the handshake would only be an HTTP 403 with no reason).
        await socket.accept()
        try:
            client = await self.service.authenticate_client_async(self._token(socket))
        except AitbcError as exc:
            await socket.close(code=1008, reason=exc.message[:120])
            return
        if self._per_key.get(client.id, 0) >= self.max_per_key:
            await socket.close(code=1013, reason=f"at most {self.max_per_key} connections per API key")
            return
        sub = _Subscriber(socket, client)
        self._subscribers.add(sub)
        self._per_key[client.id] = self._per_key.get(client.id, 0) + 1
        sender = asyncio.create_task(self._pump(sub))
        try:
            while not sender.done():
                raw = await socket.receive_text()
                if len(raw) > MAX_MESSAGE_BYTES:
                    await socket.close(code=1009, reason=f"messages are at most {MAX_MESSAGE_BYTES} bytes")
                    break
                reply = await self._on_message(sub, raw)
                if reply is not None:
                    with contextlib.suppress(asyncio.QueueFull):
                        sub.queue.put_nowait(reply)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self._subscribers.discard(sub)
            left = self._per_key.get(client.id, 1) - 1
            if left > 0:
                self._per_key[client.id] = left
            else:
                self._per_key.pop(client.id, None)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _pump(self, sub: _Subscriber) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                message = await sub.queue.get()
                if message is None:
                    await sub.socket.close(code=1013, reason="subscriber too slow; reconnect with after_seq")
                    return
                await sub.socket.send_text(message.decode())

    async def _on_message(self, sub: _Subscriber, raw: str) -> bytes | None:
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _error(None, -32700, "parse error: messages must be JSON")
        if not isinstance(request, dict):
            return _error(None, -32600, "invalid request: expected a JSON object")
        id_ = request.get("id")
        method = request.get("method")
        params = request.get("params", [])
        if method not in ("subscribe", "unsubscribe"):
            return _error(id_, -32601, f"method not found: {method}; use subscribe or unsubscribe")
        if not isinstance(params, list) or any(p != TOPIC for p in params):
            return _error(id_, -32602, f"params must be a list of topic names; the coordinator's topic is {TOPIC}")
        if method == "unsubscribe":
            sub.subscribed = False
            return orjson.dumps({"id": id_, "result": {"subscribed": []}})
        job_filter = request.get("filter") or {}
        if not isinstance(job_filter, dict) or not set(job_filter) <= {"job_id", "after_seq"}:
            return _error(id_, -32602, "filter must be an object with job_id and/or after_seq")
        job_id = job_filter.get("job_id")
        after = job_filter.get("after_seq")
        if job_id is not None and not isinstance(job_id, str):
            return _error(id_, -32602, "filter.job_id must be a string")
        if after is not None and (not isinstance(after, int) or isinstance(after, bool) or after < 0):
            return _error(id_, -32602, "filter.after_seq must be a non-negative integer")
        if job_id is not None:
            try:
                await self.service.get_job(sub.client, job_id)
            except NotFound as exc:
                return _error(id_, -32004, exc.message)
        # From here to the return nothing awaits: the replay and the switch to live events are one step.
        replay: list[JobEvent] = []
        if after is not None:
            replay, lost = self._replay(sub.client, job_id, after)
            if lost:
                return _error(
                    id_,
                    RESUME_LOST,
                    f"events after {after} are no longer kept (the coordinator restarted, or too many events "
                    "passed); read the job's state from GET /api/v1/jobs/{id} and subscribe without after_seq",
                )
        sub.job_id = job_id
        sub.subscribed = True
        sub.last_event_seq = after if after is not None else self.service.events.last_event_seq
        reply = orjson.dumps(
            {"id": id_, "result": {"subscribed": [TOPIC], "last_event_seq": self.service.events.last_event_seq}}
        )
        with contextlib.suppress(asyncio.QueueFull):
            sub.queue.put_nowait(reply)
        for event in replay:
            if sub.wants(event):
                self._push(sub, event)
        return None

    def _replay(self, client: ApiKey, job_id: str | None, after: int) -> tuple[list[JobEvent], bool]:
        """The kept events after ``after`` for this subscription, and whether some of them are gone."""
        events: deque[JobEvent] | list[JobEvent]
        if job_id is not None:
            events = self.service.events.history(job_id)
            complete = bool(events) and events[0].seq == 1  # the job's history still starts at its first event
        else:
            events = self.service.events.ring
            complete = False
        if not complete and after < self.service.events.last_event_seq:
            oldest = events[0].event_seq if events else self.service.events.last_event_seq + 1
            if after < oldest - 1:
                return [], True
        return [e for e in events if e.event_seq > after and (job_id is not None or e.owner == client.id)], False


def _error(id_: Any, code: int, message: str) -> bytes:
    return orjson.dumps({"id": id_, "error": {"code": code, "message": message}})
