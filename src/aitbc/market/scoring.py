"""Which eligible miner should get a job, and why: the pool hub's scoring engine (pure).

A miner is first checked against hard constraints (``get_exclusion``: the exact
model and digest, VRAM, GPU, region, price bound from ``aitbc.market.matching``,
then online, free capacity and stake). Each eligible miner gets a score in [0, 1]:

    score = Σ wᵢ·fᵢ / Σ wᵢ      over the factors f (each in [0, 1], higher is better)

    success     reliability r: an asymmetric moving average of outcomes (below)
    latency     ttft_ref / (ttft_ref + ttft)           measured time to first token
    throughput  tps / (tps + tps_ref)                  measured tokens per second
    price       price_ref / (price_ref + unit_price)   the price of the served model
    load        1 - active / max_concurrency
    stake       stake / (stake + stake_ref)
    age         age / (age + age_ref)                  time since first registration

Every statistic comes from outcomes the coordinator observed (``apply_outcome``);
nothing a miner says about itself enters the score except its price, and a lower
price only helps the client. A success moves r a small step towards 1
(``success_step``), a failure a large step towards 0 (``failure_step``), a
rejected receipt two such steps, a slash after a lost audit dispute four (a
passed audit counts as a success): a miner that starts failing falls fast and
earns its place back slowly. A miner without a measured latency or throughput
gets the neutral value ``unknown_factor``.

New miners (fewer than ``exploration_jobs`` outcomes) get a bounded share of
jobs to build a record: a job is an exploration slot when a hash of its id
falls in the first ``exploration_share`` of the hash space; in such a slot the
eligible new miners rank first (among themselves by score). So at most that
share of jobs prefers unproven miners, and the choice is deterministic.

``rank`` scores every miner (O(n), with reasons for exclusions: used to explain);
``MinerIndex`` returns the same top k in well under a millisecond for thousands of
miners by walking per-model lists sorted by the part of the score that changes
only with outcomes, and stopping once no later miner can beat the k-th.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final

from aitbc.market.matching import (
    JobRequirements,
    MinerOffer,
    ServedModel,
    compute_max_units,
    find_served_model,
    get_ineligibility,
)

FACTORS: Final = ("success", "latency", "throughput", "price", "load", "stake", "age")
_BOUND_EPSILON: Final = 1e-9


class Outcome(StrEnum):
    """How a job the coordinator gave a miner ended (the only input to a miner's statistics)."""

    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    RECEIPT_REJECTED = "receipt_rejected"
    AUDIT_PASSED = "audit_passed"
    """A re-execution audit confirmed a job's output (``aitbc.chain.audits``): counts as a success."""
    SLASHED = "slashed"
    """A dispute found the miner's output false and slashed its bond: four failure steps."""


@dataclass(frozen=True, slots=True)
class ScoringWeights:
    success: float = 0.35
    latency: float = 0.15
    throughput: float = 0.15
    price: float = 0.15
    load: float = 0.10
    stake: float = 0.05
    age: float = 0.05

    def __post_init__(self) -> None:
        values = [getattr(self, name) for name in FACTORS]
        if any(v < 0 for v in values) or sum(values) <= 0:
            raise ValueError("scoring weights must be non-negative and not all zero")

    @property
    def total(self) -> float:
        return float(sum(getattr(self, name) for name in FACTORS))


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """The one scoring configuration: the pool hub's settings hold this very type (``PoolHubSettings.scoring``),
    so every value is declared and checked here only."""

    weights: ScoringWeights = field(default_factory=ScoringWeights)
    ttft_ref_ms: float = 1_000.0
    tps_ref: float = 50.0
    price_ref: float = 10.0
    stake_ref: float = 1_000.0
    age_ref_ms: float = 86_400_000.0
    unknown_factor: float = 0.5
    """Latency and throughput factor of a miner without measurements."""
    prior_reliability: float = 0.75
    success_step: float = 0.05
    """Fraction of the distance to 1 that a success recovers (slow)."""
    failure_step: float = 0.30
    """Fraction of the reliability a failure takes away (fast)."""
    latency_alpha: float = 0.2
    """Weight of the newest measurement in the latency and throughput moving averages."""
    exploration_share: float = 0.10
    exploration_jobs: int = 20
    miner_timeout_ms: int = 15_000
    min_stake: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.exploration_share <= 1:
            raise ValueError("exploration_share must be within [0, 1]")
        if not (0 < self.success_step <= 1 and 0 < self.failure_step <= 1 and 0 < self.latency_alpha <= 1):
            raise ValueError("success_step, failure_step and latency_alpha must be within (0, 1]")
        if min(self.ttft_ref_ms, self.tps_ref, self.price_ref, self.stake_ref, self.age_ref_ms) <= 0:
            raise ValueError("reference values must be positive")
        if not (0 <= self.unknown_factor <= 1 and 0 <= self.prior_reliability <= 1):
            raise ValueError("unknown_factor and prior_reliability must be within [0, 1]")
        if min(self.exploration_jobs, self.min_stake) < 0 or self.miner_timeout_ms <= 0:
            raise ValueError("exploration_jobs and min_stake must be >= 0, miner_timeout_ms > 0")


@dataclass(frozen=True, slots=True)
class MinerStats:
    """What the coordinator measured of a miner's past jobs (decayed)."""

    reliability: float = 0.75
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    receipt_rejected: int = 0
    last_outcome_ms: int = 0

    @property
    def jobs(self) -> int:
        return self.completed + self.failed + self.timed_out + self.receipt_rejected


@dataclass(frozen=True, slots=True)
class MinerState:
    """A registered miner as the scoring engine sees it."""

    offer: MinerOffer
    registered_at_ms: int
    last_seen_ms: int
    max_concurrency: int = 1
    load: int = 0
    stake: int = 0
    stats: MinerStats = field(default_factory=MinerStats)

    @property
    def miner(self) -> str:
        return self.offer.miner


@dataclass(frozen=True, slots=True)
class Candidate:
    miner: str
    score: float
    reasons: tuple[str, ...]
    factors: dict[str, float]
    exploration: bool = False


@dataclass(frozen=True, slots=True)
class Exclusion:
    miner: str
    reason: str


@dataclass(frozen=True, slots=True)
class Ranking:
    candidates: list[Candidate]
    excluded: list[Exclusion]
    exploration_slot: bool


def new_stats(config: ScoringConfig) -> MinerStats:
    return MinerStats(reliability=config.prior_reliability)


def _ewma(previous: float | None, value: float, alpha: float) -> float:
    return value if previous is None else previous + alpha * (value - previous)


def apply_outcome(
    stats: MinerStats,
    outcome: Outcome,
    now_ms: int,
    config: ScoringConfig,
    ttft_ms: float | None = None,
    tokens_per_s: float | None = None,
) -> MinerStats:
    """The statistics after one measured outcome; latency figures count only for completed jobs."""
    r = stats.reliability
    if outcome == Outcome.AUDIT_PASSED:
        return replace(
            stats,
            reliability=r + config.success_step * (1.0 - r),
            completed=stats.completed + 1,
            last_outcome_ms=now_ms,
        )
    if outcome == Outcome.COMPLETED:
        return replace(
            stats,
            reliability=r + config.success_step * (1.0 - r),
            ttft_ms=_ewma(stats.ttft_ms, max(0.0, ttft_ms), config.latency_alpha)
            if ttft_ms is not None
            else stats.ttft_ms,
            tokens_per_s=_ewma(stats.tokens_per_s, max(0.0, tokens_per_s), config.latency_alpha)
            if tokens_per_s is not None
            else stats.tokens_per_s,
            completed=stats.completed + 1,
            last_outcome_ms=now_ms,
        )
    keep = 1.0 - config.failure_step
    if outcome == Outcome.FAILED:
        return replace(stats, reliability=r * keep, failed=stats.failed + 1, last_outcome_ms=now_ms)
    if outcome == Outcome.TIMED_OUT:
        return replace(stats, reliability=r * keep, timed_out=stats.timed_out + 1, last_outcome_ms=now_ms)
    steps = 4 if outcome == Outcome.SLASHED else 2
    return replace(
        stats, reliability=r * keep**steps, receipt_rejected=stats.receipt_rejected + 1, last_outcome_ms=now_ms
    )


def is_online(state: MinerState, now_ms: int, config: ScoringConfig) -> bool:
    return now_ms - state.last_seen_ms <= config.miner_timeout_ms


def is_new(state: MinerState, config: ScoringConfig) -> bool:
    return state.stats.jobs < config.exploration_jobs


def is_exploration_slot(job_id: str, share: float) -> bool:
    """Whether this job prefers new miners: true for a fixed ``share`` of job ids, the same answer every time."""
    if share <= 0:
        return False
    bucket = int.from_bytes(hashlib.blake2b(job_id.encode(), digest_size=8).digest(), "big")
    return bucket < share * 2**64


def get_exclusion(state: MinerState, job: JobRequirements, now_ms: int, config: ScoringConfig) -> str | None:
    """Why this miner may not get this job now, or None when it may."""
    reason = get_ineligibility(state.offer, job)
    if reason is not None:
        return reason
    if not is_online(state, now_ms, config):
        return f"offline: last heartbeat {(now_ms - state.last_seen_ms) / 1000:.1f} s ago"
    if state.load >= state.max_concurrency:
        return f"busy: {state.load} of {state.max_concurrency} slots in use"
    min_stake = max(config.min_stake, job.min_stake or 0)
    if state.stake < min_stake:
        return f"stake {state.stake} is below the minimum {min_stake}"
    return None


def get_eligible_model(
    state: MinerState, job: JobRequirements, now_ms: int, config: ScoringConfig
) -> ServedModel | None:
    """The model the miner would serve the job with, or None when ``get_exclusion`` gives a reason.

    The same rules without the sentences, cheapest checks first: ``MinerIndex`` runs it for every miner
    it walks past (a property test checks it agrees with ``get_exclusion``).
    """
    if now_ms - state.last_seen_ms > config.miner_timeout_ms or state.load >= state.max_concurrency:
        return None
    if state.stake < config.min_stake or (job.min_stake is not None and state.stake < job.min_stake):
        return None
    offer = state.offer
    if job.region is not None and offer.region != job.region:
        return None
    if job.min_vram_gb is not None and offer.vram_gb < job.min_vram_gb:
        return None
    if job.gpu is not None and (offer.gpu_name is None or job.gpu.lower() not in offer.gpu_name.lower()):
        return None
    model = find_served_model(offer, job)
    if model is None or (job.max_price is not None and model.unit_price * compute_max_units(job) > job.max_price):
        return None
    return model


def compute_static_factors(state: MinerState, model: ServedModel, config: ScoringConfig) -> dict[str, float]:
    """The factors that change only with outcomes, registration or stake (not with time or load)."""
    stats = state.stats
    unknown = config.unknown_factor
    latency = unknown if stats.ttft_ms is None else config.ttft_ref_ms / (config.ttft_ref_ms + stats.ttft_ms)
    tps = stats.tokens_per_s
    throughput = unknown if tps is None else tps / (tps + config.tps_ref)
    stake = max(0, state.stake)
    return {
        "success": min(1.0, max(0.0, stats.reliability)),
        "latency": latency,
        "throughput": throughput,
        "price": config.price_ref / (config.price_ref + model.unit_price),
        "stake": stake / (stake + config.stake_ref),
    }


def compute_factors(state: MinerState, model: ServedModel, now_ms: int, config: ScoringConfig) -> dict[str, float]:
    factors = compute_static_factors(state, model, config)
    age = max(0, now_ms - state.registered_at_ms)
    factors["load"] = 1.0 - min(state.load, state.max_concurrency) / max(1, state.max_concurrency)
    factors["age"] = age / (age + config.age_ref_ms)
    return factors


def compute_score(factors: dict[str, float], weights: ScoringWeights) -> float:
    # Summed in the same order as ``_static_partial`` + load + age, so ``MinerIndex`` gets bit-identical scores.
    w, f = weights, factors
    static = (
        w.success * f["success"]
        + w.latency * f["latency"]
        + w.throughput * f["throughput"]
        + w.price * f["price"]
        + w.stake * f["stake"]
    )
    return (static + w.load * f["load"] + w.age * f["age"]) / w.total


def _static_partial(state: MinerState, model: ServedModel, config: ScoringConfig) -> float:
    """Σ wᵢ·fᵢ over the static factors: the index's sort key."""
    w = config.weights
    f = compute_static_factors(state, model, config)
    return (
        w.success * f["success"]
        + w.latency * f["latency"]
        + w.throughput * f["throughput"]
        + w.price * f["price"]
        + w.stake * f["stake"]
    )


def explain_factors(
    state: MinerState, model: ServedModel, factors: dict[str, float], now_ms: int, exploration: bool
) -> tuple[str, ...]:
    """One line per factor, in words a person can check against the miner's record."""
    s = state.stats
    age_h = max(0, now_ms - state.registered_at_ms) / 3_600_000
    reasons = [
        f"success {factors['success']:.2f} ({s.completed} completed, {s.failed} failed, {s.timed_out} timed out, "
        f"{s.receipt_rejected} receipts rejected)",
        f"latency {factors['latency']:.2f} ("
        + ("no measurement yet" if s.ttft_ms is None else f"{s.ttft_ms:.0f} ms to first token")
        + ")",
        f"throughput {factors['throughput']:.2f} ("
        + ("no measurement yet" if s.tokens_per_s is None else f"{s.tokens_per_s:.1f} tokens/s")
        + ")",
        f"price {factors['price']:.2f} ({model.unit_price}/token for {model.name})",
        f"load {factors['load']:.2f} ({state.load} of {state.max_concurrency} slots in use)",
        f"stake {factors['stake']:.2f} ({state.stake})",
        f"age {factors['age']:.2f} ({age_h:.1f} h registered)",
    ]
    if exploration:
        reasons.insert(0, f"exploration slot: new miner with {s.jobs} measured jobs ranks first")
    return tuple(reasons)


def _candidate(
    state: MinerState, job: JobRequirements, now_ms: int, config: ScoringConfig, exploration: bool
) -> Candidate:
    model = find_served_model(state.offer, job)
    assert model is not None  # checked by get_exclusion
    factors = compute_factors(state, model, now_ms, config)
    return Candidate(
        state.miner,
        compute_score(factors, config.weights),
        explain_factors(state, model, factors, now_ms, exploration),
        factors,
        exploration,
    )


def _rank(
    job: JobRequirements, miners: list[MinerState], now_ms: int, config: ScoringConfig, job_id: str, limit: int | None
) -> Ranking:
    """Score every miner, order them, and write the reasons only for the ``limit`` best (the costly part)."""
    slot = is_exploration_slot(job_id, config.exploration_share)
    scored: list[tuple[bool, float, str, MinerState, ServedModel, dict[str, float], bool]] = []
    excluded: list[Exclusion] = []
    for state in miners:
        reason = get_exclusion(state, job, now_ms, config)
        if reason is not None:
            excluded.append(Exclusion(state.miner, reason))
            continue
        model = find_served_model(state.offer, job)
        assert model is not None  # checked by get_exclusion
        factors = compute_factors(state, model, now_ms, config)
        exploration = slot and is_new(state, config)
        score = compute_score(factors, config.weights)
        scored.append((not exploration, -score, state.miner, state, model, factors, exploration))
    scored.sort(key=lambda item: item[:3])
    candidates = [
        Candidate(miner, -neg, explain_factors(state, model, factors, now_ms, exploration), factors, exploration)
        for _, neg, miner, state, model, factors, exploration in (scored if limit is None else scored[:limit])
    ]
    excluded.sort(key=lambda e: e.miner)
    return Ranking(candidates, excluded, slot)


def explain(
    job: JobRequirements, miners: list[MinerState], now_ms: int, config: ScoringConfig, job_id: str = ""
) -> Ranking:
    """Every miner, ranked or excluded with its reason."""
    return _rank(job, miners, now_ms, config, job_id, None)


def rank(
    job: JobRequirements,
    miners: list[MinerState],
    now_ms: int,
    config: ScoringConfig,
    job_id: str = "",
    limit: int | None = None,
) -> list[Candidate]:
    """The eligible miners, best first, each with its score and the reasons for it."""
    return _rank(job, miners, now_ms, config, job_id, limit).candidates


def get_best(
    job: JobRequirements, miners: list[MinerState], now_ms: int, config: ScoringConfig, job_id: str = ""
) -> str | None:
    """The miner ``rank`` would put first, without building reasons (the coordinator's per-claim check)."""
    slot = is_exploration_slot(job_id, config.exploration_share)
    best: tuple[bool, float, _Inverted] | None = None
    for state in miners:
        if get_exclusion(state, job, now_ms, config) is not None:
            continue
        model = find_served_model(state.offer, job)
        assert model is not None
        key = (
            slot and is_new(state, config),
            compute_score(compute_factors(state, model, now_ms, config), config.weights),
            _Inverted(state.miner),
        )
        if best is None or key > best:
            best = key
    return None if best is None else str(best[2])


class _Inverted(str):
    """A miner address that compares in reverse, so the heap keeps the smaller address among equal scores."""

    __slots__ = ()

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)

    def __gt__(self, other: str) -> bool:
        return str.__lt__(self, other)

    def __le__(self, other: str) -> bool:
        return str.__ge__(self, other)

    def __ge__(self, other: str) -> bool:
        return str.__le__(self, other)
