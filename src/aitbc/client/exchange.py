"""``ExchangeClient``: the exchange's REST API (``/api/v1``) for the CLI, bots and tests."""

from __future__ import annotations

from typing import Any

import httpx

from aitbc.client.http import RestClient


class ExchangeClient(RestClient):
    service = "exchange"

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        super().__init__(base_url, headers, timeout, transport)

    def login(self, username: str, password: str, totp: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"username": username, "password": password}
        if totp:
            body["totp"] = totp
        result: dict[str, Any] = self._request("POST", "/api/v1/sessions", json=body)
        return result

    def balances(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/api/v1/balances")["balances"]
        return result

    def orders(self, status: str = "open", limit: int = 100) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request(
            "GET", "/api/v1/orders", params={"status": status, "limit": limit}
        )["orders"]
        return result

    def place_order(self, **order: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/api/v1/orders", json=order)
        return result

    def cancel_order(self, order_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._request("DELETE", f"/api/v1/orders/{order_id}")
        return result

    def book(self, symbol: str = "AITBC-BTC", depth: int = 20) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/api/v1/markets/{symbol}/book", params={"depth": depth})
        return result

    def pending_withdrawals(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/api/v1/operator/withdrawals")["withdrawals"]
        return result

    def submit_signed_withdrawal(self, ref: str, psbt: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"/api/v1/operator/withdrawals/{ref}/signed", json={"psbt": psbt}
        )
        return result
