"""Settings of ``aitbc web serve``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aitbc.runtime.limits import HttpServerSettings

DEFAULT_WEB_PORT = 8015


def default_dist_dir() -> Path:
    """``web/dist`` of the source checkout this package runs from (src layout: src/aitbc/web → web/dist)."""
    return Path(__file__).resolve().parents[3] / "web" / "dist"


class WebSettings(HttpServerSettings):
    model_config = SettingsConfigDict(env_prefix="AITBC_WEB_", extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_WEB_PORT, ge=0, le=65535)
    dist_dir: Path = Field(default_factory=default_dist_dir)
    """The built app (``npm run build`` in web/ writes it)."""
    coordinator_url: str | None = None
    node_url: str | None = None
    """The node's JSON-RPC / REST URL."""
    ws_url: str | None = None
    """The node's WebSocket (``ws://…/ws``): new blocks, txs and job updates, live."""
    poolhub_url: str | None = None
    exchange_url: str | None = None
    chain_id: str | None = None

    def service_urls(self) -> dict[str, str | None]:
        return {
            "coordinator_url": self.coordinator_url,
            "node_url": self.node_url,
            "ws_url": self.ws_url,
            "poolhub_url": self.poolhub_url,
            "exchange_url": self.exchange_url,
        }

    def connect_origins(self) -> list[str]:
        """The origins the page may connect to (its Content-Security-Policy ``connect-src``)."""
        origins = []
        for url in self.service_urls().values():
            if url:
                parts = urlsplit(url)
                origins.append(f"{parts.scheme}://{parts.netloc}")
        if self.exchange_url:  # its feed is a WebSocket on the same host and port
            parts = urlsplit(self.exchange_url)
            origins.append(f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}")
        return sorted(set(origins))
