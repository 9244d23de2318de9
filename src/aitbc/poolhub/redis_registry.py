"""Redis for live miner state, SQL (PostgreSQL) for everything durable.

Per miner a key ``PREFIX live:ADDRESS`` = ``"LAST_SEEN_MS:LOAD"`` that expires ``live_ttl_ms``
after the last heartbeat (one ``SET … PX`` per heartbeat, read back with one ``MGET``), and a
sorted set ``PREFIX online`` (address → last heartbeat, one ``ZADD`` per batch) trimmed on every
write: a miner that stops heartbeating disappears from both on its own. ``PREFIX miners`` is the
set of registered addresses (heartbeats of others are ignored). Heartbeats never touch SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import redis

from aitbc.market.scoring import MinerStats
from aitbc.poolhub.registry import Heartbeat, MinerRecord, OutcomeReport, Row
from aitbc.poolhub.sql_registry import SqlRegistry


class RedisRegistry:
    def __init__(
        self,
        redis_url: str,
        sql_url: str,
        *,
        live_ttl_ms: int = 60_000,
        prefix: str = "aitbc:poolhub:",
        prior_reliability: float = 0.75,
    ) -> None:
        self.redis: redis.Redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.redis.ping()
        self.sql = SqlRegistry(sql_url, prior_reliability)
        self.live_ttl_ms = live_ttl_ms
        self.prefix = prefix
        self.online_key = prefix + "online"
        self.miners_key = prefix + "miners"
        known = [r.state.miner for r in self.sql.load_miners()]
        if known:  # the set of registered miners, rebuilt from SQL (Redis may have been flushed)
            self.redis.sadd(self.miners_key, *known)

    def _live_key(self, miner: str) -> str:
        return f"{self.prefix}live:{miner}"

    def _write_live(self, beats: Sequence[Heartbeat], known: set[str] | None = None) -> None:
        pipe = self.redis.pipeline(transaction=False)
        self._queue_live(pipe, beats, known)
        pipe.execute()

    def _queue_live(self, pipe: Any, beats: Sequence[Heartbeat], known: set[str] | None = None) -> None:
        kept = [b for b in beats if known is None or b.miner in known]
        if not kept:
            return
        unknown_load = [b.miner for b in kept if b.load is None]
        previous = self._read_live(unknown_load) if unknown_load else {}
        for beat in kept:
            load = beat.load if beat.load is not None else previous[beat.miner][1]
            pipe.set(self._live_key(beat.miner), f"{beat.at_ms}:{load}", px=self.live_ttl_ms)
        pipe.zadd(self.online_key, {b.miner: b.at_ms for b in kept})
        pipe.zremrangebyscore(self.online_key, "-inf", max(b.at_ms for b in kept) - self.live_ttl_ms)

    def upsert_miner(
        self, address: str, registration: dict[str, Any], stake: int, max_concurrency: int, now_ms: int
    ) -> MinerRecord:
        record = self.sql.upsert_miner(address, registration, stake, max_concurrency, now_ms)
        pipe = self.redis.pipeline(transaction=False)  # one round trip
        pipe.sadd(self.miners_key, address)
        self._queue_live(pipe, [Heartbeat(address, now_ms)])
        pipe.get(self._live_key(address))
        return _with_live(record, _parse_live(pipe.execute()[-1]))

    def remove_miner(self, address: str, now_ms: int) -> bool:
        self.redis.delete(self._live_key(address))
        self.redis.zrem(self.online_key, address)
        self.redis.srem(self.miners_key, address)
        return self.sql.remove_miner(address, now_ms)

    def record_heartbeats(self, beats: Sequence[Heartbeat]) -> None:
        if beats:
            self._write_live(beats, known=self._known(sorted({b.miner for b in beats})))

    def _known(self, addresses: list[str]) -> set[str]:
        flags = self.redis.smismember(self.miners_key, addresses)
        return {a for a, known in zip(addresses, flags, strict=True) if known}

    def _read_live(self, addresses: list[str]) -> dict[str, tuple[int, int]]:
        values: list[str | None] = self.redis.mget([self._live_key(a) for a in addresses]) if addresses else []  # type: ignore[assignment]
        return {address: _parse_live(value) for address, value in zip(addresses, values, strict=True)}

    def record_outcome(self, report: OutcomeReport, stats: MinerStats) -> bool:
        return self.sql.record_outcome(report, stats)

    def load_miners(self) -> list[MinerRecord]:
        records = self.sql.load_miners()
        live = self._read_live([r.state.miner for r in records])
        return [_with_live(r, live[r.state.miner]) for r in records]

    def online_miners(self, now_ms: int, timeout_ms: int) -> set[str]:
        members: list[str] = self.redis.zrangebyscore(self.online_key, now_ms - timeout_ms, "+inf")  # type: ignore[assignment]
        return set(members)

    def get_outcomes(self, address: str, limit: int) -> list[Row]:
        return self.sql.get_outcomes(address, limit)

    def get_audit(self, address: str, limit: int) -> list[Row]:
        return self.sql.get_audit(address, limit)

    def close(self) -> None:
        self.sql.close()
        self.redis.close()


def _with_live(record: MinerRecord, live: tuple[int, int]) -> MinerRecord:
    seen, load = live
    return MinerRecord(replace(record.state, last_seen_ms=seen, load=load), record.registration)


def _parse_live(value: str | None) -> tuple[int, int]:
    """``"LAST_SEEN_MS:LOAD"`` → (last seen, load); an expired or missing key → (0, 0)."""
    if not value:
        return 0, 0
    seen, _, load = value.partition(":")
    return int(seen), int(load or 0)
