"""Settings of ``aitbc exchange run`` (``AITBC_EXCHANGE_…`` environment, nested with ``__``)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from aitbc.market.orderbook import MarketSpec
from aitbc.market.trading import FeeSchedule
from aitbc.runtime.limits import HttpServerSettings

DEFAULT_EXCHANGE_PORT = 8014


class BitcoinNetwork(StrEnum):
    MAINNET = "mainnet"
    TESTNET = "testnet"
    REGTEST = "regtest"


class MarketSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tick_size: int = Field(1, gt=0)
    """Satoshis per AITBC."""
    lot_size: int = Field(1_000_000, gt=0)
    """AITBC base units (10**6 = one AITBC)."""
    maker_fee_bps: int = Field(0, ge=0, le=1000)
    taker_fee_bps: int = Field(10, ge=0, le=1000)

    def spec(self) -> MarketSpec:
        return MarketSpec(tick_size=self.tick_size, lot_size=self.lot_size)

    def fees(self) -> FeeSchedule:
        return FeeSchedule(maker_bps=self.maker_fee_bps, taker_bps=self.taker_fee_bps)


class BitcoinSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    network: BitcoinNetwork = BitcoinNetwork.REGTEST
    xpub: str | None = None
    """The exchange's BIP84 account xpub (``m/84'/coin'/0'``; tpub/vpub/zpub accepted); deposit address of
    user N is ``…/0/N``. Without it BTC deposits are off. ``aitbc exchange xpub`` makes one."""
    backend: str = Field("core", pattern="^(core|esplora)$")
    rpc_url: str | None = None
    """Bitcoin Core JSON-RPC, e.g. ``http://user:pass@127.0.0.1:18443``."""
    esplora_url: str | None = None
    """Esplora HTTP API base, e.g. ``https://blockstream.info/testnet/api``."""
    confirmations: int = Field(3, ge=1, le=1000)
    """A deposit is credited once its block has this many confirmations."""
    poll_seconds: float = Field(5.0, gt=0)
    reorg_depth: int = Field(100, ge=1)
    """Blocks the watcher re-checks behind the tip for a reorg (credits deeper than this are final)."""
    max_fee_rate_sat_vb: int = Field(500, ge=1)
    """Withdrawals are refused while the backend's fee estimate is above this (a hostile backend's cap)."""
    min_withdrawal_sat: int = Field(10_000, ge=546)
    hot_key_file: Path | None = None
    """Optional WIF/xprv file: withdrawals up to ``hot_limit_sat`` are signed automatically."""
    hot_limit_sat: int = Field(0, ge=0)


class AitbcSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    node_url: str | None = None
    """The node's JSON-RPC URL; without it AITBC deposits and withdrawals are off."""
    key_file: Path | None = None
    """The exchange's AITBC key (plain key file); deposits are transfers to its address with the user's memo."""
    poll_seconds: float = Field(2.0, gt=0)
    withdrawal_fee: int = Field(1_000, ge=0)
    """Base units a withdrawal costs the user (the chain fee)."""


class ExchangeSettings(HttpServerSettings):
    """Transport limits (connections, header/body sizes and timeouts) come from ``HttpServerSettings``."""

    model_config = SettingsConfigDict(
        env_prefix="AITBC_EXCHANGE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: Path
    database_url: str | None = None
    """SQLAlchemy URL; default ``sqlite:///DATA_DIR/exchange.db``. PostgreSQL: ``postgresql+psycopg://…``."""
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_EXCHANGE_PORT, ge=0, le=65535)
    market: MarketSettings = Field(default_factory=MarketSettings)
    bitcoin: BitcoinSettings = Field(default_factory=BitcoinSettings)
    aitbc: AitbcSettings = Field(default_factory=AitbcSettings)
    session_ttl_seconds: int = Field(24 * 3600, gt=0)
    max_sessions_per_user: int = Field(20, ge=1)
    rate_limit_per_second: float = Field(50.0, gt=0)
    """Per-user requests per second that change something (orders, cancels, withdrawals)."""
    rate_limit_burst: int = Field(100, ge=1)
    login_attempts_per_minute: int = Field(10, ge=1)
    """Per-username failed logins (and wrong TOTP codes) per minute before 429."""
    max_body_bytes: int = Field(16 * 1024, ge=1024)
    """Requests are small JSON documents here (a PSBT is the largest); 413 past this, on the stream."""
    max_open_orders_per_user: int = Field(1_000, ge=1)
    password_opslimit: int = Field(2, ge=1)
    password_memlimit: int = Field(64 * 1024 * 1024, ge=8192)
    """Argon2id cost (64 MiB, 2 passes ≈ 65 ms here)."""
    password_hash_concurrency: int = Field(2, ge=1, le=64)
    """Argon2id runs at once (sign-ups and logins beyond wait): memory stays within this times password_memlimit."""
    ws_queue_size: int = Field(1_000, ge=10)
    """Messages buffered per WebSocket client; a client that falls further behind is disconnected."""
    invariant_check_seconds: float = Field(5.0, gt=0)
    """How often the ledger invariant and the uncrossed book are checked in memory."""
    journal_check_seconds: float = Field(60.0, gt=0)
    """How often the database journal is summed and compared with the ledger, account by account."""

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'exchange.db'}"
