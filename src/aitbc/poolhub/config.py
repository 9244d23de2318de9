"""Settings of ``aitbc poolhub run``, including the scoring weights (``AITBC_POOLHUB_SCORING__WEIGHTS__PRICE=…``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from aitbc.market.scoring import ScoringConfig, ScoringWeights
from aitbc.runtime.limits import HttpServerSettings

DEFAULT_POOLHUB_PORT = 8012


class WeightsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    success: float = Field(0.35, ge=0)
    latency: float = Field(0.15, ge=0)
    throughput: float = Field(0.15, ge=0)
    price: float = Field(0.15, ge=0)
    load: float = Field(0.10, ge=0)
    stake: float = Field(0.05, ge=0)
    age: float = Field(0.05, ge=0)


class ScoringSettings(BaseModel):
    """Mirrors ``aitbc.market.scoring.ScoringConfig`` (see docs/poolhub.md for what each value does)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: WeightsSettings = Field(default_factory=WeightsSettings)
    ttft_ref_ms: float = Field(1_000.0, gt=0)
    tps_ref: float = Field(50.0, gt=0)
    price_ref: float = Field(10.0, gt=0)
    stake_ref: float = Field(1_000.0, gt=0)
    age_ref_hours: float = Field(24.0, gt=0)
    unknown_factor: float = Field(0.5, ge=0, le=1)
    prior_reliability: float = Field(0.75, ge=0, le=1)
    success_step: float = Field(0.05, gt=0, le=1)
    failure_step: float = Field(0.30, gt=0, le=1)
    latency_alpha: float = Field(0.2, gt=0, le=1)
    exploration_share: float = Field(0.10, ge=0, le=1)
    exploration_jobs: int = Field(20, ge=0)
    min_stake: int = Field(0, ge=0)


class PoolHubSettings(HttpServerSettings):
    model_config = SettingsConfigDict(
        env_prefix="AITBC_POOLHUB_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: Path
    database_url: str | None = None
    """SQLAlchemy URL; default ``sqlite:///DATA_DIR/poolhub.db``. PostgreSQL: ``postgresql+psycopg://…``."""
    redis_url: str | None = None
    """With it, live miner state (heartbeats, load, online set) lives in Redis; the database keeps the rest."""
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_POOLHUB_PORT, ge=0, le=65535)
    api_token: str | None = None
    """If set, writes and ``/v1/match`` need ``Authorization: Bearer TOKEN`` (the coordinator's); reads stay open."""
    miner_timeout_seconds: float = Field(15.0, gt=0)
    """A miner without a heartbeat for this long is out of matching."""
    heartbeat_flush_ms: int = Field(100, ge=1)
    """Heartbeats update matching at once and reach the registry in batches at this interval."""
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'poolhub.db'}"

    def scoring_config(self) -> ScoringConfig:
        s = self.scoring
        return ScoringConfig(
            weights=ScoringWeights(**s.weights.model_dump()),
            ttft_ref_ms=s.ttft_ref_ms,
            tps_ref=s.tps_ref,
            price_ref=s.price_ref,
            stake_ref=s.stake_ref,
            age_ref_ms=s.age_ref_hours * 3_600_000,
            unknown_factor=s.unknown_factor,
            prior_reliability=s.prior_reliability,
            success_step=s.success_step,
            failure_step=s.failure_step,
            latency_alpha=s.latency_alpha,
            exploration_share=s.exploration_share,
            exploration_jobs=s.exploration_jobs,
            miner_timeout_ms=int(self.miner_timeout_seconds * 1000),
            min_stake=s.min_stake,
        )
