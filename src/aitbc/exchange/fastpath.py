"""``POST /api/v1/orders`` without FastAPI's routing and dependency machinery (the hottest route).

Same parsing (the ``NewOrder`` pydantic model), same authentication, same ``place_order`` and the same
error bodies as the FastAPI route, which stays for everything this does not take: a body without a
declared length, a non-JSON content type, a body above the limit, a browser's request (an ``Origin``
header: the CORS middleware answers those). The transport's ``BodyLimit`` wraps both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from aitbc.exchange.api import authenticate_header, place_order
from aitbc.exchange.schemas import NewOrder
from aitbc.exchange.service import ExchangeService
from aitbc.protocol.errors import AitbcError

ORDERS_PATH = "/api/v1/orders"


async def _send_json(send: Send, status: int, body: Any) -> None:
    data = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


def validation_body(errors: list[Any]) -> dict[str, Any]:
    """The 422 body the FastAPI handler gives for the same errors (locations under ``body``)."""
    details = [{"loc": ["body", *e.get("loc", ())], "message": e.get("msg", "")} for e in errors]
    summary = "; ".join(f"{'.'.join(str(p) for p in d['loc'][1:])}: {d['message']}" for d in details[:5])
    return {"error": {"reason": "invalid_request", "message": summary, "details": details}}


class FastPath:
    def __init__(self, service: ExchangeService, max_body_bytes: int, status_for: Callable[[AitbcError], int]) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.status_for = status_for

    @staticmethod
    def matches(scope: Scope) -> bool:
        return bool(scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == ORDERS_PATH)

    def takes(self, scope: Scope) -> dict[bytes, bytes] | None:
        """The request's headers if this path serves it, else None (the full stack does)."""
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)
        length = headers.get(b"content-length")
        ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if ctype != b"application/json" or length is None or not length.isdigit():
            return None
        if b"origin" in headers:  # a browser: the full stack adds the CORS headers it needs
            return None
        if int(length) > self.max_body_bytes:
            return None
        return headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]) -> None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        metrics = self.service.metrics
        try:
            auth = headers.get(b"authorization")
            principal = authenticate_header(self.service, None if auth is None else auth.decode("latin-1"), "trade")
            try:
                body = NewOrder.model_validate_json(b"".join(chunks))
            except ValidationError as exc:
                metrics.rejections.labels("invalid_request").inc()
                await _send_json(send, 422, validation_body(exc.errors(include_url=False)))
                return
            view = await place_order(self.service, principal, body)
        except AitbcError as exc:
            metrics.rejections.labels(exc.reason).inc()
            await _send_json(send, self.status_for(exc), {"error": exc.to_dict()})
            return
        await _send_json(send, 201, view)
