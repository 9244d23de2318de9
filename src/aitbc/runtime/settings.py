"""The one configuration system: typed pydantic-settings objects, one per service.

Precedence: explicit values (CLI flags) > ``AITBC_<SERVICE>_*`` environment > defaults.
Each service receives its settings object as an argument; nothing reads a global.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    log_level: str = "INFO"
    cors_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed to call this service (``aitbc.runtime.cors``), e.g. the web app's
    ``http://127.0.0.1:8015``; empty: no cross-origin access. Env: a JSON list."""
