"""Settings of ``aitbc miner run`` (pydantic-settings, like every service: flags > ``AITBC_MINER_*`` > defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aitbc.protocol.job_messages import MAX_CLAIM_BATCH, MAX_CLAIM_WAIT_SECONDS, MAX_CONCURRENCY, MAX_UNIT_PRICE
from aitbc.runtime.settings import ServiceSettings

BACKENDS = ("builtin", "ollama", "openai", "echo")
Backend = Literal["builtin", "ollama", "openai", "echo"]


def default_miner_dir() -> Path:
    return Path.home() / ".aitbc" / "miner"


class MinerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AITBC_MINER_", extra="forbid", frozen=True)

    coordinator_url: str = "http://127.0.0.1:8011"
    backend: Backend = "builtin"
    """builtin (the packaged small model) | ollama | openai (any OpenAI-compatible server) | echo (instant test)."""
    data_dir: Path = Field(default_factory=default_miner_dir)
    """The miner's key, and the zk-inference proving key cache."""
    key_path: Path | None = None
    """Default: ``DATA_DIR/miner.key`` (created on first run)."""
    unit_price: int = Field(1, ge=0, le=MAX_UNIT_PRICE)
    """Price per token in base units."""
    region: str = Field("", max_length=32)
    max_concurrency: int = Field(1, ge=1, le=MAX_CONCURRENCY)
    """Jobs run at once (advertised to the coordinator); when not set, the backend's own (builtin: ``slots``
    x text models)."""
    claim_wait_seconds: float = Field(20.0, ge=0, le=MAX_CLAIM_WAIT_SECONDS)
    claim_batch: int = Field(1, ge=1, le=MAX_CLAIM_BATCH)
    """Jobs asked for per long-poll (``claim-many``), and results delivered per request (``results``); 1: one
    request per job and per result (each job also reports ``running`` at once). Fewer, larger requests cost the
    miner and the coordinator less CPU per job: a job then reports progress only if it runs longer than
    ``PROGRESS_INTERVAL_S``."""
    version: str = Field("0.1.0", max_length=32)
    zk_inference: bool = False
    """EXPERIMENTAL: also serve zk-inference jobs (needs the zkml extra; docs/zk.md)."""
    ollama_url: str = "http://127.0.0.1:11434"
    openai_url: str = "http://127.0.0.1:8000"
    openai_api_key: str | None = None
    threads: int | None = Field(None, ge=1, le=1024)
    """CPU threads of the builtin backend; ``None``: automatic (all usable cores, or fewer while they
    measure faster, e.g. when another process holds a core)."""
    text_models: tuple[str, ...] = ("smollm2-135m-instruct",)
    """Builtin text models to serve: ``smollm2-135m-instruct`` and/or ``gemma3-270m`` (Gemma Terms of Use)."""
    slots: int = Field(4, ge=1, le=64)
    """Builtin backend: generations decoded together per text model (continuous batching). The miner
    offers ``slots`` x text models jobs at once unless ``max_concurrency`` is set."""
    gpu_layers: int | None = Field(None, ge=-1)
    """Builtin backend: layers offloaded to a GPU (-1 all, 0 none); ``None``: all on a GPU build of
    llama-cpp-python, else none."""
    omp_spincount: int | None = Field(None, ge=0)
    """Builtin backend: OpenMP spin before a waiting thread sleeps (``GOMP_SPINCOUNT``); ``None``: 20000,
    unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` are set in the environment."""
    echo_token_delay_s: float = Field(0.0, ge=0)
    """Seconds per generated token of the echo backend (0 = instant)."""
    echo_cheat: bool = False
    """TESTS ONLY: the echo backend forges its outputs (what audits must catch: tests/e2e)."""
    training: bool = False
    """Also serve ``training`` jobs (needs torch; docs/training.md): the registry's models at ``unit_price`` per
    sample-step."""
    training_skip_steps: list[int] = Field(default_factory=list)
    """TESTS ONLY: steps the miner's training runs (and its replays of its own jobs) leave out: a miner faking
    checkpoints, what training audits must catch (tests/e2e/test_verifiable_training.py)."""
    training_dir: Path | None = None
    """Where training checkpoints are kept; default ``DATA_DIR/training``."""
    checkpoint_keep_seconds: float = Field(7 * 86_400.0, gt=0)
    """How long a training job's checkpoints are kept for audits and disputes (pruned at start)."""
    node_url: str | None = None
    """A node's JSON-RPC URL: the miner then audits (re-runs the jobs the chain draws it for and reports on
    chain, paying tx fees from its key); it needs a miner bond that declares the model digests it serves."""

    @property
    def resolved_training_dir(self) -> Path:
        return self.training_dir or self.data_dir / "training"

    @property
    def resolved_key_path(self) -> Path:
        return self.key_path or self.data_dir / "miner.key"
