"""Where a devnet lives and the ``devnet.json`` that tells clients how to reach it."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from aitbc.protocol.errors import ConfigError
from aitbc.runtime.files import atomic_write

DEVNET_ENV = "AITBC_DEVNET"


def default_devnet_dir() -> Path:
    return Path(os.environ.get(DEVNET_ENV) or Path.home() / ".aitbc" / "devnet")


class DevnetInfo(msgspec.Struct, kw_only=True):
    """What scripts and the CLI need to talk to a running devnet (written to ``D/devnet.json``)."""

    chain_id: str
    rpc_url: str
    ws_url: str
    node_data_dir: str
    faucet_key: str
    validator_key: str
    keys_dir: str
    coordinator_url: str | None = None
    api_key: str | None = None
    """A client API key for the devnet's coordinator (send as X-Api-Key); its jobs are paid from ``deposit_id``."""
    deposit_id: str | None = None
    """The client's delegated deposit with the coordinator (``aitbc deposit show``)."""
    client_key: str | None = None
    """The client's key file: it signs the escrows that pay for jobs (funded at start)."""
    coordinator_address: str | None = None
    miner_key: str | None = None
    poolhub_url: str | None = None
    exchange_url: str | None = None
    web_url: str | None = None
    """The marketplace web app (``aitbc web serve``), when it is built."""
    pids: dict[str, int] = msgspec.field(default_factory=dict)


def devnet_file(data_dir: Path) -> Path:
    return data_dir / "devnet.json"


def write_devnet_info(data_dir: Path, info: DevnetInfo) -> None:
    atomic_write(devnet_file(data_dir), msgspec.json.format(msgspec.json.encode(info), indent=2) + b"\n")


def read_devnet_info(data_dir: Path) -> DevnetInfo:
    path = devnet_file(data_dir)
    try:
        return msgspec.json.decode(path.read_bytes(), type=DevnetInfo)
    except FileNotFoundError:
        raise ConfigError(
            f"no devnet at {data_dir} (missing devnet.json); start one with `aitbc devnet up` "
            f"or point --devnet / ${DEVNET_ENV} at its directory"
        ) from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{path} is not a valid devnet file: {exc}") from None
