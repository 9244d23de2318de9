"""Fixtures for the coordinator integration tests (the processes and helpers live in ``coordinator_harness``).

``shared_stack`` (session) is one SQLite coordinator (lease 2 s) with two instant echo miners; the
``stack`` fixture hands it to one test and removes that test's fake miners and extra miner
processes afterwards (printing the logs if the test failed). ``postgres`` is a throwaway
PostgreSQL server for the whole session (see tests/support/postgres.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from coordinator_harness import SHARED_LEASE_SECONDS, Stack, launch_stack

if TYPE_CHECKING:
    from support.postgres import PostgresServer

TESTS_DIR = str(Path(__file__).resolve().parents[2])


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = launch_stack(tmp_path_factory.mktemp("shared-coordinator"), lease_seconds=SHARED_LEASE_SECONDS)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def stack(shared_stack: Stack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The shared stack for one test; its fake miners and extra miner processes end with the test."""
    shared_stack.coordinator.ensure_running()
    try:
        yield shared_stack
    finally:
        shared_stack.cleanup_test_objects()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(shared_stack.diagnostics())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if TESTS_DIR not in sys.path:
        sys.path.insert(0, TESTS_DIR)  # for tests/support
    from support.postgres import PostgresServer

    with PostgresServer.start() as server:
        yield server
