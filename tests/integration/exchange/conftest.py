"""Fixtures of the exchange tests; every test ends with the ledger invariants checked against the journal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from exchange_harness import Harness, running, settings_for


@pytest.fixture
def ex(tmp_path: Path) -> Iterator[Harness]:
    with running(settings_for(tmp_path)) as harness:
        yield harness
