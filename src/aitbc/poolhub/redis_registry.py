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

# One call writes a batch of heartbeats server-side: the client sends one string instead of packing
# ~4 arguments per miner (~20 µs of client CPU each in redis-py). Registered miners only; a beat with
# no load keeps the previous one. Then the online set is trimmed.
#   KEYS: registered set, online zset   ARGV: live key prefix, ttl ms, trim below, "MINER SEEN LOAD\n"…
_WRITE_LIVE = """
local n = 0
for miner, seen, load in string.gmatch(ARGV[4], "(%S+) (%d+) (%d*)\\n") do
  if redis.call('SISMEMBER', KEYS[1], miner) == 1 then
    local key = ARGV[1] .. miner
    if load == '' then
      local old = redis.call('GET', key)
      load = (old and string.match(old, ':(%d+)$')) or '0'
    end
    redis.call('SET', key, seen .. ':' .. load, 'PX', ARGV[2])
    redis.call('ZADD', KEYS[2], seen, miner)
    n = n + 1
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
return n
"""
LIVE_BATCH = 2_000
"""Heartbeats per script call (Redis runs a script without interruption: keep each call short)."""


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
        self._script = self.redis.register_script(_WRITE_LIVE)
        known = [r.state.miner for r in self.sql.load_miners()]
        if known:  # the set of registered miners, rebuilt from SQL (Redis may have been flushed)
            self.redis.sadd(self.miners_key, *known)

    def _live_key(self, miner: str) -> str:
        return f"{self.prefix}live:{miner}"

    def _write_live(self, beats: Sequence[Heartbeat]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        self._queue_live(pipe, beats)
        pipe.execute()

    def _queue_live(self, pipe: Any, beats: Sequence[Heartbeat]) -> None:
        for i in range(0, len(beats), LIVE_BATCH):
            chunk = beats[i : i + LIVE_BATCH]
            lines = "".join(f"{b.miner} {b.at_ms} {'' if b.load is None else b.load}\n" for b in chunk)
            trim_below = max(b.at_ms for b in chunk) - self.live_ttl_ms
            self._script(
                keys=[self.miners_key, self.online_key],
                args=[self.prefix + "live:", self.live_ttl_ms, trim_below, lines],
                client=pipe,
            )

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
            self._write_live(beats)

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
