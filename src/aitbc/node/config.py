"""Settings of ``aitbc node run`` and the layout of a node's data directory."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aitbc.node.peerbook import P2PLimits
from aitbc.runtime.limits import HttpServerSettings, MiB

DEFAULT_RPC_PORT = 9080
DEFAULT_WS_PORT = 9081
DEFAULT_P2P_PORT = 9082
DEFAULT_MAX_BATCH = 1_000
DEFAULT_MAX_REPLY_BYTES = 8 * MiB


class NodeSettings(HttpServerSettings):
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
    test_byzantine: bool = False
    """Tests only (hidden ``--test-byzantine``): misbehave as ``DATA_DIR/byzantine`` says (``aitbc.node.byzantine``)."""
    max_clock_drift_ms: int = Field(5_000, ge=0)
    """A proposal dated further than this after our clock is invalid (prevote nil)."""
    max_body_bytes: int = Field(4 * MiB, ge=1024)
    """Largest request body on the RPC port (a ``send_tx`` batch of 1,000 txs is well under 1 MiB)."""
    ws_max_connections: int = Field(1024, ge=1)
    """WebSocket subscribers at once; one more is answered 503 before the upgrade. Its opening handshake must
    finish within ``header_timeout_s``."""
    max_batch: int = Field(DEFAULT_MAX_BATCH, ge=1)
    """Most calls in one JSON-RPC batch (413 past it)."""
    max_reply_bytes: int = Field(DEFAULT_MAX_REPLY_BYTES, ge=64 * 1024)
    """Largest encoded JSON-RPC reply; a call or batch that would pass it gets 413 and an error, never a cut reply."""
    p2p_max_inbound: int = Field(64, ge=1)
    """Inbound p2p connections at once (in the handshake or authenticated)."""
    p2p_max_inbound_per_ip: int = Field(8, ge=1)
    p2p_pre_auth_frame_bytes: int = Field(4 * 1024, ge=512, le=64 * 1024)
    """Largest frame a peer may send before it proved its node key."""
    p2p_future_bytes_per_peer: int = Field(8 * 1024 * 1024, ge=0)
    """Bytes of verified future-height proposals and votes buffered per peer."""
    p2p_future_bytes_total: int = Field(64 * 1024 * 1024, ge=0)

    @property
    def p2p_limits(self) -> P2PLimits:
        return P2PLimits(
            pre_auth_frame=self.p2p_pre_auth_frame_bytes,
            max_inbound=self.p2p_max_inbound,
            max_inbound_per_ip=self.p2p_max_inbound_per_ip,
            future_bytes_per_peer=self.p2p_future_bytes_per_peer,
            future_bytes_total=self.p2p_future_bytes_total,
        )

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
    def byzantine_path(self) -> Path:
        return self.data_dir / "byzantine"

    @property
    def p2p_block_path(self) -> Path:
        """While this file exists the node drops all p2p traffic (the perturbation harness's "disconnect")."""
        return self.data_dir / "p2p.blocked"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "chain.db"
