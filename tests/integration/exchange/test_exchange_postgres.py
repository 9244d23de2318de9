"""The same exchange on PostgreSQL (same SQLAlchemy tables, same Alembic migrations): trades, the journal
in the same transaction, and a restart that replays to the same state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from exchange_harness import AIT, running, settings_for

from support.postgres import PostgresServer


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer.start() as server:
        yield server


def test_trading_and_replay_on_postgresql(postgres: PostgresServer, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, database_url=postgres.create_database("exchange"))
    assert settings.sqlalchemy_url.startswith("postgresql")
    with running(settings) as h:
        alice, bob = h.user("alice"), h.user("bob")
        h.fund(alice, btc=1_000_000)
        h.fund(bob, ait=50 * AIT)
        for price in (5_000, 5_010, 5_020):
            r = h.client.post(
                "/api/v1/orders", json={"side": "sell", "quantity": 2 * AIT, "price": price}, headers=bob["h"]
            )
            assert r.status_code == 201
        r = h.client.post(
            "/api/v1/orders", json={"side": "buy", "quantity": 5 * AIT, "price": 5_020}, headers=alice["h"]
        )
        assert r.json()["status"] == "filled" and len(r.json()["trades"]) == 3
        state = h.state()
        balances = h.balances(alice)
    with running(settings) as h:
        assert h.state() == state and h.balances(alice) == balances
        assert h.client.get("/api/v1/markets/AITBC-BTC/book").json()["asks"] == [[5_020, AIT]]
