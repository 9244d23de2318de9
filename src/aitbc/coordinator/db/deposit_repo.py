"""Queries of the deposit path: key bindings, deposit jobs by payment state, batch intents."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from aitbc.coordinator.db.payment_records import (
    DueSettlement,
    OpenDepositJob,
    due_settlement_from_row,
    open_deposit_job_from_row,
)
from aitbc.coordinator.db.schema import deposit_bindings, jobs, receipts

Row = dict[str, Any]

OPEN_STATES = ("reserved", "batching")
"""Deposit jobs the coordinator still owes something: in flight or completed (reserved), in a batch sent."""
_TERMINAL_UNPAID = ("failed", "cancelled", "expired")


class DepositRepo:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # -- bindings ------------------------------------------------------------------
    def bind(self, api_key_id: str, deposit_id: str, now_ms: int) -> None:
        """Bind ``api_key_id`` to ``deposit_id`` (replacing an earlier binding of that key)."""
        with self.engine.begin() as conn:
            conn.execute(deposit_bindings.delete().where(deposit_bindings.c.api_key_id == api_key_id))
            conn.execute(
                deposit_bindings.insert().values(api_key_id=api_key_id, deposit_id=deposit_id, bound_at_ms=now_ms)
            )

    def get_binding(self, api_key_id: str) -> str | None:
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(deposit_bindings.c.deposit_id).where(deposit_bindings.c.api_key_id == api_key_id)
            ).scalar()
        return None if found is None else str(found)

    def list_bindings(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(deposit_bindings.c.api_key_id, deposit_bindings.c.deposit_id)).all()
        return {str(k): str(d) for k, d in rows}

    # -- deposit jobs --------------------------------------------------------------
    def open_deposit_jobs(self) -> list[OpenDepositJob]:
        """Every deposit job still reserved or in a batch, with its deposit (to rebuild the books on start)."""
        query = (
            sa.select(
                jobs.c.id,
                jobs.c.state,
                jobs.c.payment_state,
                jobs.c.escrow_amount,
                jobs.c.payment_tx,
                deposit_bindings.c.deposit_id,
            )
            .join(deposit_bindings, deposit_bindings.c.api_key_id == jobs.c.api_key_id)
            .where(jobs.c.payment_state.in_(OPEN_STATES))
        )
        with self.engine.connect() as conn:
            return [open_deposit_job_from_row(r) for r in conn.execute(query).mappings()]

    def jobs_due_for_batch(self, limit: int) -> list[DueSettlement]:
        """Completed deposit jobs not in any batch yet, oldest first, with their receipts."""
        query = (
            sa.select(
                jobs.c.id,
                jobs.c.escrow_amount,
                jobs.c.escrow_deadline,
                jobs.c.max_price,
                jobs.c.client_signature,
                receipts.c.receipt,
                deposit_bindings.c.deposit_id,
            )
            .join(receipts, receipts.c.job_id == jobs.c.id)
            .join(deposit_bindings, deposit_bindings.c.api_key_id == jobs.c.api_key_id)
            .where(jobs.c.payment_state == "reserved", jobs.c.state == "completed")
            .order_by(jobs.c.finished_at_ms)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [due_settlement_from_row(r) for r in conn.execute(query).mappings()]

    def release_unpaid(self, now_ms: int) -> list[str]:
        """Deposit jobs that ended without a result: nothing to pay; their state becomes ``released``."""
        with self.engine.begin() as conn:
            ids = [
                str(r)
                for r in conn.execute(
                    sa.select(jobs.c.id).where(jobs.c.payment_state == "reserved", jobs.c.state.in_(_TERMINAL_UNPAID))
                ).scalars()
            ]
            if ids:
                conn.execute(
                    jobs.update()
                    .where(jobs.c.id.in_(ids), jobs.c.payment_state == "reserved")
                    .values(payment_state="released", payment_updated_ms=now_ms)
                )
        return ids

    def mark_batching(self, job_ids: list[str], tx_hash: str, now_ms: int) -> int:
        """The batch's intent, in one statement: these ``reserved`` jobs are in settle tx ``tx_hash``; how many
        matched (all of them, unless a job changed meanwhile)."""
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    jobs.update()
                    .where(jobs.c.id.in_(job_ids), jobs.c.payment_state == "reserved")
                    .values(payment_state="batching", payment_tx=tx_hash, payment_updated_ms=now_ms)
                ).rowcount
            )

    def unmark_batching(self, tx_hash: str, error: str | None) -> None:
        """The batch was not sent (or refused whole): its jobs are ``reserved`` again, to go in the next one."""
        with self.engine.begin() as conn:
            conn.execute(
                jobs.update()
                .where(jobs.c.payment_tx == tx_hash, jobs.c.payment_state == "batching")
                .values(payment_state="reserved", payment_error=error)
            )

    def batches_to_check(self, sent_before_ms: int) -> dict[str, list[str]]:
        """Batches (tx hash → job ids) sent before ``sent_before_ms`` whose jobs are not settled yet."""
        query = sa.select(jobs.c.id, jobs.c.payment_tx).where(
            jobs.c.payment_state == "batching", jobs.c.payment_updated_ms < sent_before_ms
        )
        found: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            for job_id, tx in conn.execute(query).all():
                found.setdefault(str(tx), []).append(str(job_id))
        return found

    def count_deposit_jobs(self, deposit_id: str) -> dict[str, int]:
        """Jobs of the keys bound to ``deposit_id`` by payment state (for ``GET /api/v1/account``)."""
        query = (
            sa.select(jobs.c.payment_state, sa.func.count())
            .join(deposit_bindings, deposit_bindings.c.api_key_id == jobs.c.api_key_id)
            .where(deposit_bindings.c.deposit_id == deposit_id, jobs.c.payment_state.is_not(None))
            .group_by(jobs.c.payment_state)
        )
        with self.engine.connect() as conn:
            return {str(s): int(n) for s, n in conn.execute(query).all()}
