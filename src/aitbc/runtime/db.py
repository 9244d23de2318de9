"""SQLAlchemy engines and Alembic migrations for every service with a database (coordinator, pool hub).

SQLite (WAL) by default, PostgreSQL by URL. Each service keeps its own migrations directory
(and its own Alembic version table, set in its ``env.py``), so two services may share one database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _json_dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # e.g. an integer beyond 64 bits, which the stdlib encoder handles
        return json.dumps(value)


# JSON columns are written with orjson: several times faster than json.dumps on the submit path.
# (They are read with the stdlib: orjson would silently turn an integer beyond 64 bits into a float.)
_JSON = {"json_serializer": _json_dumps}


def create_db_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False}, pool_size=4, max_overflow=4, **_JSON)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True, **_JSON)


def run_migrations(engine: sa.Engine, migrations_dir: Path) -> None:
    """Bring the schema to the latest Alembic revision of ``migrations_dir`` (idempotent)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
