"""Engine creation and migrations: SQLite (WAL) by default, PostgreSQL by URL (see ``aitbc.runtime.db``)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from aitbc.runtime.db import create_db_engine, run_migrations

__all__ = ["MIGRATIONS_DIR", "create_db_engine", "migrate"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the latest Alembic revision (idempotent)."""
    run_migrations(engine, MIGRATIONS_DIR)
