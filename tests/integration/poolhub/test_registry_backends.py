"""One suite, every registry backend: SQLite, PostgreSQL, and Redis (live state) + PostgreSQL (the rest)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from poolhub_harness import Stores, make_stores

from aitbc.market.scoring import MinerStats, Outcome, ScoringConfig, apply_outcome
from aitbc.poolhub.registry import Heartbeat, OutcomeReport

CONFIG = ScoringConfig()
DIGEST = "sha256:" + "a" * 64


def registration(price: int = 2, region: str = "eu") -> dict[str, object]:
    return {
        "models": [{"name": "llama3.2", "digest": DIGEST, "kind": "text", "unit_price": price}],
        "region": region,
        "hardware": {"gpu_name": "RTX 4090", "vram_gb": 24.0},
        "max_concurrency": 2,
    }


def now() -> int:
    return int(time.time() * 1000)


def test_register_update_keeps_stats_and_first_registration(stores: Stores) -> None:
    registry = stores.open()
    t0 = now()
    record = registry.upsert_miner("ait1a", registration(), 100, 2, t0)
    assert record.state.stake == 100 and record.state.max_concurrency == 2
    assert record.state.offer.models[0].unit_price == 2 and record.state.offer.vram_gb == 24.0
    assert record.state.stats.reliability == CONFIG.prior_reliability and record.state.stats.jobs == 0
    stats = apply_outcome(record.state.stats, Outcome.COMPLETED, t0, CONFIG, 300.0, 25.0)
    assert registry.record_outcome(OutcomeReport("ait1a", "job_1", 1, Outcome.COMPLETED, t0, 300.0, 25.0), stats)

    updated = registry.upsert_miner("ait1a", registration(price=3, region="us"), 50, 4, t0 + 1000)
    assert updated.state.registered_at_ms == t0
    assert updated.state.offer.region == "us" and updated.state.offer.models[0].unit_price == 3
    assert updated.state.stats == stats  # a re-registration does not reset measured statistics
    assert [a["action"] for a in registry.get_audit("ait1a", 10)] == ["updated", "registered"]


def test_heartbeats_set_live_state_and_the_online_set(stores: Stores) -> None:
    registry = stores.open()
    t0 = now()
    registry.upsert_miner("ait1a", registration(), 0, 2, t0)
    registry.upsert_miner("ait1b", registration(), 0, 2, t0)
    registry.record_heartbeats([Heartbeat("ait1a", t0 + 500, 1), Heartbeat("ait1nobody", t0 + 500, 1)])
    by_miner = {r.state.miner: r.state for r in registry.load_miners()}
    assert set(by_miner) == {"ait1a", "ait1b"}  # an unknown miner's heartbeat is ignored
    assert by_miner["ait1a"].last_seen_ms == t0 + 500 and by_miner["ait1a"].load == 1
    assert by_miner["ait1b"].last_seen_ms == t0 and by_miner["ait1b"].load == 0
    registry.record_heartbeats([Heartbeat("ait1a", t0 + 20_000)])  # no load given: the load is kept
    assert {r.state.miner: r.state.load for r in registry.load_miners()}["ait1a"] == 1
    assert registry.online_miners(t0 + 20_000, 15_000) == {"ait1a"}
    assert registry.online_miners(t0 + 10_000, 15_000) == {"ait1a", "ait1b"}


def test_outcomes_are_stored_once_with_history(stores: Stores) -> None:
    registry = stores.open()
    t0 = now()
    registry.upsert_miner("ait1a", registration(), 0, 1, t0)
    stats = MinerStats(reliability=CONFIG.prior_reliability)
    for i, outcome in enumerate([Outcome.COMPLETED, Outcome.FAILED, Outcome.TIMED_OUT, Outcome.RECEIPT_REJECTED]):
        stats = apply_outcome(stats, outcome, t0 + i, CONFIG, 100.0 if outcome == Outcome.COMPLETED else None)
        assert registry.record_outcome(OutcomeReport("ait1a", f"job_{i}", 1, outcome, t0 + i, 100.0), stats)
    final = stats
    # the same report again (a retried request) changes nothing
    again = apply_outcome(stats, Outcome.FAILED, t0 + 9, CONFIG)
    assert not registry.record_outcome(OutcomeReport("ait1a", "job_1", 1, Outcome.FAILED, t0 + 9), again)
    (record,) = registry.load_miners()
    assert record.state.stats == final
    assert (final.completed, final.failed, final.timed_out, final.receipt_rejected) == (1, 1, 1, 1)
    history = registry.get_outcomes("ait1a", 10)
    assert [h["outcome"] for h in history] == ["receipt_rejected", "timed_out", "failed", "completed"]
    assert history[0]["reliability_after"] == pytest.approx(final.reliability)
    assert len(registry.get_outcomes("ait1a", 2)) == 2


def test_everything_survives_a_restart(stores: Stores) -> None:
    registry = stores.open()
    t0 = now()
    registry.upsert_miner("ait1a", registration(), 7, 2, t0)
    registry.record_heartbeats([Heartbeat("ait1a", t0 + 100, 2)])
    stats = apply_outcome(MinerStats(), Outcome.COMPLETED, t0, CONFIG, 250.0, 40.0)
    registry.record_outcome(OutcomeReport("ait1a", "job_1", 1, Outcome.COMPLETED, t0, 250.0, 40.0), stats)
    registry.close()
    stores.opened.remove(registry)

    reopened = stores.open()
    (record,) = reopened.load_miners()
    assert record.state.stake == 7 and record.state.stats == stats
    assert record.state.last_seen_ms == t0 + 100 and record.state.load == 2
    assert len(reopened.get_outcomes("ait1a", 10)) == 1


def test_remove_miner(stores: Stores) -> None:
    registry = stores.open()
    t0 = now()
    registry.upsert_miner("ait1a", registration(), 0, 1, t0)
    assert registry.remove_miner("ait1a", t0 + 1)
    assert not registry.remove_miner("ait1a", t0 + 2)
    assert registry.load_miners() == []
    assert registry.online_miners(t0 + 2, 15_000) == set()
    registry.record_heartbeats([Heartbeat("ait1a", t0 + 3)])  # a late heartbeat does not resurrect it
    assert registry.load_miners() == []
    assert [a["action"] for a in registry.get_audit("ait1a", 10)] == ["removed", "registered"]


def test_redis_live_state_expires_on_its_own(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Redis only: live state expires on its own (SQL simply keeps the last heartbeat)."""
    stores = make_stores("redis+postgresql", request, tmp_path)
    request.addfinalizer(stores.close_all)
    registry = stores.open(live_ttl_ms=300)
    t0 = now()
    registry.upsert_miner("ait1a", registration(), 0, 1, t0)
    registry.record_heartbeats([Heartbeat("ait1a", now(), 1)])
    assert registry.load_miners()[0].state.load == 1
    deadline = time.monotonic() + 10.0
    while (record := registry.load_miners()[0]).state.last_seen_ms != 0:  # the live hash expires (TTL 300 ms)
        assert time.monotonic() < deadline, "the live state never expired"
        time.sleep(0.05)
    assert now() - t0 >= 300, "the live state expired before its TTL"
    assert record.state.load == 0
    assert record.state.stake == 0 and record.registration["region"] == "eu"  # the durable part did not
