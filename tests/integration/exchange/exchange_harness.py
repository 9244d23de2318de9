"""Helpers for the exchange tests: an app on a fresh SQLite database (in process through Starlette's
TestClient, lifespan and all), users with sessions, funding through the same command path as deposits."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from aitbc.exchange.app import create_app
from aitbc.exchange.config import ExchangeSettings
from aitbc.exchange.service import ExchangeService
from aitbc.market.trading import Deposit, compute_state_hash

AIT = 1_000_000
_refs = itertools.count(1)


class Harness:
    def __init__(self, client: TestClient, service: ExchangeService) -> None:
        self.client = client
        self.service = service

    def user(self, name: str, password: str = "correct horse battery") -> dict[str, Any]:
        r = self.client.post("/api/v1/users", json={"username": name, "password": password})
        assert r.status_code == 201, r.text
        r = self.client.post("/api/v1/sessions", json={"username": name, "password": password})
        assert r.status_code == 201, r.text
        body = r.json()
        return {"id": body["user_id"], "token": body["token"], "h": {"Authorization": f"Bearer {body['token']}"}}

    def fund(self, user: dict[str, Any], btc: int = 0, ait: int = 0) -> None:
        for asset, amount in (("BTC", btc), ("AITBC", ait)):
            if amount:
                self.run(self.service.submit(Deposit(str(user["id"]), asset, amount, f"test-{next(_refs)}")))

    def run(self, coro: Any) -> Any:
        portal = self.client.portal
        assert portal is not None

        async def call() -> Any:
            return await coro

        return portal.call(call)

    def balances(self, user: dict[str, Any]) -> dict[str, Any]:
        r = self.client.get("/api/v1/balances", headers=user["h"])
        assert r.status_code == 200, r.text
        return dict(r.json()["balances"])

    def state(self) -> str:
        return compute_state_hash(self.service.engine)

    def check_invariants(self) -> None:
        self.run(self.service.check_all_invariants())


def settings_for(tmp: Path, **overrides: Any) -> ExchangeSettings:
    base: dict[str, Any] = {
        "data_dir": tmp,
        "password_opslimit": 1,
        "password_memlimit": 8 * 1024 * 1024,
        "market": {"tick_size": 10, "lot_size": 100_000, "taker_fee_bps": 10},
    }
    base.update(overrides)
    return ExchangeSettings(**base)


@contextmanager
def running(settings: ExchangeSettings, service: ExchangeService | None = None) -> Iterator[Harness]:
    service = service or ExchangeService(settings)
    app = create_app(settings, service)
    with TestClient(app) as client:
        harness = Harness(client, service)
        yield harness
        harness.check_invariants()
