"""``PoolHubClient``: typed access to the pool hub's API (the CLI's and scripts')."""

from __future__ import annotations

from typing import Any

import httpx

from aitbc.client.http import AsyncRestClient, RestClient

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
        self,
        job: dict[str, Any],
        limit: int = 10,
        candidates: list[str] | None = None,
        explain: bool = False,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """``timeout``: this call's own limit (the coordinator waits briefly for a ranking, longer to explain)."""
        body = {"job": job, "limit": limit, "candidates": candidates, "explain": explain}
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        return dict(self._request("POST", "/v1/match", json=body, **extra))

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


class AsyncPoolHubClient(AsyncRestClient):
    """The pool hub's write API for the event loop (the coordinator forwards registrations, heartbeats and
    outcomes with it, in the background)."""

    service = "pool hub"

    def __init__(
        self,
        base_url: str = DEFAULT_POOLHUB_URL,
        token: str | None = None,
        *,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, {"Authorization": f"Bearer {token}"} if token else {}, timeout, transport)

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """``POST path`` (``/v1/miners``, ``/v1/heartbeats``, ``/v1/outcomes``); ``RemoteError`` if refused."""
        return await self._request("POST", path, json=body)
