"""Settings of ``aitbc coordinator run``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aitbc.runtime.limits import HttpServerSettings, MiB

DEFAULT_COORDINATOR_PORT = 8011


class CoordinatorSettings(HttpServerSettings):
    model_config = SettingsConfigDict(env_prefix="AITBC_COORDINATOR_", extra="forbid", frozen=True)

    data_dir: Path
    database_url: str | None = None
    """SQLAlchemy URL; default ``sqlite:///DATA_DIR/coordinator.db``. PostgreSQL: ``postgresql+psycopg://…``."""
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_COORDINATOR_PORT, ge=0, le=65535)
    chain_id: str = "aitbc-devnet"
    lease_seconds: float = Field(15.0, gt=0)
    """A claimed job is lost if the miner sends nothing for this long."""
    max_attempts: int = Field(3, ge=1)
    default_ttl_seconds: int = Field(600, ge=1)
    max_ttl_seconds: int = Field(86_400, ge=1)
    miner_timeout_seconds: float = Field(15.0, gt=0)
    """A miner that has not been heard from for this long is offline."""
    max_claim_wait_seconds: float = Field(30.0, gt=0)
    node_url: str | None = None
    """JSON-RPC URL of a node: jobs are then paid on chain (escrow, settle, refund); without it they run unpaid."""
    escrow_min_blocks: int = Field(10, ge=1)
    """A paid job is accepted only if its escrow stays open at least this many blocks more."""
    deposit_job_blocks: int = Field(600, ge=10, le=100_000)
    """A deposit job's id carries an expiry this many blocks ahead (at most the chain's ``max_receipt_blocks``):
    it must be settled by then; jobs nobody took give up after half of it."""
    payment_retry_seconds: float = Field(10.0, gt=0)
    """A settle / refund tx not seen on chain after this long is checked and sent again."""
    default_rate_per_second: float = Field(200.0, gt=0)
    default_burst: int = Field(400, ge=1)
    poolhub_url: str | None = None
    """Match through this pool hub (``aitbc poolhub run``); without it the scoring engine runs in process."""
    poolhub_token: str | None = None
    match_hold_ms: int = Field(500, ge=0)
    """How long a queued job waits for the best-ranked miner before any eligible claimer may take it."""

    free_releases: int = Field(3, ge=0)
    """Jobs a miner may hand back (release) within ``release_window_seconds`` before each counts as a failure."""
    release_window_seconds: float = Field(600.0, gt=0)
    release_cooldown_seconds: float = Field(30.0, ge=0)
    """A released job is not handed back to the miner that released it for this long."""
    openai_max_open_per_key: int = Field(32, ge=1)
    """``/v1`` requests one API key may hold open at once (streams included); one more is a 429."""
    openai_keepalive_seconds: float = Field(15.0, gt=0)
    """A ``/v1`` stream waiting for its miner sends an SSE comment this often, so proxies keep it open."""
    ws_max_connections_per_key: int = Field(16, ge=1)
    """``job_updates`` WebSocket connections (``/api/v1/ws``) one API key may hold; one more is closed with 1013."""

    max_body_bytes: int = Field(2 * MiB, ge=1024)
    """Largest request body (a prompt is at most 200,000 characters; see ``MAX_PROMPT_CHARS``)."""
    blob_max_bytes: int = Field(512 * MiB, ge=1024)
    """Largest blob (``POST /api/v1/blobs``: training datasets, weights, checkpoint states), limited on the stream."""
    blob_timeout_s: float = Field(300.0, gt=0)
    """A blob's body must all arrive within this of its headers."""
    blob_quota_bytes: int = Field(16 * 1024 * MiB, ge=1024)
    """Bytes of blobs one uploader (an API key, a miner) may hold at once; an upload past it is a 413
    ``blob_quota_exceeded`` and leaves nothing on disk. A blob uploaded again by the same owner counts once."""
    blob_quota_count: int = Field(10_000, ge=1)
    """Blobs one uploader may hold at once."""
    blob_retention_s: float = Field(7 * 24 * 3600.0, gt=0)
    """A blob not uploaded again for this long is deleted (and leaves its owners' quotas). The default is far
    above a job's life and the audit and dispute windows (minutes to hours at the default chain parameters)."""
    intake_log: bool = True
    """On SQLite, answer ``POST /api/v1/jobs`` once the new job is in the intake log (``DATA_DIR/intake``, a
    memory-mapped file: as durable as a database commit) rather than after its row commits; the row follows
    by group commit (``aitbc.coordinator.db.intake_log``). Off: every submission waits for its commit.
    PostgreSQL replicas always wait for the commit (a replica's log is read only by that replica's restart)."""

    background_nice: int = Field(10, ge=0, le=19)
    """How many nice levels below the event loop's thread the worker threads run (database writer and
    readers, the chain link, the loop's default executor): their work is batch work, the loop serves the
    requests, so on a busy machine a ready loop gets a core first. 0: equal. Linux only (``aitbc.runtime.priority``)."""

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'coordinator.db'}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def intake_dir(self) -> Path:
        return self.data_dir / "intake"

    @property
    def key_path(self) -> Path:
        return self.data_dir / "coordinator.key"
