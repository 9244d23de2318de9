"""Every query the coordinator makes, as plain synchronous methods (called from the DB thread).

State changes are conditional updates (``WHERE state = … AND lease_id = …``):
if two actors race, exactly one update matches a row, so a job is claimed
once and completed once even if the in-process locks were bypassed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from aitbc.coordinator.db.schema import api_keys, jobs, miners, receipts

Row = dict[str, Any]


class CoordinatorRepo:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # -- api keys --------------------------------------------------------------
    def insert_api_key(self, row: Row) -> None:
        with self.engine.begin() as conn:
            conn.execute(api_keys.insert().values(**row))

    def get_api_key(self, key_id: str) -> Row | None:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        return None if found is None else dict(found)

    def list_api_keys(self) -> list[Row]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at_ms)).mappings()]

    def revoke_api_key(self, key_id: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(revoked=True)).rowcount == 1

    # -- miners ----------------------------------------------------------------
    def upsert_miner(self, address: str, registration: Row, now_ms: int) -> None:
        with self.engine.begin() as conn:
            updated = conn.execute(
                miners.update()
                .where(miners.c.address == address)
                .values(registration=registration, last_seen_ms=now_ms)
            ).rowcount
            if not updated:
                conn.execute(
                    miners.insert().values(
                        address=address, registration=registration, registered_at_ms=now_ms, last_seen_ms=now_ms
                    )
                )

    def load_miners(self) -> list[Row]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(miners)).mappings()]

    # -- jobs ------------------------------------------------------------------
    def insert_job(self, row: Row) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs.insert().values(**row))

    def get_job(self, job_id: str) -> Row | None:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return None if found is None else dict(found)

    def list_jobs(
        self,
        api_key_id: str | None,
        state: str | None,
        model: str | None,
        limit: int,
        before: tuple[int, str] | None,
    ) -> list[Row]:
        query = sa.select(jobs)
        if api_key_id is not None:
            query = query.where(jobs.c.api_key_id == api_key_id)
        if state is not None:
            query = query.where(jobs.c.state == state)
        if model is not None:
            query = query.where(jobs.c.model == model)
        if before is not None:
            created, job_id = before
            query = query.where(
                sa.or_(jobs.c.created_at_ms < created, sa.and_(jobs.c.created_at_ms == created, jobs.c.id < job_id))
            )
        query = query.order_by(jobs.c.created_at_ms.desc(), jobs.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def find_claimable(self, models: Sequence[str], now_ms: int, limit: int) -> list[Row]:
        query = (
            sa.select(jobs)
            .where(jobs.c.state == "queued", jobs.c.model.in_(list(models)), jobs.c.expires_at_ms > now_ms)
            .order_by(jobs.c.created_at_ms, jobs.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def update_job_if(self, job_id: str, expect_state: Sequence[str], expect_lease: str | None, changes: Row) -> bool:
        """Apply ``changes`` only if the job is still in one of ``expect_state`` under ``expect_lease``."""
        with self.engine.begin() as conn:
            return self._update_job_if(conn, job_id, expect_state, expect_lease, changes)

    @staticmethod
    def _update_job_if(
        conn: sa.Connection, job_id: str, expect_state: Sequence[str], expect_lease: str | None, changes: Row
    ) -> bool:
        condition = sa.and_(jobs.c.id == job_id, jobs.c.state.in_(list(expect_state)))
        if expect_lease is not None:
            condition = sa.and_(condition, jobs.c.lease_id == expect_lease)
        return conn.execute(jobs.update().where(condition).values(**changes)).rowcount == 1

    def complete_job(self, job_id: str, expect_lease: str, changes: Row, receipt_row: Row) -> bool:
        """Mark the job completed and store its one receipt, atomically; False if someone else won."""
        with self.engine.begin() as conn:
            if not self._update_job_if(conn, job_id, ("assigned", "running"), expect_lease, changes):
                return False
            conn.execute(receipts.insert().values(**receipt_row))
            return True

    def jobs_with_expired_leases(self, now_ms: int) -> list[Row]:
        query = sa.select(jobs).where(jobs.c.state.in_(["assigned", "running"]), jobs.c.lease_expires_at_ms <= now_ms)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def jobs_past_ttl(self, now_ms: int) -> list[Row]:
        query = sa.select(jobs).where(jobs.c.state == "queued", jobs.c.expires_at_ms <= now_ms)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def count_by_state(self) -> dict[str, int]:
        query = sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)
        with self.engine.connect() as conn:
            return {state: int(n) for state, n in conn.execute(query)}

    # -- receipts --------------------------------------------------------------
    def get_receipt(self, job_id: str) -> Row | None:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(receipts).where(receipts.c.job_id == job_id)).mappings().first()
        return None if found is None else dict(found)

    def count_receipts(self, job_id: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(receipts).where(receipts.c.job_id == job_id)
                ).scalar_one()
            )
