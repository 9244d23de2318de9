"""Settings of ``aitbc wallet daemon`` and where it leaves its token and address for local clients."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aitbc.runtime.limits import HttpServerSettings
from aitbc.runtime.tls import is_loopback_host
from aitbc.wallet.keystore import DEFAULT_MEMLIMIT_KIB, DEFAULT_OPSLIMIT

DEFAULT_WALLET_PORT: Final = 8013
TOKEN_FILE: Final = "daemon.token"  # noqa: S105 (a file name)
INFO_FILE: Final = "daemon.info"  # JSON {url, pid}; not *.json, which are keystores

__all__ = ["DEFAULT_WALLET_PORT", "INFO_FILE", "TOKEN_FILE", "WalletSettings", "is_loopback_host"]


class WalletSettings(HttpServerSettings):
    model_config = SettingsConfigDict(env_prefix="AITBC_WALLETD_", extra="forbid", frozen=True)

    wallet_dir: Path
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_WALLET_PORT, ge=0, le=65535)
    force_bind: bool = False
    """Allow a non-loopback address (the daemon holds keys: only for a trusted, isolated network)."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """``Host`` values accepted besides loopback (127.0.0.1, localhost, ::1); anything else is refused (403),
    which stops DNS-rebinding pages. JSON in the environment: ``AITBC_WALLETD_ALLOWED_HOSTS='["wallet.lan"]'``."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed to call the daemon (e.g. ``http://localhost:8015`` for the web app); a request
    with any other ``Origin`` header is refused (403)."""
    rpc_url: str | None = None
    """The node's JSON-RPC URL (balance, send, receipt verification)."""
    coordinator_url: str | None = None
    coordinator_api_key: str | None = None
    unlock_timeout_s: float = Field(300.0, gt=0)
    max_unlock_timeout_s: float = Field(3600.0, gt=0)
    max_failed_unlocks: int = Field(5, ge=1)
    """Failed unlock attempts allowed per wallet within ``failed_unlock_window_s``; more get 429."""
    failed_unlock_window_s: float = Field(60.0, gt=0)
    kdf_memlimit_kib: int = DEFAULT_MEMLIMIT_KIB
    kdf_opslimit: int = DEFAULT_OPSLIMIT
    allow_weak_kdf: bool = False
    """Accept Argon2id parameters below the floor (tests and benches only)."""

    @property
    def token_path(self) -> Path:
        return self.wallet_dir / TOKEN_FILE

    @property
    def info_path(self) -> Path:
        return self.wallet_dir / INFO_FILE
