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
    """Peer-to-peer gossip (multi-validator networks); a single PoA validator opens nothing."""
    peers: list[str] = Field(default_factory=list)
    """``host:port`` of the p2p endpoints to dial (multi-validator networks)."""
    timeout_propose_ms: int = Field(1_000, ge=10)
    timeout_vote_ms: int = Field(500, ge=10)
    timeout_delta_ms: int = Field(500, ge=0)
    bft_max_block_txs: int = Field(5_000, ge=1)
    """Most txs a BFT proposal carries: every validator must check it within the round's timeouts."""

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
    def sign_state_path(self) -> Path:
        return self.data_dir / "sign_state.json"

    @property
    def p2p_block_path(self) -> Path:
        """While this file exists the node drops all p2p traffic (the perturbation harness's "disconnect")."""
        return self.data_dir / "p2p.blocked"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "chain.db"
