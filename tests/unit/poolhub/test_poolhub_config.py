"""Pool hub settings: scoring weights and references come from configuration (flags, environment)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from aitbc.market.scoring import ScoringConfig
from aitbc.poolhub.config import PoolHubSettings


def test_defaults_match_the_scoring_engine(tmp_path: Path) -> None:
    config = PoolHubSettings(data_dir=tmp_path).scoring_config()
    assert config.weights.success == 0.35 and config.weights.total == pytest.approx(1.0)
    assert config.miner_timeout_ms == 15_000 and config.age_ref_ms == 24 * 3_600_000
    assert PoolHubSettings(data_dir=tmp_path).sqlalchemy_url == f"sqlite:///{tmp_path / 'poolhub.db'}"


def test_weights_and_scoring_values_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AITBC_POOLHUB_SCORING__WEIGHTS__PRICE", "0.6")
    monkeypatch.setenv("AITBC_POOLHUB_SCORING__FAILURE_STEP", "0.5")
    monkeypatch.setenv("AITBC_POOLHUB_MINER_TIMEOUT_SECONDS", "3")
    monkeypatch.setenv("AITBC_POOLHUB_SCORING__AGE_REF_MS", "1000")
    settings = PoolHubSettings(data_dir=tmp_path)
    assert isinstance(settings.scoring, ScoringConfig), "the settings hold the engine's own config, no mirror"
    config = settings.scoring_config()
    assert config.weights.price == 0.6 and config.weights.success == 0.35
    assert config.failure_step == 0.5 and config.miner_timeout_ms == 3_000 and config.age_ref_ms == 1000


def test_bad_values_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AITBC_POOLHUB_SCORING__WEIGHTS__PRICE", "-1")
    with pytest.raises(ValidationError):
        PoolHubSettings(data_dir=tmp_path)
    monkeypatch.delenv("AITBC_POOLHUB_SCORING__WEIGHTS__PRICE")
    monkeypatch.setenv("AITBC_POOLHUB_SCORING__EXPLORATION_SHARE", "2")
    with pytest.raises(ValidationError):
        PoolHubSettings(data_dir=tmp_path)
    monkeypatch.delenv("AITBC_POOLHUB_SCORING__EXPLORATION_SHARE")
    monkeypatch.setenv("AITBC_POOLHUB_SCORING__PRIOR_RELIABILITY", "1.5")
    with pytest.raises(ValidationError):
        PoolHubSettings(data_dir=tmp_path)
