"""The pool hub's scoring engine (``aitbc.market.scoring``): constraints, factors, decay, exploration, the index."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.market.matching import JobRequirements, MinerOffer, ServedModel
from aitbc.market.scoring import (
    FACTORS,
    MinerState,
    MinerStats,
    Outcome,
    ScoringConfig,
    ScoringWeights,
    apply_outcome,
    compute_factors,
    compute_score,
    explain,
    get_best,
    get_eligible_model,
    get_exclusion,
    is_exploration_slot,
    new_stats,
    rank,
)
from aitbc.market.scoring_index import MinerIndex

NOW = 10_000_000_000
DIGEST = "sha256:" + "a" * 64
CONFIG = ScoringConfig(exploration_share=0.0)
JOB = JobRequirements(job_type="inference", model="llama3.2", input_chars=100, max_tokens=50)


def miner(name: str, price: int = 2, **kw: object) -> MinerState:
    fields: dict[str, object] = {
        "offer": MinerOffer(name, (ServedModel("llama3.2", DIGEST, "text", price),), region="eu", vram_gb=24.0),
        "registered_at_ms": NOW - 3_600_000,
        "last_seen_ms": NOW,
        "max_concurrency": 2,
        "stats": MinerStats(completed=30, reliability=0.9, ttft_ms=400.0, tokens_per_s=40.0),
    }
    fields.update(kw)
    return MinerState(**fields)  # type: ignore[arg-type]


def score_of(state: MinerState, config: ScoringConfig = CONFIG) -> float:
    ranked = rank(JOB, [state], NOW, config)
    assert len(ranked) == 1
    return ranked[0].score


# -- hard constraints ------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "job", "expected"),
    [
        (miner("a"), replace(JOB, model="mistral"), "does not serve mistral"),
        (miner("a"), replace(JOB, model_digest="sha256:" + "b" * 64), "with digest"),
        (miner("a"), replace(JOB, min_vram_gb=48.0), "VRAM"),
        (miner("a"), replace(JOB, region="us"), "region eu is not us"),
        (miner("a", price=100), replace(JOB, max_price=1000), "could exceed max_price"),
        (miner("a", last_seen_ms=NOW - 16_000), JOB, "offline"),
        (miner("a", load=2), JOB, "busy: 2 of 2"),
        (miner("a", stake=5), replace(JOB, min_stake=10), "stake 5 is below the minimum 10"),
    ],
)
def test_each_hard_constraint_excludes_with_its_reason(state: MinerState, job: JobRequirements, expected: str) -> None:
    reason = get_exclusion(state, job, NOW, CONFIG)
    assert reason is not None and expected in reason
    ranking = explain(job, [state, miner("ok")] if job.model == "llama3.2" else [state], NOW, CONFIG)
    assert state.miner not in [c.miner for c in ranking.candidates]
    assert [e.reason for e in ranking.excluded if e.miner == state.miner] == [reason]


def test_config_minimum_stake_applies_to_every_job() -> None:
    assert get_exclusion(miner("a", stake=0), JOB, NOW, replace(CONFIG, min_stake=1)) is not None
    assert get_exclusion(miner("a", stake=1), JOB, NOW, replace(CONFIG, min_stake=1)) is None


def test_a_miner_that_stops_heartbeating_drops_out_after_the_timeout() -> None:
    state = miner("a", last_seen_ms=NOW)
    assert get_exclusion(state, JOB, NOW + CONFIG.miner_timeout_ms, CONFIG) is None
    assert get_exclusion(state, JOB, NOW + CONFIG.miner_timeout_ms + 1, CONFIG) is not None


# -- factors ----------------------------------------------------------------------


def test_every_factor_is_used_and_in_unit_range() -> None:
    state = miner("a", stake=500, load=1)
    factors = compute_factors(state, state.offer.models[0], NOW, CONFIG)
    assert set(factors) == set(FACTORS)
    assert all(0.0 <= v <= 1.0 for v in factors.values())
    base = compute_score(factors, CONFIG.weights)
    for name in FACTORS:  # a factor with weight matters: changing it changes the score
        changed = {**factors, name: factors[name] / 2}
        assert compute_score(changed, CONFIG.weights) < base, name


def test_better_miner_ranks_first_with_reasons() -> None:
    good = miner("good", price=1)
    bad = miner("bad", price=5, stats=MinerStats(completed=30, failed=10, reliability=0.4, ttft_ms=2000.0))
    ranked = rank(JOB, [bad, good], NOW, CONFIG)
    assert [c.miner for c in ranked] == ["good", "bad"]
    assert any("success 0.90" in r for r in ranked[0].reasons)
    assert any("400 ms to first token" in r for r in ranked[0].reasons)
    assert any("1/token" in r for r in ranked[0].reasons)


def test_weights_come_from_config() -> None:
    cheap = miner("cheap", price=1, stats=MinerStats(completed=30, reliability=0.5))
    reliable = miner("reliable", price=8, stats=MinerStats(completed=30, reliability=0.99))
    price_heavy = replace(CONFIG, weights=ScoringWeights(success=0.01, price=1.0))
    success_heavy = replace(CONFIG, weights=ScoringWeights(success=1.0, price=0.01))
    assert rank(JOB, [cheap, reliable], NOW, price_heavy)[0].miner == "cheap"
    assert rank(JOB, [cheap, reliable], NOW, success_heavy)[0].miner == "reliable"


def test_invalid_config_is_refused() -> None:
    with pytest.raises(ValueError, match="weights"):
        ScoringWeights(success=-1)
    with pytest.raises(ValueError, match="exploration_share"):
        ScoringConfig(exploration_share=1.5)


# -- outcomes and decay --------------------------------------------------------------


def test_failures_fall_fast_successes_recover_slowly() -> None:
    stats = MinerStats(reliability=0.95)
    failed = apply_outcome(stats, Outcome.FAILED, NOW, CONFIG)
    assert failed.reliability < 0.7
    recovered = failed
    steps = 0
    while recovered.reliability < stats.reliability:
        recovered = apply_outcome(recovered, Outcome.COMPLETED, NOW, CONFIG)
        steps += 1
    assert steps > 5  # one failure costs many successes
    assert apply_outcome(stats, Outcome.RECEIPT_REJECTED, NOW, CONFIG).reliability < failed.reliability
    assert apply_outcome(stats, Outcome.TIMED_OUT, NOW, CONFIG).timed_out == 1


def test_latency_is_a_moving_average_of_completed_jobs_only() -> None:
    stats = apply_outcome(new_stats(CONFIG), Outcome.COMPLETED, NOW, CONFIG, ttft_ms=1000, tokens_per_s=10)
    assert stats.ttft_ms == 1000 and stats.tokens_per_s == 10
    stats = apply_outcome(stats, Outcome.COMPLETED, NOW, CONFIG, ttft_ms=0, tokens_per_s=110)
    assert stats.ttft_ms == pytest.approx(800) and stats.tokens_per_s == pytest.approx(30)
    assert apply_outcome(stats, Outcome.FAILED, NOW, CONFIG, ttft_ms=1).ttft_ms == stats.ttft_ms


def test_a_failing_miner_loses_its_top_place() -> None:
    a, b = miner("a"), miner("b", stats=replace(miner("b").stats, reliability=0.85))
    assert rank(JOB, [a, b], NOW, CONFIG)[0].miner == "a"
    a = replace(a, stats=apply_outcome(a.stats, Outcome.FAILED, NOW, CONFIG))
    assert rank(JOB, [a, b], NOW, CONFIG)[0].miner == "b"


# -- exploration --------------------------------------------------------------------


def test_exploration_share_is_bounded_and_deterministic() -> None:
    ids = [f"job_{i}" for i in range(20_000)]
    share = sum(is_exploration_slot(i, 0.1) for i in ids) / len(ids)
    assert 0.09 < share < 0.11
    assert [is_exploration_slot(i, 0.1) for i in ids[:100]] == [is_exploration_slot(i, 0.1) for i in ids[:100]]
    assert not any(is_exploration_slot(i, 0.0) for i in ids[:1000])


def test_new_miner_ranks_first_only_in_exploration_slots() -> None:
    config = replace(CONFIG, exploration_share=0.2)
    veteran = miner("veteran")
    rookie = miner("rookie", stats=new_stats(config), registered_at_ms=NOW)
    slot = next(f"job_{i}" for i in range(1000) if is_exploration_slot(f"job_{i}", 0.2))
    normal = next(f"job_{i}" for i in range(1000) if not is_exploration_slot(f"job_{i}", 0.2))
    in_slot = rank(JOB, [veteran, rookie], NOW, config, job_id=slot)
    assert [c.miner for c in in_slot] == ["rookie", "veteran"]
    assert in_slot[0].exploration and "exploration slot" in in_slot[0].reasons[0]
    assert [c.miner for c in rank(JOB, [veteran, rookie], NOW, config, job_id=normal)] == ["veteran", "rookie"]


def test_self_reported_numbers_do_not_exist_in_the_input() -> None:
    """The only inputs of a score are the registry's measured stats, price, load, stake and age."""
    state = miner("a")
    claimed = replace(state, offer=replace(state.offer, gpu_name="H100 (trust me, 1000 tokens/s)"))
    assert score_of(claimed) == score_of(state)


