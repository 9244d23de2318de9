"""``PoolHubClient``: typed access to the pool hub's API (the CLI's and scripts')."""

from __future__ import annotations

from typing import Any

import httpx

from aitbc.client.http import RestClient

DEFAULT_POOLHUB_URL = "http://127.0.0.1:8012"


class PoolHubClient(RestClient):
    service = "pool hub"

    def __init__(
        self,
        base_url: str = DEFAULT_POOLHUB_URL,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, {"Authorization": f"Bearer {token}"} if token else {}, timeout, transport)

    def health(self) -> dict[str, Any]:
        return dict(self._request("GET", "/healthz"))

    def register(self, registration: dict[str, Any]) -> dict[str, Any]:
        return dict(self._request("POST", "/v1/miners", json=registration))

    def heartbeat(self, miner: str, load: int | None = None) -> dict[str, Any]:
        return dict(self._request("POST", "/v1/heartbeat", json={"miner": miner, "load": load}))

    def heartbeats(self, beats: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self._request("POST", "/v1/heartbeats", json={"beats": beats}))

    def outcome(self, report: dict[str, Any]) -> dict[str, Any]:
        return dict(self._request("POST", "/v1/outcomes", json=report))

    def match(
        self, job: dict[str, Any], limit: int = 10, candidates: list[str] | None = None, explain: bool = False
    ) -> dict[str, Any]:
        body = {"job": job, "limit": limit, "candidates": candidates, "explain": explain}
        return dict(self._request("POST", "/v1/match", json=body))

    def miners(self, online: bool = False, model: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"online": online, "limit": limit}
        if model:
            params["model"] = model
        return list(self._request("GET", "/v1/miners", params=params)["miners"])

    def miner(self, address: str, history: int = 20) -> dict[str, Any]:
        return dict(self._request("GET", f"/v1/miners/{address}", params={"history": history}))

    def leaderboard(self, model: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if model:
            params["model"] = model
        return list(self._request("GET", "/v1/leaderboard", params=params)["leaderboard"])

    def capacity(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/v1/capacity")["models"])

    def prices(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/v1/prices")["models"])
