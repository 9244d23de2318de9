"""A running devnet as a client sees it: ``devnet.json`` (endpoints, the client's API key and keys).

``load_devnet()`` is the one call a script needs to talk to a local devnet (``aitbc devnet up``):

    devnet = load_devnet()                       # $AITBC_DEVNET, else ~/.aitbc/devnet
    with devnet.coordinator() as coordinator:    # CoordinatorClient with the devnet's API key
        ...
    OpenAI(base_url=devnet.openai_base_url, api_key=devnet.api_key)

The file's format (``DevnetInfo``) is defined here, below the devnet runner that writes it
(``aitbc.devnet.config``), so clients read it without depending on the runner.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import msgspec

from aitbc.client.coordinator import CoordinatorClient
from aitbc.client.node import NodeClient
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import ConfigError
from aitbc.runtime.keyfile import read_keyfile

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
    coordinator_urls: list[str] = msgspec.field(default_factory=list)
    """Every coordinator replica (``devnet up --coordinators N``, on one PostgreSQL); the first is
    ``coordinator_url``. Any of them serves the whole API."""


def devnet_file(data_dir: Path) -> Path:
    return data_dir / "devnet.json"


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


@dataclass(frozen=True, slots=True)
class Devnet:
    """A devnet's endpoints and keys (from its ``devnet.json``), with ready clients."""

    data_dir: Path
    info: DevnetInfo

    @property
    def chain_id(self) -> str:
        return self.info.chain_id

    @property
    def rpc_url(self) -> str:
        """The node's JSON-RPC URL."""
        return self.info.rpc_url

    @property
    def coordinator_url(self) -> str:
        return _required(self.info.coordinator_url, "coordinator_url")

    @property
    def api_key(self) -> str:
        """The client's API key (paid from the client's deposit with the coordinator)."""
        return _required(self.info.api_key, "api_key")

    @property
    def openai_base_url(self) -> str:
        """The coordinator's OpenAI-compatible API, for ``OpenAI(base_url=…)``."""
        return self.coordinator_url.rstrip("/") + "/v1"

    @property
    def job_updates_url(self) -> str:
        """The coordinator's ``job_updates`` WebSocket."""
        return self.coordinator_url.rstrip("/").replace("http", "ws", 1) + "/api/v1/ws"

    def client_key(self) -> KeyPair:
        """The devnet client's key: it signs escrows and deposits (funded by the devnet)."""
        return read_keyfile(Path(_required(self.info.client_key, "client_key")))

    def coordinator(self, *, timeout: float = 60.0) -> CoordinatorClient:
        return CoordinatorClient(self.coordinator_url, self.api_key, timeout=timeout)

    def node(self) -> NodeClient:
        return NodeClient(self.rpc_url)


def load_devnet(data_dir: Path | str | None = None) -> Devnet:
    """The devnet at ``data_dir`` (default ``$AITBC_DEVNET`` or ``~/.aitbc/devnet``); ``ConfigError`` if none."""
    path = Path(data_dir) if data_dir is not None else default_devnet_dir()
    return Devnet(path, read_devnet_info(path))


def _required(value: str | None, name: str) -> str:
    if not value:
        raise ConfigError(f"this devnet has no {name} (was it started with a coordinator?)")
    return value