# -- properties -----------------------------------------------------------------------

stats_st = st.builds(
    MinerStats,
    reliability=st.floats(0, 1),
    ttft_ms=st.none() | st.floats(0, 60_000),
    tokens_per_s=st.none() | st.floats(0, 5_000),
    completed=st.integers(0, 100),
    failed=st.integers(0, 100),
)
state_st = st.builds(
    lambda name, price, stats, load, conc, stake, age, seen, region, gpu: MinerState(
        offer=MinerOffer(
            name, (ServedModel("llama3.2", DIGEST, "text", price),), region=region, vram_gb=gpu[1], gpu_name=gpu[0]
        ),
        registered_at_ms=NOW - age,
        last_seen_ms=NOW - seen,
        max_concurrency=conc,
        load=min(load, conc),
        stake=stake,
        stats=stats,
    ),
    name=st.text("abcdef", min_size=1, max_size=4),
    price=st.integers(0, 50),
    stats=stats_st,
    load=st.integers(0, 4),
    conc=st.integers(1, 4),
    stake=st.integers(0, 10_000),
    age=st.integers(0, 10**10),
    seen=st.integers(0, 30_000),
    region=st.sampled_from(["eu", "us"]),
    gpu=st.sampled_from([(None, 0.0), ("NVIDIA RTX 4090", 24.0), ("NVIDIA H100", 80.0)]),
)
job_st = st.builds(
    JobRequirements,
    job_type=st.just("inference"),
    model=st.just("llama3.2"),
    input_chars=st.integers(0, 100),
    max_tokens=st.integers(1, 100),
    max_price=st.none() | st.integers(0, 5_000),
    region=st.none() | st.sampled_from(["eu", "us"]),
    min_stake=st.none() | st.integers(0, 5_000),
    min_vram_gb=st.none() | st.sampled_from([8.0, 24.0, 48.0]),
    gpu=st.none() | st.sampled_from(["rtx", "H100"]),
    model_digest=st.none() | st.sampled_from([DIGEST, "sha256:other"]),
)


