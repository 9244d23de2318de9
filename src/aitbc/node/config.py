"""Settings of ``aitbc node run`` and the layout of a node's data directory."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aitbc.runtime.settings import ServiceSettings

DEFAULT_RPC_PORT = 9080
DEFAULT_WS_PORT = 9081
DEFAULT_P2P_PORT = 9082


class NodeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AITBC_NODE_", extra="forbid", frozen=True)

    data_dir: Path
    host: str = "127.0.0.1"
    rpc_port: int = Field(DEFAULT_RPC_PORT, ge=0, le=65535)
    ws_port: int = Field(DEFAULT_WS_PORT, ge=0, le=65535)
    p2p_port: int = Field(DEFAULT_P2P_PORT, ge=0, le=65535)
    """Reserved for peer-to-peer gossip (multi-validator networks); a single PoA validator opens nothing."""

    @property
    def genesis_path(self) -> Path:
        return self.data_dir / "genesis.json"

    @property
    def validator_key_path(self) -> Path:
        return self.data_dir / "validator.key"

    @property
    def faucet_key_path(self) -> Path:
        return self.data_dir / "faucet.key"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "chain.db"
