"""Where the pool hub keeps miners: one Protocol, two backends.

``SqlRegistry`` (SQLite by default, or PostgreSQL) keeps everything in one database.
``RedisRegistry`` keeps live state (heartbeats, load, the online set) in Redis with
expiry and everything durable (registrations, statistics, outcome history, audit)
in SQL: PostgreSQL at scale. Both are synchronous: the service calls them off the
event loop, writes from one thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aitbc.market.matching import MinerOffer, ServedModel
from aitbc.market.scoring import MinerState, MinerStats, Outcome

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class MinerRecord:
    state: MinerState
    registration: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    miner: str
    at_ms: int
    load: int | None = None


@dataclass(frozen=True, slots=True)
class OutcomeReport:
    miner: str
    job_id: str
    attempt: int
    outcome: Outcome
    at_ms: int
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    detail: str | None = None


def offer_from_registration(address: str, registration: dict[str, Any]) -> MinerOffer:
    """The scoring engine's view of what a registration declares (models, prices, region, hardware)."""
    hardware = registration.get("hardware") or {}
    return MinerOffer(
        miner=address,
        models=tuple(
            ServedModel(m["name"], m["digest"], m["kind"], int(m["unit_price"])) for m in registration.get("models", [])
        ),
        region=registration.get("region") or "",
        gpu_name=hardware.get("gpu_name"),
        vram_gb=float(hardware.get("vram_gb") or 0.0),
    )


class Registry(Protocol):
    def upsert_miner(
        self, address: str, registration: dict[str, Any], stake: int, max_concurrency: int, now_ms: int
    ) -> MinerRecord:
        """Register or update a miner; its statistics and first registration time are kept."""
        ...

    def remove_miner(self, address: str, now_ms: int) -> bool: ...

    def record_heartbeats(self, beats: Sequence[Heartbeat]) -> None:
        """Live state of many miners at once (unknown miners are ignored)."""
        ...

    def record_outcome(self, report: OutcomeReport, stats: MinerStats) -> bool:
        """Store a measured outcome and the statistics it produced; False if it was
        already recorded for this (job, miner, attempt, outcome) (nothing changes then)."""
        ...

    def load_miners(self) -> list[MinerRecord]: ...

    def online_miners(self, now_ms: int, timeout_ms: int) -> set[str]: ...

    def get_outcomes(self, address: str, limit: int) -> list[Row]: ...

    def get_audit(self, address: str, limit: int) -> list[Row]: ...

    def close(self) -> None: ...