def _unique(states: list[MinerState]) -> list[MinerState]:
    return list({s.miner: s for s in states}.values())


@settings(max_examples=200, deadline=None)
@given(st.lists(state_st, max_size=12), job_st, st.text(max_size=8), st.floats(0, 1))
def test_excluded_miners_are_never_returned(
    states: list[MinerState], job: JobRequirements, job_id: str, share: float
) -> None:
    states = _unique(states)
    config = replace(CONFIG, exploration_share=share)
    ranked = rank(job, states, NOW, config, job_id)
    excluded = {s.miner for s in states if get_exclusion(s, job, NOW, config) is not None}
    assert not excluded & {c.miner for c in ranked}
    for s in states:  # the index's fast check applies the same rules
        assert (get_eligible_model(s, job, NOW, config) is None) == (s.miner in excluded)
    assert len(ranked) + len(excluded) == len(states)
    assert all(0.0 <= c.score <= 1.0 for c in ranked)


@settings(max_examples=200, deadline=None)
@given(st.lists(state_st, max_size=12), job_st, st.text(max_size=8))
def test_ranking_is_deterministic_whatever_the_input_order(
    states: list[MinerState], job: JobRequirements, job_id: str
) -> None:
    states = _unique(states)
    config = replace(CONFIG, exploration_share=0.3)
    first = rank(job, states, NOW, config, job_id)
    again = rank(job, list(reversed(states)), NOW, config, job_id)
    assert first == again
    assert get_best(job, states, NOW, config, job_id) == (first[0].miner if first else None)


