"""Every query the coordinator makes, as plain synchronous methods (called from the DB thread).

Jobs and receipts go in and come out as the typed records of ``aitbc.coordinator.db.records`` (mapped
to and from rows there, once); the payment worker's narrow reads and writes stay column-level.

State changes are conditional updates (``WHERE state = … AND lease_id = …``):
if two actors race, exactly one update matches a row, so a job is claimed
once and completed once even if the in-process locks were bypassed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from aitbc.coordinator.db.driver import DriverStatement, is_integrity_error
from aitbc.coordinator.db.payment_records import (
    ApiKey,
    DuePayment,
    StoredReceipt,
    api_key_from_row,
    due_payment_from_row,
    stored_receipt_from_row,
)
from aitbc.coordinator.db.records import (
    JobPayment,
    JobRecord,
    ReceiptRecord,
    job_from_row,
    job_to_row,
    json_text,
    lifecycle_columns,
    receipt_from_row,
    receipt_to_row,
    registration_from_json,
    registration_to_json,
)
from aitbc.coordinator.db.schema import api_keys, chain_cursor, jobs, miners, receipts
from aitbc.market.lifecycle import JobLifecycle, JobRuleViolation
from aitbc.protocol.job_messages import MinerRegistration

Row = dict[str, Any]
"""A plain row: API keys, miners and the payment worker's column-level updates."""

# Hot statements are built once with bound parameters: building one per call (``.where(col == value)``,
# ``.values(**changes)``) and computing its cache key cost more than running it on SQLite.
_EXPIRED_LEASES = sa.select(jobs).where(
    jobs.c.state.in_(["assigned", "running"]), jobs.c.lease_expires_at_ms <= sa.bindparam("now_ms")
)
_PAST_TTL = sa.select(jobs).where(jobs.c.state == "queued", jobs.c.expires_at_ms <= sa.bindparam("now_ms"))
_NEXT_LEASE_END = sa.select(sa.func.min(jobs.c.lease_expires_at_ms)).where(jobs.c.state.in_(["assigned", "running"]))
_NEXT_TTL_END = sa.select(sa.func.min(jobs.c.expires_at_ms)).where(jobs.c.state == "queued")
_COUNT_BY_STATE = sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)


def _find_claimable(limit: int, models: int, skip_locked: bool = False) -> sa.Select[Any]:
    """The oldest queued jobs of the models (``m0`` … ``m<models-1>``); ``skip_locked`` (PostgreSQL): locked for
    this transaction, and jobs another replica's claim holds locked are passed over instead of waited for."""
    query = (
        sa.select(jobs)
        .where(
            jobs.c.state == "queued",
            jobs.c.model.in_([sa.bindparam(f"m{i}") for i in range(models)]),
            jobs.c.expires_at_ms > sa.bindparam("now_ms"),
        )
        .order_by(jobs.c.created_at_ms, jobs.c.id)
        .limit(limit)
    )
    return query.with_for_update(skip_locked=True) if skip_locked else query


def _jobs_by_id(count: int, columns: tuple[str, ...] | None = None) -> sa.Select[Any]:
    """The jobs (or these ``columns`` of them) of ``id0`` … ``id<count-1>``."""
    query = sa.select(jobs) if columns is None else sa.select(*(jobs.c[name] for name in columns))
    return query.where(jobs.c.id.in_([sa.bindparam(f"id{i}") for i in range(count)]))


BY_ID_CHUNK = 64
"""Reads by id go in chunks of at most this many ids: few distinct statements to compile and keep."""


class _NotAllMatched(Exception):
    """A grouped conditional update matched fewer rows than it had (rolls its transaction back)."""


ClaimChoice = Callable[[JobRecord], tuple[JobLifecycle, str, int] | None]
"""For a claimable job: (its lifecycle once claimed, the served model's digest, its unit price), or None."""


