"""``aitbc miner run``: build the backend, load the key, run the daemon until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aitbc.miner.backends.base import InferenceBackend
from aitbc.miner.config import MinerSettings
from aitbc.miner.daemon import MinerDaemon
from aitbc.protocol.crypto import KeyPair
from aitbc.runtime.keyfile import read_keyfile, write_keyfile

log = logging.getLogger("aitbc.miner")


def backend_options(
    settings: MinerSettings, model_files: dict[str, str] | None, model_digests: dict[str, str] | None
) -> dict[str, Any]:
    """The chosen backend's constructor options, from the settings."""
    if settings.backend == "echo":
        return {"token_delay_s": settings.echo_token_delay_s, "cheat": settings.echo_cheat}
    if settings.backend == "ollama":
        return {"base_url": settings.ollama_url}
    if settings.backend == "openai":
        return {
            "base_url": settings.openai_url,
            "api_key": settings.openai_api_key,
            "model_files": model_files,
            "model_digests": model_digests,
        }
    return {
        "n_threads": settings.threads,
        "slots": settings.slots,
        "text_models": tuple(settings.text_models),
        "gpu_layers": settings.gpu_layers,
        "omp_spincount": None if settings.omp_spincount is None else str(settings.omp_spincount),
    }


def build_backend(name: str, options: dict[str, Any]) -> InferenceBackend:
    if name == "echo":
        from aitbc.miner.backends.echo import EchoBackend

        return EchoBackend(token_delay_s=float(options.get("token_delay_s", 0.0)), cheat=bool(options.get("cheat")))
    from aitbc.miner.backends.registry import create_backend

    return create_backend(name, **{k: v for k, v in options.items() if v is not None})  # type: ignore[arg-type]


def with_backend_concurrency(settings: MinerSettings, backend: InferenceBackend) -> MinerSettings:
    """The settings with ``max_concurrency`` the backend's own when the operator did not set it.

    The builtin backend decodes ``slots`` generations together per text model, so it offers that
    many jobs at once (and the miner advertises that many to the coordinator); a backend that does
    not say runs one job at a time. A flag or ``AITBC_MINER_MAX_CONCURRENCY`` always wins.
    """
    if "max_concurrency" in settings.model_fields_set:
        return settings
    offered = max(1, int(getattr(backend, "concurrency", 1)))
    return settings.model_copy(update={"max_concurrency": offered})


def load_or_create_miner_key(path: Path) -> KeyPair:
    if path.exists():
        return read_keyfile(path)
    key = KeyPair.generate()
    write_keyfile(path, key)
    return key


def detect_hardware_dict() -> dict[str, Any]:
    try:
        from aitbc.miner.hardware import detect_hardware
    except ImportError:  # pragma: no cover - hardware detection ships with the miner
        return {"kind": "cpu"}
    return {k: v for k, v in asdict(detect_hardware()).items() if v is not None}


async def serve_miner(
    config: MinerSettings, key: KeyPair, backend: InferenceBackend, hardware: dict[str, Any] | None = None
) -> None:
    daemon = MinerDaemon(config, key, backend, hardware=hardware)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, daemon.stop)
    log.info(
        "miner starting",
        extra={"miner": key.address, "backend": config.backend, "coordinator": config.coordinator_url},
    )
    try:
        await daemon.run()
    finally:
        await asyncio.to_thread(backend.close)
        log.info("miner stopped", extra={"completed": daemon.completed})
