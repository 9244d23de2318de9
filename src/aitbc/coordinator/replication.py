"""Coordinator replicas: several ``aitbc coordinator run`` processes on one PostgreSQL serve the same API.

The database is the record, so most of a coordinator is already shared; what each process keeps in
memory is made to agree here (docs/architecture.md, "Coordinator replicas"):

- **claims**: a claim locks the queued rows it looks at (``FOR UPDATE SKIP LOCKED``, ``db/repo.py``), so
  two replicas never hand out one job; a miner's running jobs are read from the database before a claim
  (they may have ended through another replica);
- **wake-ups**: a submission or a requeue on one replica is announced on the ``ReplicaBus``
  (PostgreSQL ``LISTEN/NOTIFY``): each replica wakes one of its long-polling claimers that can take the
  job, at once, not at its next poll;
- **job events** (status, tokens, receipt, payment) published on one replica are published on the
  others too, so a client watching a job (SSE, the ``job_updates`` WebSocket, an OpenAI stream) sees it
  finish whichever replica its miner reported to;
- **miners**: a registration is announced on the bus (the others read it at once); each replica writes
  when it last heard from its miners and reads the others' (every ``SYNC_SECONDS``), so every replica
  knows every live miner and its registration;
- **deposits**: each replica rebuilds its deposit books from the jobs table every ``SYNC_SECONDS``;
- **settling**: only the replica holding the settler lock (an advisory lock) sends escrow settlements,
  refunds and deposit batches and follows the chain; when it dies, PostgreSQL drops its lock and a
  survivor takes over within a round. The chain pays a job at most once whatever happens.

A replica killed with ``-9`` loses nothing: its claimed jobs' leases expire and another replica's
sweeper requeues them; its unsent payments are found in the database by the next settler.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Final

from aitbc.coordinator.db.replicas import ReplicaBus, SettlerLock
from aitbc.coordinator.services import CoordinatorService

log = logging.getLogger("aitbc.coordinator.replication")

SYNC_SECONDS: Final = 1.0
"""How often a replica writes and reads the miners' last contact and rebuilds its deposit books."""
SAFETY_WAKE_SECONDS: Final = 5.0
"""How often a replica's claimers look at the queue anyway (a wake-up lost with a replica's connection)."""
PEER_SECONDS: Final = 3 * SYNC_SECONDS
"""A replica heard from within this is running: while none is, wake-ups and job events are not sent (a
coordinator alone on PostgreSQL pays nothing for them). Each replica says hello every ``SYNC_SECONDS``."""


class Replication:
    """One replica's links to the others (built by ``create_app`` when the database is PostgreSQL)."""

    def __init__(self, service: CoordinatorService, url: str, origin: str | None = None) -> None:
        self.service = service
        self.origin = origin or os.urandom(6).hex()
        self.bus = ReplicaBus(url, self.origin, self.on_message, self.on_reconnect)
        self.lock = SettlerLock(url)
        service.dispatcher.broadcast = self._announce
        service.dispatcher.announce_miner = lambda miner: self.bus.send({"k": "m", "a": miner})
        self._tasks: set[asyncio.Task[None]] = set()
        self._peers: dict[str, float] = {}  # replica id → when last heard from (monotonic)
        service.events.relay = self._relay
        if service.payments is not None:
            service.payments.gate = self.may_settle

    # -- out ---------------------------------------------------------------------------
    def has_peers(self) -> bool:
        cutoff = time.monotonic() - PEER_SECONDS
        return any(seen >= cutoff for seen in self._peers.values())

    def _announce(self, model: str | None) -> None:
        if self.has_peers():
            self.bus.send({"k": "w", "m": model})

    def _relay(self, job_id: str, event: str, data: dict[str, Any], final: bool, owner: str | None) -> None:
        if self.has_peers():
            self.bus.send({"k": "e", "j": job_id, "e": event, "d": data, "f": final, "w": owner})

    # -- in ----------------------------------------------------------------------------
    def on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("k")
        origin = message.get("o")
        if isinstance(origin, str):
            if origin not in self._peers or (kind == "h" and message.get("new")):
                self.bus.send({"k": "h"})  # a replica started: it hears of this one at once, not a second later
            self._peers[origin] = time.monotonic()
        if kind == "w":
            model = message.get("m")
            self.service.dispatcher.notify_work(model if isinstance(model, str) else None, remote=True)
        elif kind == "m" and isinstance(message.get("a"), str):
            task = asyncio.get_running_loop().create_task(self.service.dispatcher.load_miner(message["a"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind == "e":
            try:
                job_id, event, data = str(message["j"]), str(message["e"]), dict(message["d"])
            except (KeyError, TypeError, ValueError):
                return
            owner = message.get("w")
            final = bool(message.get("f"))
            self.service.events.publish(
                job_id, event, data, final, owner if isinstance(owner, str) else None, share=False
            )

    def on_reconnect(self) -> None:
        """Wake-ups sent while the bus was down are lost: every claimer here looks at the queue again."""
        self.service.dispatcher.notify_work()

    async def may_settle(self) -> bool:
        return await asyncio.to_thread(self.lock.held)

    # -- running -------------------------------------------------------------------------
    async def run(self) -> None:
        """Listen to the other replicas and keep the shared state in step until cancelled."""
        self.bus.start(asyncio.get_running_loop())
        self.bus.send({"k": "h", "new": True})
        last_wake = time.monotonic()
        try:
            while True:
                self.bus.send({"k": "h"})
                try:
                    await self.sync_once()
                except Exception:
                    log.exception("replica sync failed")
                if time.monotonic() - last_wake >= SAFETY_WAKE_SECONDS:
                    last_wake = time.monotonic()
                    self.service.dispatcher.notify_work()
                await asyncio.sleep(SYNC_SECONDS)
        finally:
            await asyncio.to_thread(self.close)

    async def sync_once(self) -> None:
        await self.service.dispatcher.sync_miners()
        deposits = self.service.deposits
        if deposits is not None:
            try:
                await deposits.resync()
            except Exception as exc:  # the node may be away: the next round tries again
                log.warning("deposit books not resynced", extra={"error": str(exc)})

    def close(self) -> None:
        self.bus.stop()
        self.lock.release()
