"""The statements every job runs several times, executed on the database driver's own cursor.

They are still built with SQLAlchemy Core (one definition for SQLite and PostgreSQL) and compiled once
per dialect, but run on the DBAPI cursor of the SQLAlchemy connection (same connection, same
transaction): SQLAlchemy's per-execution and per-row Python (parameter processing, result rows, JSON
type processors) cost as much as SQLite's own work on this path. Measured on one core (job rows of the
settlement bench): inserting 67 µs a row through SQLAlchemy against 40 µs on the cursor; reading a job
back 53 µs against 26 µs with its JSON decoded by msgspec.

The rows these statements take and give are plain: JSON columns go in as JSON text (PostgreSQL casts it;
the compiled statement carries the cast) and come out as text on SQLite or already decoded on PostgreSQL;
``aitbc.coordinator.db.records`` maps both. A constraint violation raises the driver's ``IntegrityError``,
which ``is_integrity_error`` recognises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler

Params = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A statement compiled for one dialect: its SQL, and its parameters' order for positional styles."""

    sql: str
    order: tuple[str, ...] | None
    """The bind names in order (SQLite's ``?`` style); None for named styles (psycopg's ``%(name)s``)."""
    fixed: dict[str, Any]
    """Values the statement itself carries (``state == "queued"``), by bind name."""

    @classmethod
    def compile(cls, statement: sa.ClauseElement, dialect: sa.Dialect) -> DriverStatement:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        fixed = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
        return cls(compiled.string, order, fixed)

    def _bind(self, values: Params) -> Sequence[Any] | Params:
        if self.order is None:
            return {**self.fixed, **values} if self.fixed else values
        fixed = self.fixed
        return tuple(fixed[name] if name in fixed else values[name] for name in self.order)

    def execute_many(self, conn: sa.Connection, rows: Sequence[Params]) -> int:
        """Run the statement once per row; the number of rows it changed in all."""
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            bound: list[Any] = [self._bind(row) for row in rows]
            cursor.executemany(self.sql, bound)
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def fetch(self, conn: sa.Connection, values: Params) -> list[dict[str, Any]]:
        """The rows the query gives, each as ``{column: value}``."""
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.sql, self._bind(values))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            cursor.close()


def is_integrity_error(exc: BaseException, dialect: sa.Dialect) -> bool:
    """A constraint violation, raised by SQLAlchemy or by the driver itself (every DBAPI module has one
    ``IntegrityError``: sqlite3's, psycopg's with ``UniqueViolation`` below it)."""
    return isinstance(exc, sa.exc.IntegrityError | dialect.loaded_dbapi.IntegrityError)
