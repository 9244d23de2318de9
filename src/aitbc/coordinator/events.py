"""Live job events (status changes, generated tokens, the receipt, payment changes).

Each active job keeps a bounded history so a client that connects late still
sees everything from the start; subscribers get their own bounded queue and
are cut off (not waited for) if they fall behind.

Every event also carries a coordinator-wide ``event_seq``: it starts at the process's start time in
microseconds and counts up by one per event, so sequence numbers keep increasing across restarts (at
fewer than a million events a second). Listeners (the ``job_updates`` WebSocket, ``aitbc.coordinator.ws``)
see every event with its job's owner (the API key id), and the last ``RING_LIMIT`` events are kept
for subscribers that resume after a reconnect.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

HISTORY_LIMIT: Final = 4096 + 64
"""A job's events kept for late subscribers: every token of the longest generation plus its status changes."""
SUBSCRIBER_QUEUE: Final = 8192
LINGER_SECONDS: Final = 60.0
RING_LIMIT: Final = 65_536
"""Coordinator-wide events kept for ``job_updates`` subscribers that resume without naming a job."""


@dataclass(slots=True)
class JobEvent:
    seq: int
    """The event's number within its job (1, 2, …)."""
    event: str
    data: dict[str, Any]
    event_seq: int = 0
    """The coordinator-wide number (see the module docstring)."""
    job_id: str = ""
    owner: str | None = None
    """The API key id of the job's client, when the coordinator knows it."""


Listener = Callable[[JobEvent], None]
Relay = Callable[[str, str, dict[str, Any], bool, str | None], None]
"""Passes a job event on to the other coordinator replicas: (job id, event, data, final, owner)."""


@dataclass(slots=True)
class _Channel:
    history: deque[JobEvent] = field(default_factory=lambda: deque(maxlen=HISTORY_LIMIT))
    subscribers: set[asyncio.Queue[JobEvent | None]] = field(default_factory=set)
    seq: int = 0
    closed_at: float | None = None
    owner: str | None = None


class JobEventBroker:
    def __init__(self, first_event_seq: int | None = None) -> None:
        self._channels: dict[str, _Channel] = {}
        self._closed: deque[tuple[float, str]] = deque()  # (closed at, job id), oldest first, for ``prune``
        self._event_seq = time.time_ns() // 1000 if first_event_seq is None else first_event_seq - 1
        self.ring: deque[JobEvent] = deque(maxlen=RING_LIMIT)
        self.listeners: set[Listener] = set()
        self.relay: Relay | None = None
        """Set on a replica (``aitbc.coordinator.replication``): events published here reach the others too."""

    @property
    def last_event_seq(self) -> int:
        return self._event_seq

    def history(self, job_id: str) -> list[JobEvent]:
        channel = self._channels.get(job_id)
        return [] if channel is None else list(channel.history)

    def publish(
        self,
        job_id: str,
        event: str,
        data: dict[str, Any],
        final: bool = False,
        owner: str | None = None,
        share: bool = True,
    ) -> None:
        """Publish an event here, and to the other replicas unless ``share`` is False (it came from one, or
        every replica publishes it by itself)."""
        if self.relay is not None and share:
            self.relay(job_id, event, data, final, owner)
        channel = self._channels.setdefault(job_id, _Channel())
        if owner is not None:
            channel.owner = owner
        channel.seq += 1
        self._event_seq += 1
        item = JobEvent(channel.seq, event, data, self._event_seq, job_id, channel.owner)
        channel.history.append(item)
        self.ring.append(item)
        for listener in list(self.listeners):
            listener(item)
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
