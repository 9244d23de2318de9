"""The coordinator's matching policy (``aitbc.coordinator.matching``): who may claim, holds, measured speed."""

from __future__ import annotations

import time
from pathlib import Path

from aitbc.coordinator.config import CoordinatorSettings
from aitbc.coordinator.live import LiveMiner
from aitbc.coordinator.matching import LocalMatchPolicy, PoolHubMatchPolicy, create_match_policy, measured_speed
from aitbc.market.matching import JobRequirements, MinerOffer, ServedModel
from aitbc.market.scoring import Outcome, ScoringConfig

NOW = 1_000_000_000
JOB = JobRequirements(job_type="inference", model="m", input_chars=10, max_tokens=10)
CONFIG = ScoringConfig(exploration_share=0.0)


def live(name: str, price: int, active: int = 0, concurrency: int = 1, model: str = "m") -> LiveMiner:
    offer = MinerOffer(name, (ServedModel(model, "d", "text", price),))
    return LiveMiner(offer, None, concurrency, NOW, active={f"job{i}" for i in range(active)})


def test_only_the_best_ranked_free_miner_may_claim_until_the_hold_ends() -> None:
    policy = LocalMatchPolicy(CONFIG, hold_ms=500)
    cheap, dear = live("ait1cheap", 1), live("ait1dear", 40)
    miners = [cheap, dear]
    assert policy.allows(cheap, JOB, "job_a", NOW, miners, NOW)
    assert not policy.allows(dear, JOB, "job_a", NOW, miners, NOW)
    assert not policy.is_due(NOW + 499)
    assert policy.is_due(NOW + 500)  # the sweeper wakes the claimers then
    assert not policy.is_due(NOW + 501)  # once
    assert policy.allows(dear, JOB, "job_a", NOW, miners, NOW + 500)


def test_a_busy_or_unfit_better_miner_does_not_hold_the_job() -> None:
    policy = LocalMatchPolicy(CONFIG, hold_ms=500)
    dear = live("ait1dear", 40)
    assert policy.allows(dear, JOB, "job_a", NOW, [live("ait1cheap", 1, active=1), dear], NOW)
    assert policy.allows(dear, JOB, "job_a", NOW, [live("ait1other", 1, model="x"), dear], NOW)
    assert policy.allows(dear, JOB, "job_a", NOW, [dear], NOW)


def test_outcomes_change_who_ranks_first() -> None:
    policy = LocalMatchPolicy(CONFIG, hold_ms=500)
    a, b = live("ait1a", 2), live("ait1b", 2)
    assert policy.allows(a, JOB, "job_a", NOW, [a, b], NOW)  # tie: the smaller address
    for i in range(2):
        policy.on_outcome("ait1a", f"job_{i}", 1, Outcome.FAILED)
    assert not policy.allows(a, JOB, "job_b", NOW, [a, b], NOW)
    assert policy.allows(b, JOB, "job_b", NOW, [a, b], NOW)
    ranking = policy.explain(JOB, "job_b", [a, b], NOW)
    assert [c["miner"] for c in ranking["candidates"]] == ["ait1b", "ait1a"]
    assert ranking["policy"] == "local"


def test_measured_speed_uses_the_coordinators_clock() -> None:
    ttft, tps = measured_speed(1_000, 1_250, completion_tokens=100, now_ms=3_250)
    assert ttft == 250 and tps == 50
    # no progress report: the first token is the result itself
    assert measured_speed(1_000, 1_000, 10, 1_400) == (400, None)
    assert measured_speed(None, None, 10, 1_400) == (None, None)


def test_policy_choice_follows_settings(tmp_path: Path) -> None:
    assert isinstance(create_match_policy(CoordinatorSettings(data_dir=tmp_path)), LocalMatchPolicy)
    hub = create_match_policy(CoordinatorSettings(data_dir=tmp_path, poolhub_url="http://127.0.0.1:1"))
    assert isinstance(hub, PoolHubMatchPolicy)
    # an unreachable hub: ranked locally instead
    cheap, dear = live("ait1cheap", 1), live("ait1dear", 40)
    assert hub.allows(cheap, JOB, "job_a", NOW, [cheap, dear], NOW)
    assert not hub.allows(dear, JOB, "job_a", NOW, [cheap, dear], NOW)
    assert hub.hub_errors == 2


class _Waiter:
    def __init__(self, live: LiveMiner) -> None:
        self.live = live


def test_a_new_job_wakes_the_best_ranked_waiting_miner_first() -> None:
    policy = LocalMatchPolicy(CONFIG, hold_ms=500)
    dear, cheap, other = live("ait1dear", 40), live("ait1cheap", 1), live("ait1other", 1, model="x")
    for m in (dear, cheap, other):
        m.last_seen_ms = int(time.time() * 1000)  # order_waiters ranks on the clock
    waiters = [_Waiter(other), _Waiter(dear), _Waiter(cheap), _Waiter(dear)]
    order = [(i, w.live.offer.miner) for i, w in policy.order_waiters("m", waiters)]
    assert order[0] == (2, "ait1cheap")
    assert order[1:3] == [(1, "ait1dear"), (3, "ait1dear")]  # then by waiting time
    # one serving miner: the waiting order stands
    assert [i for i, _ in policy.order_waiters("x", waiters)] == [0, 1, 2, 3]
