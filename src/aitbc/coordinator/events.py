"""Live job events (status changes, generated tokens) for the ``/events`` stream.

Each active job keeps a bounded history so a client that connects late still
sees everything from the start; subscribers get their own bounded queue and
are cut off (not waited for) if they fall behind.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

HISTORY_LIMIT: Final = 4096
SUBSCRIBER_QUEUE: Final = 8192
LINGER_SECONDS: Final = 60.0


@dataclass(slots=True)
class JobEvent:
    seq: int
    event: str
    data: dict[str, Any]


@dataclass(slots=True)
class _Channel:
    history: deque[JobEvent] = field(default_factory=lambda: deque(maxlen=HISTORY_LIMIT))
    subscribers: set[asyncio.Queue[JobEvent | None]] = field(default_factory=set)
    seq: int = 0
    closed_at: float | None = None


class JobEventBroker:
    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}
        self._closed: deque[tuple[float, str]] = deque()  # (closed at, job id), oldest first, for ``prune``

    def publish(self, job_id: str, event: str, data: dict[str, Any], final: bool = False) -> None:
        channel = self._channels.setdefault(job_id, _Channel())
        channel.seq += 1
        item = JobEvent(channel.seq, event, data)
        channel.history.append(item)
        for queue in list(channel.subscribers):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                channel.subscribers.discard(queue)
        if final:
            channel.closed_at = time.monotonic()
            self._closed.append((channel.closed_at, job_id))
            for queue in list(channel.subscribers):
                if not queue.full():
                    queue.put_nowait(None)
            channel.subscribers.clear()

    def subscribe(self, job_id: str) -> tuple[list[JobEvent], asyncio.Queue[JobEvent | None] | None]:
        """History so far, plus a queue of what follows (None when the job already finished)."""
        channel = self._channels.get(job_id)
        if channel is None:
            channel = self._channels[job_id] = _Channel()
        history = list(channel.history)
        if channel.closed_at is not None:
            return history, None
        queue: asyncio.Queue[JobEvent | None] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        channel.subscribers.add(queue)
        return history, queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[JobEvent | None]) -> None:
        channel = self._channels.get(job_id)
        if channel is not None:
            channel.subscribers.discard(queue)

    def prune(self) -> None:
        """Forget channels of jobs that finished a while ago (in order of finishing: no scan of open ones)."""
        cutoff = time.monotonic() - LINGER_SECONDS
        while self._closed and self._closed[0][0] < cutoff:
            closed_at, job_id = self._closed.popleft()
            channel = self._channels.get(job_id)
            # (a closed channel takes no new subscribers: ``publish(final=True)`` dropped its last ones)
            if channel is not None and channel.closed_at == closed_at and not channel.subscribers:
                del self._channels[job_id]
