"""What every AITBC HTTP client shares: one httpx client, a context manager, and errors as ``RemoteError``.

``RestClient`` (blocking: the CLI, the SDK, the coordinator's node link) and ``AsyncRestClient`` (the
event loop: the miner's coordinator link, the coordinator's pool hub link) send the same way: a
transport failure is ``RemoteError(reason="unreachable")`` naming the other side, an answer of 400 or
more is ``RemoteError`` with the status as ``code`` and the problem body's ``reason``.
"""

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

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The raw response (any status); only a transport failure raises."""
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise unreachable(self.service, self.base_url, exc) from None

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._check(self._send(method, path, **kwargs))


def unreachable(service: str, base_url: str, exc: Exception) -> RemoteError:
    return RemoteError(f"cannot reach the {service} at {base_url}: {exc}", reason="unreachable")


def is_unreachable(exc: RemoteError) -> bool:
    """A transport failure (retry later), as opposed to an answer that refused the request."""
    return exc.reason == "unreachable" and exc.code is None


class AsyncRestClient:
    """``RestClient`` for the event loop (``httpx.AsyncClient``)."""

    service: ClassVar[str] = "service"

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        timeout: float | httpx.Timeout,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The raw response (any status); only a transport failure raises."""
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise unreachable(self.service, self.base_url, exc) from None

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return raise_for_problem(await self._send(method, path, **kwargs))
