"""Settings of ``aitbc poolhub run``, including the scoring weights (``AITBC_POOLHUB_SCORING__WEIGHTS__PRICE=…``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aitbc.market.scoring import ScoringConfig
from aitbc.runtime.limits import HttpServerSettings

DEFAULT_POOLHUB_PORT = 8012


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
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    """The scoring engine's own configuration (``aitbc.market.scoring.ScoringConfig``, checked by it), set field
    by field from the environment: ``AITBC_POOLHUB_SCORING__WEIGHTS__PRICE=0.3``, ``…__FAILURE_STEP=0.5``.
    Its ``miner_timeout_ms`` is always ``miner_timeout_seconds``."""

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'poolhub.db'}"

    def scoring_config(self) -> ScoringConfig:
        return dataclasses.replace(self.scoring, miner_timeout_ms=int(self.miner_timeout_seconds * 1000))