def _grouped_update(columns: tuple[str, ...], states: int, with_lease: bool) -> sa.Update:
    """``UPDATE jobs SET <columns> WHERE id = :w_id AND state IN (:w_state0 …) [AND lease_id = :w_lease]``, with
    the new values as ``v_<column>`` (``_update_params``); run on the driver, one row or many."""
    condition = sa.and_(
        jobs.c.id == sa.bindparam("w_id"), sa.or_(*(jobs.c.state == sa.bindparam(f"w_state{i}") for i in range(states)))
    )
    if with_lease:
        condition = sa.and_(condition, jobs.c.lease_id == sa.bindparam("w_lease"))
    return jobs.update().where(condition).values({name: sa.bindparam(f"v_{name}") for name in columns})


def _update_params(job_id: str, states: Sequence[str], lease: str | None, changes: Row) -> Row:
    row = {f"v_{name}": value for name, value in changes.items()}
    row.update({f"w_state{i}": state for i, state in enumerate(states)}, w_id=job_id)
    if lease is not None:
        row["w_lease"] = lease
    return row


class CoordinatorRepo:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.row_locks = engine.dialect.name == "postgresql"
        """Claims lock the rows they look at (``FOR UPDATE SKIP LOCKED``): replicas on one PostgreSQL never
        look at the same queued job at once. SQLite has one writer (one process) and needs none."""
        self._driver_statement = functools.lru_cache(maxsize=256)(self._compile)

    def _compile(self, build: Callable[..., sa.ClauseElement], *args: Any) -> DriverStatement:
        return DriverStatement.compile(build(*args), self.engine.dialect)

    def _driver(self, build: Callable[..., sa.ClauseElement], *args: Any) -> DriverStatement:
        """``build(*args)`` compiled for this engine once, run on the driver (``aitbc.coordinator.db.driver``)."""
        return self._driver_statement(build, *args)

    # -- api keys --------------------------------------------------------------
    def insert_api_key(self, key: ApiKey) -> None:
        with self.engine.begin() as conn:
            conn.execute(api_keys.insert().values(**key.to_row()))

    def get_api_key(self, key_id: str) -> ApiKey | None:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        return None if found is None else api_key_from_row(found)

    def list_api_keys(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at_ms)).mappings()
            return [api_key_from_row(r) for r in rows]

    def revoke_api_key(self, key_id: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(revoked=True)).rowcount == 1

    # -- miners ----------------------------------------------------------------
    def upsert_miner(self, address: str, body: MinerRegistration, now_ms: int) -> None:
        registration = registration_to_json(body)
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

    def get_miner(self, address: str) -> tuple[MinerRegistration, int] | None:
        """A registered miner's registration and when a replica last heard from it."""
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(miners.c.registration, miners.c.last_seen_ms).where(miners.c.address == address)
            ).first()
        return None if found is None else (registration_from_json(found[0]), int(found[1]))

    def miners_seen_since(self, since_ms: int) -> list[tuple[str, Any, int]]:
        """(address, registration as stored, last seen) of the miners some replica heard from since ``since_ms``."""
        query = sa.select(miners.c.address, miners.c.registration, miners.c.last_seen_ms).where(
            miners.c.last_seen_ms >= since_ms
        )
        with self.engine.connect() as conn:
            return [(str(a), r, int(t)) for a, r, t in conn.execute(query)]

    def touch_miners(self, seen: Sequence[tuple[str, int]]) -> None:
        """Record when this replica last heard from each miner (never moving a time back)."""
        if not seen:
            return
        statement = (
            miners.update()
            .where(miners.c.address == sa.bindparam("a"), miners.c.last_seen_ms < sa.bindparam("t"))
            .values(last_seen_ms=sa.bindparam("t"))
        )
        with self.engine.begin() as conn:
            conn.execute(statement, [{"a": a, "t": t} for a, t in seen])

    def active_job_ids(self, miner: str) -> set[str]:
        """The jobs ``miner`` holds a lease on, whichever replica handed them out."""
        query = sa.select(jobs.c.id).where(jobs.c.state.in_(["assigned", "running"]), jobs.c.miner == miner)
        with self.engine.connect() as conn:
            return {str(j) for j in conn.execute(query).scalars()}

    def load_miners(self) -> list[tuple[str, MinerRegistration]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(miners.c.address, miners.c.registration)).all()
        return [(address, registration_from_json(registration)) for address, registration in rows]

    # -- jobs ------------------------------------------------------------------
    def insert_job(self, job: JobRecord) -> None:
        self.insert_jobs([job])

    def insert_jobs(self, records: Sequence[JobRecord]) -> None:
        """Insert jobs in one transaction (the submit path's group commit); all or none (on the driver)."""
        try:
            with self.engine.begin() as conn:
                self._driver(jobs.insert).execute_many(conn, [job_to_row(job) for job in records])
        except Exception as exc:
            # The same job id sent twice at once (or through two replicas): a 409, not a 500.
            if not is_integrity_error(exc, self.engine.dialect):
                raise
            if "unique" not in str(exc).lower() and "duplicate" not in str(exc).lower():
                raise
            which = f"job {records[0].id}" if len(records) == 1 else "a job of this group"
            raise JobRuleViolation(f"{which} was already submitted", reason="duplicate_job") from None

    def get_job(self, job_id: str) -> JobRecord | None:
        return self.get_jobs([job_id]).get(job_id)

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """The jobs of ``job_ids`` that exist, by id (on the driver, ``BY_ID_CHUNK`` ids a query)."""
        return {str(r["id"]): job_from_row(r) for r in self._rows_by_id(job_ids, None)}

    def get_payments(self, job_ids: Sequence[str]) -> dict[str, JobPayment]:
        """The payment columns of the jobs of ``job_ids`` that exist, by id (as ``get_jobs``)."""
        return {str(r["id"]): JobPayment(**r) for r in self._rows_by_id(job_ids, JobPayment.__slots__)}

    def _rows_by_id(self, job_ids: Sequence[str], columns: tuple[str, ...] | None) -> list[dict[str, Any]]:
        ids = list(dict.fromkeys(job_ids))
        rows: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            for start in range(0, len(ids), BY_ID_CHUNK):
                chunk = ids[start : start + BY_ID_CHUNK]
                statement = self._driver(_jobs_by_id, len(chunk), columns)
                rows += statement.fetch(conn, {f"id{i}": job_id for i, job_id in enumerate(chunk)})
        return rows

    def list_jobs(
        self,
        api_key_id: str | None,
        state: str | None,
        model: str | None,
        limit: int,
        before: tuple[int, int, str] | None,
    ) -> list[JobRecord]:
        """Newest first: by acceptance time, then acceptance order within the millisecond, then id;
        ``before``: the (``created_at_ms``, ``created_seq``, id) of the last job of the previous page."""
        query = sa.select(jobs)
        if api_key_id is not None:
            query = query.where(jobs.c.api_key_id == api_key_id)
        if state is not None:
            query = query.where(jobs.c.state == state)
        if model is not None:
            query = query.where(jobs.c.model == model)
        if before is not None:
            order = sa.tuple_(jobs.c.created_at_ms, jobs.c.created_seq, jobs.c.id)
            query = query.where(order < sa.tuple_(*before))
        query = query.order_by(jobs.c.created_at_ms.desc(), jobs.c.created_seq.desc(), jobs.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [job_from_row(r) for r in conn.execute(query).mappings()]

    def find_claimable(self, models: Sequence[str], now_ms: int, limit: int) -> list[JobRecord]:
        with self.engine.connect() as conn:
            return self._scan_queue(conn, models, now_ms, limit)

    def _scan_queue(self, conn: sa.Connection, models: Sequence[str], now_ms: int, limit: int) -> list[JobRecord]:
        """The oldest ``limit`` claimable jobs of ``models`` (locked for the transaction, with row locks)."""
        if not models:
            return []
        statement = self._driver(_find_claimable, limit, len(models), self.row_locks)
        params: dict[str, Any] = {f"m{i}": model for i, model in enumerate(models)}
        params["now_ms"] = now_ms
        return [job_from_row(r) for r in statement.fetch(conn, params)]

    def claim_queued(
        self, models: Sequence[str], now_ms: int, count: int, scan: int, choose: ClaimChoice
    ) -> list[JobRecord]:
        """Claim up to ``count`` queued jobs of ``models``, oldest first, in one transaction: ``choose`` gives
        for each candidate the lifecycle, served digest and unit price to write, or None to pass it over. The
        oldest ``count`` are looked at first, then (if some were passed over) the oldest ``scan``."""
        if self.row_locks:  # look, choose and take in one transaction, holding the rows looked at
            with self.engine.begin() as conn:
                chosen = self._choose_claims(conn, models, now_ms, count, scan, choose)
                return [job for job, changes in chosen if self._update_job_if(conn, job.id, ("queued",), None, changes)]
        return self.take_claims(self.choose_claims(models, now_ms, count, scan, choose))

    def choose_claims(
        self, models: Sequence[str], now_ms: int, count: int, scan: int, choose: ClaimChoice
    ) -> list[tuple[JobRecord, Row]]:
        """The looking half of ``claim_queued`` without row locks (SQLite): which queued jobs to take and
        what to write. It only reads, so it can run beside the writer; ``take_claims`` then takes those still
        queued (a job claimed or cancelled meanwhile is simply not taken)."""
        assert not self.row_locks, "with row locks, look and take in one transaction (claim_queued)"
        with self.engine.connect() as conn:
            return self._choose_claims(conn, models, now_ms, count, scan, choose)

    def take_claims(self, chosen: Sequence[tuple[JobRecord, Row]]) -> list[JobRecord]:
        """The jobs of ``chosen`` (``choose_claims``) claimed in one transaction: those still queued."""
        won = self._update_jobs_if([(job.id, ("queued",), None, changes) for job, changes in chosen], lambda _: [])
        return [job for (job, _), ok in zip(chosen, won, strict=True) if ok]

    def _choose_claims(
        self, conn: sa.Connection, models: Sequence[str], now_ms: int, count: int, scan: int, choose: ClaimChoice
    ) -> list[tuple[JobRecord, Row]]:
        chosen: list[tuple[JobRecord, Row]] = []
        seen: set[str] = set()
        for limit in (count, scan):
            found = self._scan_queue(conn, models, now_ms, limit)
            for job in found:
                if len(chosen) >= count or job.id in seen:
                    continue
                seen.add(job.id)
                choice = choose(job)
                if choice is not None:
                    lifecycle, digest, price = choice
                    changes = {
                        **lifecycle_columns(lifecycle),
                        "served_digest": digest,
                        "assigned_unit_price": price,
                    }
                    chosen.append((replace(job, **changes), changes))
            if len(chosen) >= count or len(found) < limit:  # enough, or the queue holds no more
                break
        return chosen

    def _update_jobs_if(
        self,
        updates: Sequence[tuple[str, Sequence[str], str | None, Row]],
        receipts_of: Callable[[list[bool]], list[Row]],
    ) -> list[bool]:
        """``_update_job_if`` for each and the receipts ``receipts_of`` gives for the outcome, in one
        transaction; the updates go as one statement when they share their columns (and whether a lease is
        expected). Per update, whether it applied."""
        if not updates:
            return []
        shapes = {(tuple(changes), len(states), lease is not None) for _, states, lease, changes in updates}
        if len(shapes) == 1:
            ((columns, n_states, with_lease),) = shapes
            params = [_update_params(*update) for update in updates]
            try:
                with self.engine.begin() as conn:
                    grouped = self._driver(_grouped_update, columns, n_states, with_lease)
                    if grouped.execute_many(conn, params) != len(updates):
                        raise _NotAllMatched
                    won = [True] * len(updates)
                    if rows := receipts_of(won):
                        self._driver(receipts.insert).execute_many(conn, rows)
                    return won
            except _NotAllMatched:  # some job changed meanwhile: rolled back; find which, one by one
                pass
        with self.engine.begin() as conn:
            won = [
                self._update_job_if(conn, job_id, states, lease, changes) for job_id, states, lease, changes in updates
            ]
            if rows := receipts_of(won):
                self._driver(receipts.insert).execute_many(conn, rows)
            return won

    def transition_job(
        self,
        job_id: str,
        expect_state: Sequence[str],
        expect_lease: str | None,
        after: JobLifecycle,
        served_digest: str | None = None,
        unit_price: int | None = None,
    ) -> bool:
        """Write ``after`` only if the job is still in one of ``expect_state`` under ``expect_lease``
        (and, on a claim, the digest and unit price of the model that serves it)."""
        changes = lifecycle_columns(after)
        if served_digest is not None:
            changes["served_digest"] = served_digest
        if unit_price is not None:
            changes["assigned_unit_price"] = unit_price
        with self.engine.begin() as conn:
            return self._update_job_if(conn, job_id, expect_state, expect_lease, changes)

    def _update_job_if(
        self, conn: sa.Connection, job_id: str, expect_state: Sequence[str], expect_lease: str | None, changes: Row
    ) -> bool:
        """Write ``changes`` (JSON columns as text) only if the job is in one of ``expect_state`` [under
        ``expect_lease``]; whether it was."""
        statement = self._driver(_grouped_update, tuple(changes), len(expect_state), expect_lease is not None)
        return statement.execute_many(conn, [_update_params(job_id, expect_state, expect_lease, changes)]) == 1

    def complete_job(self, job: JobRecord, expect_lease: str, receipt: ReceiptRecord) -> bool:
        """Mark the job completed with its result and store its one receipt, atomically; False if someone
        else won."""
        return self.complete_jobs([(job, expect_lease, receipt)])[0]

    def complete_jobs(self, done: Sequence[tuple[JobRecord, str, ReceiptRecord]]) -> list[bool]:
        """``complete_job`` for several jobs in one transaction (a miner's batch of results): each job is
        completed with its receipt only if it still holds its lease; per job, whether it was."""
        updates = []
        for job, expect_lease, _ in done:
            changes = lifecycle_columns(job.lifecycle())
            changes["result"] = None if job.result is None else json_text(job.result)
            updates.append((job.id, ("assigned", "running"), expect_lease, changes))
        return self._update_jobs_if(
            updates, lambda won: [receipt_to_row(r) for (_, _, r), ok in zip(done, won, strict=True) if ok]
        )

    # The sweeper's queries run four times a second: built once (see the note at the top).
    def jobs_with_expired_leases(self, now_ms: int) -> list[JobRecord]:
        with self.engine.connect() as conn:
            return [job_from_row(r) for r in conn.execute(_EXPIRED_LEASES, {"now_ms": now_ms}).mappings()]

    def jobs_past_ttl(self, now_ms: int) -> list[JobRecord]:
        with self.engine.connect() as conn:
            return [job_from_row(r) for r in conn.execute(_PAST_TTL, {"now_ms": now_ms}).mappings()]

    def sweep_candidates(self, now_ms: int) -> tuple[list[JobRecord], list[JobRecord], int | None]:
        """The sweeper's one read: ``jobs_with_expired_leases``, ``jobs_past_ttl``, and the earliest lease
        end or queued job's expiry still ahead (None when there is none), on one connection."""
        with self.engine.connect() as conn:
            leases = [job_from_row(r) for r in conn.execute(_EXPIRED_LEASES, {"now_ms": now_ms}).mappings()]
            ttl = [job_from_row(r) for r in conn.execute(_PAST_TTL, {"now_ms": now_ms}).mappings()]
            ends = [conn.execute(_NEXT_LEASE_END).scalar(), conn.execute(_NEXT_TTL_END).scalar()]
        upcoming = [int(t) for t in ends if t is not None]
        return leases, ttl, min(upcoming) if upcoming else None

    def count_by_state(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {state: int(n) for state, n in conn.execute(_COUNT_BY_STATE)}

    # -- receipts --------------------------------------------------------------
    def get_receipt(self, job_id: str) -> ReceiptRecord | None:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(receipts).where(receipts.c.job_id == job_id)).mappings().first()
        return None if found is None else receipt_from_row(found)

    def count_receipts(self, job_id: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(receipts).where(receipts.c.job_id == job_id)
                ).scalar_one()
            )

    # -- payments ----------------------------------------------------------------
    def jobs_due_for_payment(self, retry_before_ms: int, limit: int) -> list[DuePayment]:
        """Paid jobs whose escrow needs a tx: finished and not yet paid out, or sent but not seen on chain
        (the last attempt before ``retry_before_ms``)."""
        terminal = ["completed", "failed", "cancelled", "expired"]
        query = (
            sa.select(jobs.c.id, jobs.c.state, jobs.c.payment_state, jobs.c.payment_tx, jobs.c.payment_updated_ms)
            .where(
                sa.or_(
                    sa.and_(jobs.c.payment_state == "escrowed", jobs.c.state.in_(terminal)),
                    jobs.c.payment_state.in_(["settling", "refunding", "settle_refused"]),
                ),
                sa.or_(jobs.c.payment_updated_ms.is_(None), jobs.c.payment_updated_ms < retry_before_ms),
            )
            .order_by(jobs.c.finished_at_ms)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [due_payment_from_row(r) for r in conn.execute(query).mappings()]

    def get_receipts(self, job_ids: Sequence[str]) -> dict[str, StoredReceipt]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(receipts).where(receipts.c.job_id.in_(list(job_ids)))).mappings()
            return {r["job_id"]: stored_receipt_from_row(r) for r in rows}

    def set_payment_states(self, updates: Sequence[tuple[str, Sequence[str], Row]]) -> list[str]:
        """Apply ``(job_id, expected payment states, changes)`` in one transaction; the ids that matched."""
        matched: list[str] = []
        with self.engine.begin() as conn:
            for job_id, expect, changes in updates:
                statement = (
                    jobs.update().where(jobs.c.id == job_id, jobs.c.payment_state.in_(list(expect))).values(**changes)
                )
                if conn.execute(statement).rowcount == 1:
                    matched.append(job_id)
        return matched

    def get_chain_cursor(self, name: str) -> int:
        with self.engine.connect() as conn:
            seq = conn.execute(sa.select(chain_cursor.c.event_seq).where(chain_cursor.c.name == name)).scalar()
        return 0 if seq is None else int(seq)

    def apply_chain_events(self, name: str, seq: int | None, closed: Sequence[tuple[str, Row]]) -> None:
        """Record escrows the chain closed (``(job_id, payment changes)``) and advance the cursor to ``seq``
        (None: leave it), atomically, so a restart resumes exactly after the last event applied."""
        with self.engine.begin() as conn:
            # Events of one kind carry the same columns: one executemany per column set, not a statement per job.
            groups: dict[tuple[str, ...], list[Row]] = {}
            for job_id, changes in closed:
                groups.setdefault(tuple(sorted(changes)), []).append({"_job_id": job_id, **changes})
            for columns, params in groups.items():
                statement = (
                    jobs.update()
                    .where(jobs.c.id == sa.bindparam("_job_id"), jobs.c.payment_state.is_not(None))
                    .values({c: sa.bindparam(c) for c in columns})
                )
                conn.execute(statement, params)
            if seq is None:
                return
            updated = conn.execute(
                chain_cursor.update().where(chain_cursor.c.name == name).values(event_seq=seq)
            ).rowcount
            if not updated:
                conn.execute(chain_cursor.insert().values(name=name, event_seq=seq))