_improvements = {
    "success": lambda s: replace(s, stats=replace(s.stats, reliability=min(1.0, s.stats.reliability + 0.1))),
    # (an unmeasured miner keeps the neutral value: measuring it is not an "improvement" of a number)
    "latency": lambda s: replace(
        s, stats=replace(s.stats, ttft_ms=None if s.stats.ttft_ms is None else s.stats.ttft_ms / 2)
    ),
    "throughput": lambda s: replace(
        s, stats=replace(s.stats, tokens_per_s=None if s.stats.tokens_per_s is None else s.stats.tokens_per_s * 2 + 1)
    ),
    "price": lambda s: replace(
        s, offer=replace(s.offer, models=(replace(s.offer.models[0], unit_price=s.offer.models[0].unit_price // 2),))
    ),
    "load": lambda s: replace(s, load=max(0, s.load - 1)),
    "stake": lambda s: replace(s, stake=s.stake * 2 + 1),
    "age": lambda s: replace(s, registered_at_ms=s.registered_at_ms - 86_400_000),
}


@settings(max_examples=300, deadline=None)
@given(state_st, st.sampled_from(sorted(_improvements)))
def test_score_is_monotonic_in_each_factor(state: MinerState, factor: str) -> None:
    job = JobRequirements(job_type="inference", model="llama3.2", input_chars=10, max_tokens=10)
    state = replace(state, last_seen_ms=NOW, load=min(state.load, state.max_concurrency - 1))
    better = _improvements[factor](state)
    before, after = rank(job, [state], NOW, CONFIG), rank(job, [better], NOW, CONFIG)
    assert len(before) == len(after) == 1
    assert after[0].score >= before[0].score
    assert after[0].factors[factor] >= before[0].factors[factor]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list(Outcome)), max_size=30), st.sampled_from(list(Outcome)))
def test_a_success_never_lowers_and_a_failure_never_raises_reliability(history: list[Outcome], last: Outcome) -> None:
    stats = new_stats(CONFIG)
    for outcome in history:
        stats = apply_outcome(stats, outcome, NOW, CONFIG)
    after = apply_outcome(stats, last, NOW, CONFIG)
    assert 0.0 <= after.reliability <= 1.0
    if last in (Outcome.COMPLETED, Outcome.AUDIT_PASSED):
        assert after.reliability >= stats.reliability
    else:
        assert after.reliability <= stats.reliability


