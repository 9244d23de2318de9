"""The pool hub test harness: ``Stores`` (a backend's stores, opened as a registry as often as a test needs)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.postgres import PostgresServer
from support.redis import RedisServer

from aitbc.poolhub.redis_registry import RedisRegistry
from aitbc.poolhub.registry import Registry
from aitbc.poolhub.sql_registry import SqlRegistry

BACKENDS = ["sqlite", "postgresql", "redis+postgresql"]
_counter = itertools.count()


@dataclass
class Stores:
    backend: str
    sql_url: str
    redis_url: str | None = None
    prefix: str = ""
    opened: list[Registry] = field(default_factory=list)

    def open(self, live_ttl_ms: int = 60_000) -> Registry:
        registry: Registry
        if self.redis_url is None:
            registry = SqlRegistry(self.sql_url)
        else:
            registry = RedisRegistry(self.redis_url, self.sql_url, live_ttl_ms=live_ttl_ms, prefix=self.prefix)
        self.opened.append(registry)
        return registry

    def close_all(self) -> None:
        for registry in self.opened:
            registry.close()


def make_stores(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    n = next(_counter)
    if backend == "sqlite":
        return Stores(backend, f"sqlite:///{tmp_path / 'poolhub.db'}")
    pg: PostgresServer = request.getfixturevalue("postgres")
    sql_url = pg.create_database(f"poolhub_{int(time.time() * 1000)}_{n}")
    if backend == "postgresql":
        return Stores(backend, sql_url)
    redis: RedisServer = request.getfixturevalue("redis_server")
    return Stores(backend, sql_url, redis.url(), prefix=f"test{n}:")
