"""``WalletClient``: the wallet daemon's REST API (and its JSON-RPC), with the daemon's API token."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from aitbc.client.http import RestClient
from aitbc.protocol.errors import RemoteError


def _raise_for(response: httpx.Response) -> Any:
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400:
        error = data.get("error", {}) if isinstance(data, dict) else {}
        if not isinstance(error, dict):  # FastAPI's own validation errors: {"detail": [...]}
            error = {}
        message = error.get("message") or (data.get("detail") if isinstance(data, dict) else None)
        raise RemoteError(
            str(message or f"HTTP {response.status_code}"),
            code=response.status_code,
            reason=error.get("reason") or ("invalid_params" if response.status_code == 422 else None),
            data=data,
        )
    return data


class WalletClient(RestClient):
    service = "wallet daemon"

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, {"Authorization": f"Bearer {token}"} if token else {}, timeout, transport)
        self._ids = itertools.count(1)

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        return _raise_for(response)

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/healthz")
        return result

    def list_wallets(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/v1/wallets")["wallets"])

    def create(self, name: str, passphrase: str, mnemonic: str | None = None) -> dict[str, Any]:
        body = {"name": name, "passphrase": passphrase, "mnemonic": mnemonic}
        result: dict[str, Any] = self._request("POST", "/v1/wallets", json=body)
        return result

    def unlock(self, name: str, passphrase: str, timeout_s: float | None = None) -> dict[str, Any]:
        body = {"passphrase": passphrase, "timeout_s": timeout_s}
        result: dict[str, Any] = self._request("POST", f"/v1/wallets/{name}/unlock", json=body)
        return result

    def lock(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/v1/wallets/{name}/lock")
        return result

    def balance(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/v1/wallets/{name}/balance")
        return result

    def sign_tx(self, name: str, tx: dict[str, Any]) -> dict[str, Any]:
        """The tx signed by wallet ``name`` (a multisig spend comes back with its approval added)."""
        result: dict[str, Any] = self._request("POST", f"/v1/wallets/{name}/sign", json={"tx": tx})
        return result

    def send(self, name: str, to: str, amount: int, fee: int, memo: str = "", *, wait: bool = False) -> dict[str, Any]:
        body = {"to": to, "amount": amount, "fee": fee, "memo": memo, "wait": wait}
        result: dict[str, Any] = self._request("POST", f"/v1/wallets/{name}/send", json=body)
        return result

    def verify_receipt(self, job_id: str | None = None, receipt: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"job_id": job_id, "receipt": receipt}
        result: dict[str, Any] = self._request("POST", "/v1/receipts/verify", json=body)
        return result

    def rpc(self, method: str, params: Any = None) -> Any:
        """One JSON-RPC call at ``/rpc``; an error reply raises ``RemoteError`` (code, ``data.reason``)."""
        payload = {"jsonrpc": "2.0", "method": method, "params": params or {}, "id": next(self._ids)}
        reply = self._request("POST", "/rpc", json=payload)
        error = reply.get("error")
        if error is not None:
            data = error.get("data")
            reason = data.get("reason") if isinstance(data, dict) else None
            raise RemoteError(error.get("message", "error"), code=error.get("code"), reason=reason, data=data)
        return reply.get("result")