@settings(max_examples=150, deadline=None)
@given(
    st.lists(state_st, max_size=40),
    job_st,
    st.text(max_size=8),
    st.integers(1, 6),
    st.lists(st.tuples(st.integers(0, 39), st.sampled_from(list(Outcome))), max_size=20),
)
def test_index_top_k_equals_full_ranking(
    states: list[MinerState],
    job: JobRequirements,
    job_id: str,
    k: int,
    outcomes: list[tuple[int, Outcome]],
) -> None:
    config = replace(CONFIG, exploration_share=0.3, exploration_jobs=50)
    states = _unique(states)
    index = MinerIndex(config)
    for state in states:
        index.upsert(state)
    for i, outcome in outcomes:  # updates move miners within (and between) the index's lists
        if states:
            s = index.states[states[i % len(states)].miner]
            index.upsert(replace(s, stats=apply_outcome(s.stats, outcome, NOW, config)))
    expected = rank(job, index.miners(), NOW, config, job_id, limit=k)
    assert index.top(job, NOW, k, job_id) == expected


def test_index_heartbeat_and_remove() -> None:
    index = MinerIndex(CONFIG)
    index.upsert(miner("a", last_seen_ms=NOW - 60_000))
    assert index.top(JOB, NOW, 5) == []
    assert index.set_live("a", NOW, load=1)
    assert [c.miner for c in index.top(JOB, NOW, 5)] == ["a"]
    assert not index.set_live("nobody", NOW)
    index.remove("a")
    assert index.top(JOB, NOW, 5) == [] and len(index) == 0


def test_index_stays_exact_as_time_passes_and_after_refresh() -> None:
    """Keys hold the age part as of keying; later matches (and re-keying) still equal the full ranking."""
    config = replace(CONFIG, age_ref_ms=3_600_000.0)
    index = MinerIndex(config)
    for i in range(30):
        index.upsert(miner(f"m{i:02d}", price=1 + i % 5, registered_at_ms=NOW - i * 600_000, stake=i * 10), NOW)
    for later in (NOW, NOW + 1_800_000, NOW + 7_200_000):
        for s in list(index.states.values()):
            index.set_live(s.miner, later)
        assert index.top(JOB, later, 5) == rank(JOB, index.miners(), later, config, limit=5)
    assert index.refresh(NOW + 7_200_000, 3_600_000, limit=10) == 10
    assert index.refresh(NOW + 7_200_000, 3_600_000, limit=100) == 20
    assert index.refresh(NOW + 7_200_000, 3_600_000, limit=100) == 0
    assert index.top(JOB, NOW + 7_200_000, 5) == rank(JOB, index.miners(), NOW + 7_200_000, config, limit=5)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(state_st, min_size=1, max_size=30),
    job_st,
    st.lists(st.tuples(st.integers(0, 29), st.integers(0, 4), st.integers(0, 20_000)), max_size=30),
    st.integers(0, 10**9),
    st.integers(1, 6),
)
def test_index_stays_exact_under_heartbeats_and_time(
    states: list[MinerState], job: JobRequirements, beats: list[tuple[int, int, int]], later: int, k: int
) -> None:
    config = replace(CONFIG, exploration_share=0.3)
    states = _unique(states)
    index = MinerIndex(config)
    for state in states:
        index.upsert(state)
    for i, load, ago in beats:  # heartbeats: new loads re-key, liveness does not
        s = states[i % len(states)]
        index.set_live(s.miner, NOW - ago, min(load, s.max_concurrency))
    at = NOW + later
    assert index.top(job, at, k, "job") == rank(job, index.miners(), at, config, "job", limit=k)


def test_index_bookkeeping_stays_bounded() -> None:
    index = MinerIndex(CONFIG)
    index.upsert(miner("a"), NOW)
    for i in range(5000):
        index.set_live("a", NOW + i, load=i % 2)
    assert len(index._keyed_heap) <= 4 * len(index) + 1024
    assert [c.miner for c in index.top(JOB, NOW + 5000, 3)] == ["a"]
