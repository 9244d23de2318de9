"""What coordinator replicas on one PostgreSQL tell each other, and which of them settles: the PostgreSQL shell.

- ``ReplicaBus``: one ``LISTEN`` connection (a thread) and one sender connection (a thread that sends
  what queued up meanwhile in one ``pg_notify`` statement). Messages are small JSON objects, each with
  the sending replica's id, so a replica skips its own. What they say (work arrived, a job event) is the
  business of ``aitbc.coordinator.replication``; here they are only carried. A lost ``LISTEN``
  connection is opened again, and the bus then says so (``on_reconnect``): messages sent meanwhile are
  lost, so the replica looks at the database again.
- ``SettlerLock``: a session-level advisory lock on a connection of its own. Exactly one replica holds
  it; when that replica dies, its connection closes and PostgreSQL releases the lock, so a survivor
  takes it at its next try.

Only PostgreSQL has these; a coordinator on SQLite is one process (``aitbc coordinator run`` locks the
data directory), so it has neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec
import sqlalchemy as sa

log = logging.getLogger("aitbc.coordinator.replicas")

CHANNEL: Final = "aitbc_coordinator"
SETTLER_LOCK_KEY: Final = 0x41495442_43534554  # "AITBCSET": the advisory lock of the replica that settles
MAX_PAYLOAD: Final = 7_900
"""PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more: bigger messages are not sent (see ``send``)."""
SEND_BATCH: Final = 500
RECONNECT_SECONDS: Final = 0.5


def is_postgres(url: str) -> bool:
    return sa.engine.make_url(url).get_backend_name() == "postgresql"


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL (``postgresql+psycopg://…``) as psycopg takes it (``postgresql://…``)."""
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _connect(conninfo: str) -> Any:
    import psycopg

    return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)


class ReplicaBus:
    """``send`` a message to the other replicas; theirs arrive through ``on_message`` on the event loop."""

    def __init__(
        self,
        url: str,
        origin: str,
        on_message: Callable[[dict[str, Any]], None],
        on_reconnect: Callable[[], None],
    ) -> None:
        self._conninfo = libpq_url(url)
        self.origin = origin
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: list[bytes] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self.listening = threading.Event()
        """Set once the first ``LISTEN`` is in place (tests and start-up wait on it)."""
        self._encoder = msgspec.json.Encoder()
        self._sender_pid = 0
        """The sending connection's server process: its notifications (this replica's own) are skipped undecoded."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for target, name in ((self._listen, "replica-listen"), (self._send_loop, "replica-send")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        for thread in self._threads:
            thread.join(timeout=5)

    def send(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for the other replicas (from the event loop; never blocks). One too big for a
        NOTIFY is dropped with a warning: the others still see its effect in the database."""
        payload = self._encoder.encode({**message, "o": self.origin})
        if len(payload) > MAX_PAYLOAD:
            log.warning("replica message too big; not sent", extra={"kind": message.get("k"), "bytes": len(payload)})
            return
        with self._wake:
            self._outbox.append(payload)
            self._wake.notify()

    # -- threads -------------------------------------------------------------------
    def _send_loop(self) -> None:
        conn: Any = None
        while True:
            with self._wake:
                while not self._outbox and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    break
                batch, self._outbox = self._outbox[:SEND_BATCH], self._outbox[SEND_BATCH:]
            texts = [p.decode() for p in batch]
            for attempt in range(2):
                try:
                    if conn is None:
                        conn = _connect(self._conninfo)
                        self._sender_pid = conn.info.backend_pid
                    conn.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", (CHANNEL, texts))
                    break
                except Exception as exc:  # the connection broke: open another and try once more
                    with contextlib.suppress(Exception):
                        conn.close()
                    conn = None
                    if attempt:
                        log.warning("replica messages not sent", extra={"error": str(exc), "messages": len(texts)})
                        time.sleep(RECONNECT_SECONDS)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _listen(self) -> None:
        decoder = msgspec.json.Decoder(dict[str, Any])
        first = True
        while not self._stopping:
            try:
                conn = _connect(self._conninfo)
            except Exception as exc:
                log.warning("replica bus cannot connect; retrying", extra={"error": str(exc)})
                time.sleep(RECONNECT_SECONDS)
                continue
            try:
                conn.execute(f"LISTEN {CHANNEL}")
                self.listening.set()
                if not first:  # messages sent while this replica was not listening are lost: look again
                    self._deliver(None)
                first = False
                while not self._stopping:
                    for notify in conn.notifies(timeout=0.5, stop_after=SEND_BATCH):
                        if notify.pid == self._sender_pid:
                            continue
                        try:
                            message = decoder.decode(notify.payload)
                        except msgspec.DecodeError:
                            continue
                        if message.get("o") != self.origin:
                            self._deliver(message)
            except Exception as exc:
                if not self._stopping:
                    log.warning("replica bus connection lost; reconnecting", extra={"error": str(exc)})
                    time.sleep(RECONNECT_SECONDS)
            finally:
                with contextlib.suppress(Exception):
                    conn.close()

    def _deliver(self, message: dict[str, Any] | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            if message is None:
                loop.call_soon_threadsafe(self._on_reconnect)
            else:
                loop.call_soon_threadsafe(self._on_message, message)


class SettlerLock:
    """The advisory lock only the settling replica holds (``held`` from a worker thread: it may block)."""

    def __init__(self, url: str, key: int = SETTLER_LOCK_KEY) -> None:
        self._conninfo = libpq_url(url)
        self._key = key
        self._conn: Any = None
        self._held = False
        self._mutex = threading.Lock()

    def held(self) -> bool:
        """Whether this replica holds the lock now: takes it if free; checks the connection if held."""
        with self._mutex:
            try:
                if self._conn is None:
                    self._conn = _connect(self._conninfo)
                    self._held = False
                if self._held:
                    self._conn.execute("SELECT 1")
                    return True
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
                self._held = bool(row and row[0])
                return self._held
            except Exception as exc:  # the session is gone, and with it the lock
                if self._held:
                    log.warning("settler lock lost with its connection", extra={"error": str(exc)})
                self._drop()
                return False

    def release(self) -> None:
        with self._mutex:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
        self._held = False
