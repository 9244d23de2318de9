"""``aitbc miner run``: build the backend, load the key, run the daemon until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aitbc.miner.backends.base import InferenceBackend
from aitbc.miner.daemon import MinerConfig, MinerDaemon
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import ConfigError
from aitbc.runtime.keyfile import read_keyfile, write_keyfile

log = logging.getLogger("aitbc.miner")

BACKENDS = ("builtin", "ollama", "openai", "echo")


def build_backend(name: str, options: dict[str, Any]) -> InferenceBackend:
    if name == "echo":
        from aitbc.miner.backends.echo import EchoBackend

        return EchoBackend(token_delay_s=float(options.get("token_delay_s", 0.0)))
    from aitbc.miner.backends.registry import create_backend

    return create_backend(name, **{k: v for k, v in options.items() if v is not None})  # type: ignore[arg-type]


def compute_concurrency(requested: int | None, backend: InferenceBackend) -> int:
    """Jobs the miner runs at once (and advertises): the operator's number, else the backend's own.

    The builtin backend decodes ``slots`` generations together per text model, so it offers that
    many; a backend that does not say runs one job at a time.
    """
    if requested is not None:
        if requested < 1:
            raise ConfigError(f"--concurrency must be at least 1, got {requested}")
        return requested
    return max(1, int(getattr(backend, "concurrency", 1)))


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


async def serve_miner(config: MinerConfig, key: KeyPair, backend: InferenceBackend) -> None:
    daemon = MinerDaemon(config, key, backend)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, daemon.stop)
    log.info(
        "miner starting",
        extra={"miner": key.address, "backend": config.backend_name, "coordinator": config.coordinator_url},
    )
    try:
        await daemon.run()
    finally:
        await asyncio.to_thread(backend.close)
        log.info("miner stopped", extra={"completed": daemon.completed})
