"""What every AITBC REST client shares: one httpx client, a context manager, and errors as ``RemoteError``."""

from __future__ import annotations

from typing import Any, ClassVar, Self

import httpx

from aitbc.protocol.errors import RemoteError


def raise_for_problem(response: httpx.Response) -> Any:
    """The JSON body of a good answer; an AITBC problem body (``{"error": {reason, message}}``) as ``RemoteError``."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400:
        error = data.get("error", {}) if isinstance(data, dict) else {}
        raise RemoteError(
            error.get("message") or f"HTTP {response.status_code}",
            code=response.status_code,
            reason=error.get("reason"),
            data=data,
        )
    return data


class RestClient:
    service: ClassVar[str] = "service"
    """How errors name the other side ("cannot reach the <service> at …")."""

    def __init__(
        self, base_url: str, headers: dict[str, str], timeout: float, transport: httpx.BaseTransport | None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        return raise_for_problem(response)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(
                f"cannot reach the {self.service} at {self.base_url}: {exc}", reason="unreachable"
            ) from None
        return self._check(response)
