"""A throwaway PostgreSQL server for tests (``aitbc.devnet.postgres.PostgresServer``, shared with
``aitbc devnet up --postgres``).

If the PostgreSQL binaries are missing, ``require_postgres_bin`` fails the test with a message saying how
to install them — unless ``AITBC_SKIP_POSTGRES=1``, which skips instead.

    with PostgresServer.start() as pg:
        url = pg.create_database("coordinator")   # postgresql+psycopg://postgres@127.0.0.1:PORT/coordinator
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aitbc.devnet import postgres as server
from aitbc.devnet.postgres import INSTALL_HINT, SUPERUSER, find_postgres_bin, server_user

__all__ = [
    "SKIP_ENV",
    "SUPERUSER",
    "PostgresServer",
    "find_postgres_bin",
    "require_postgres_bin",
    "server",
    "server_user",
]

SKIP_ENV = "AITBC_SKIP_POSTGRES"


def require_postgres_bin() -> Path:
    """The binaries' directory, or fail (skip only with AITBC_SKIP_POSTGRES=1)."""
    found = find_postgres_bin()
    if found is None:
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(f"{SKIP_ENV}=1 and no PostgreSQL binaries")
        pytest.fail(INSTALL_HINT + f", or set {SKIP_ENV}=1 to skip the PostgreSQL tests.", pytrace=False)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(f"{SKIP_ENV}=1 and no psycopg driver")
        pytest.fail('the psycopg driver is missing: .venv/bin/pip install "psycopg[binary]"', pytrace=False)
    return found


class PostgresServer(server.PostgresServer):
    @classmethod
    def default_bin(cls) -> Path:
        return require_postgres_bin()
