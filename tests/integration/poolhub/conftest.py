"""Fixtures for the pool hub's integration tests: throwaway PostgreSQL and Redis servers (one each per session,
see tests/support/), and ``stores`` — one parametrized fixture for each backend (SQLite, PostgreSQL, Redis +
PostgreSQL) whose ``open()`` opens a registry on fresh stores of its own (again and again on the same stores, to
test what survives a restart). Without the binaries those cases FAIL with an install hint (AITBC_SKIP_POSTGRES=1
/ AITBC_SKIP_REDIS=1 skip them instead).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from poolhub_harness import BACKENDS, Stores, make_stores

from support.postgres import PostgresServer
from support.redis import RedisServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer.start() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer.start() as server:
        yield server


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    s = make_stores(request.param, request, tmp_path)
    try:
        yield s
    finally:
        s.close_all()


# The coordinator's harness (processes, fake miners) is reused by the coordinator + pool hub tests here.
COORDINATOR_TESTS = str(Path(__file__).resolve().parents[1] / "coordinator")
if COORDINATOR_TESTS not in sys.path:
    sys.path.append(COORDINATOR_TESTS)
