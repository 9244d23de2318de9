"""The SQL registry: SQLite (embedded default) or PostgreSQL, through SQLAlchemy Core + Alembic."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from aitbc.market.scoring import MinerState, MinerStats
from aitbc.poolhub.db.schema import audit, miners, outcomes
from aitbc.poolhub.registry import Heartbeat, MinerRecord, OutcomeReport, Row, offer_from_registration
from aitbc.runtime.db import create_db_engine, run_migrations

MIGRATIONS_DIR = Path(__file__).parent / "db" / "migrations"

_HEARTBEAT = (
    miners.update()
    .where(miners.c.address == sa.bindparam("w_address"))
    .values(last_seen_ms=sa.bindparam("v_seen"), load=sa.func.coalesce(sa.bindparam("v_load"), miners.c.load))
)
_STATS_COLUMNS = ("reliability", "ttft_ms", "tokens_per_s", "completed", "failed", "timed_out", "receipt_rejected")


def stats_from_row(row: Any) -> MinerStats:
    return MinerStats(
        reliability=row.reliability,
        ttft_ms=row.ttft_ms,
        tokens_per_s=row.tokens_per_s,
        completed=row.completed,
        failed=row.failed,
        timed_out=row.timed_out,
        receipt_rejected=row.receipt_rejected,
        last_outcome_ms=row.last_outcome_ms,
    )


def record_from_row(row: Any, last_seen_ms: int | None = None, load: int | None = None) -> MinerRecord:
    state = MinerState(
        offer=offer_from_registration(row.address, row.registration),
        registered_at_ms=row.registered_at_ms,
        last_seen_ms=row.last_seen_ms if last_seen_ms is None else last_seen_ms,
        max_concurrency=row.max_concurrency,
        load=row.load if load is None else load,
        stake=row.stake,
        stats=stats_from_row(row),
    )
    return MinerRecord(state, row.registration)


class SqlRegistry:
    def __init__(self, url: str, prior_reliability: float = 0.75) -> None:
        self.engine = create_db_engine(url)
        run_migrations(self.engine, MIGRATIONS_DIR)
        self.prior_reliability = prior_reliability

    def upsert_miner(
        self, address: str, registration: dict[str, Any], stake: int, max_concurrency: int, now_ms: int
    ) -> MinerRecord:
        with self.engine.begin() as conn:
            existing = conn.execute(sa.select(miners).where(miners.c.address == address)).first()
            values = {
                "registration": registration,
                "stake": stake,
                "max_concurrency": max_concurrency,
                "updated_at_ms": now_ms,
                "last_seen_ms": now_ms,
            }
            if existing is None:
                conn.execute(
                    miners.insert().values(
                        address=address,
                        registered_at_ms=now_ms,
                        load=0,
                        reliability=self.prior_reliability,
                        ttft_ms=None,
                        tokens_per_s=None,
                        completed=0,
                        failed=0,
                        timed_out=0,
                        receipt_rejected=0,
                        last_outcome_ms=0,
                        **values,
                    )
                )
            else:
                conn.execute(miners.update().where(miners.c.address == address).values(**values))
            conn.execute(
                audit.insert().values(
                    at_ms=now_ms,
                    miner=address,
                    action="registered" if existing is None else "updated",
                    detail={"registration": registration, "stake": stake, "max_concurrency": max_concurrency},
                )
            )
            row = conn.execute(sa.select(miners).where(miners.c.address == address)).one()
        return record_from_row(row)

    def remove_miner(self, address: str, now_ms: int) -> bool:
        with self.engine.begin() as conn:
            removed = conn.execute(miners.delete().where(miners.c.address == address)).rowcount > 0
            if removed:
                conn.execute(audit.insert().values(at_ms=now_ms, miner=address, action="removed", detail={}))
        return removed

    def record_heartbeats(self, beats: Sequence[Heartbeat]) -> None:
        if not beats:
            return
        with self.engine.begin() as conn:
            conn.execute(_HEARTBEAT, [{"w_address": b.miner, "v_seen": b.at_ms, "v_load": b.load} for b in beats])

    def record_outcome(self, report: OutcomeReport, stats: MinerStats) -> bool:
        with self.engine.begin() as conn:
            duplicate = conn.execute(
                sa.select(outcomes.c.id).where(
                    outcomes.c.job_id == report.job_id,
                    outcomes.c.miner == report.miner,
                    outcomes.c.attempt == report.attempt,
                    outcomes.c.outcome == report.outcome.value,
                )
            ).first()
            if duplicate is not None:
                return False
            conn.execute(
                outcomes.insert().values(
                    job_id=report.job_id,
                    miner=report.miner,
                    attempt=report.attempt,
                    outcome=report.outcome.value,
                    ttft_ms=report.ttft_ms,
                    tokens_per_s=report.tokens_per_s,
                    detail=report.detail,
                    reliability_after=stats.reliability,
                    recorded_at_ms=report.at_ms,
                )
            )
            conn.execute(
                miners.update()
                .where(miners.c.address == report.miner)
                .values(
                    **{name: getattr(stats, name) for name in _STATS_COLUMNS}, last_outcome_ms=stats.last_outcome_ms
                )
            )
        return True

    def load_miners(self) -> list[MinerRecord]:
        with self.engine.connect() as conn:
            return [record_from_row(row) for row in conn.execute(sa.select(miners).order_by(miners.c.address))]

    def online_miners(self, now_ms: int, timeout_ms: int) -> set[str]:
        with self.engine.connect() as conn:
            query = sa.select(miners.c.address).where(miners.c.last_seen_ms >= now_ms - timeout_ms)
            return {row.address for row in conn.execute(query)}

    def get_outcomes(self, address: str, limit: int) -> list[Row]:
        query = (
            sa.select(outcomes)
            .where(outcomes.c.miner == address)
            .order_by(outcomes.c.recorded_at_ms.desc(), outcomes.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def get_audit(self, address: str, limit: int) -> list[Row]:
        query = sa.select(audit).where(audit.c.miner == address).order_by(audit.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def close(self) -> None:
        self.engine.dispose()
