"""A fast path for the coordinator's frequent requests.

FastAPI's per-request machinery (dependency solving, JSON parsing in Python, the router,
response validation and encoding) cost several times the work of a job submission or a
miner's progress report. ``CoordinatorAPI`` (the app) sends these requests here before
FastAPI's middleware and routing:

- ``POST /api/v1/jobs``, ``GET /api/v1/jobs/{job_id}`` and ``GET /api/v1/jobs/{job_id}/result``
  (clients), and
- ``POST /api/v1/miners/claim``, ``/claim-many``, ``/heartbeat``, ``/jobs/{job_id}/progress``,
  ``/jobs/{job_id}/result`` and ``/results`` (miners).

They are served with the very same pieces the routes use — the same protocol messages
(``aitbc.protocol.job_messages``, decoded from the raw JSON by the same ``decode_message``),
the same authentication, in the same order (``X-Api-Key`` or the miner's request signature
over method, path and body, then the body), the same ``CoordinatorService`` calls and the
app's own ``AitbcError`` rendering — and every other case goes to the FastAPI route
unchanged, so the API, its errors and ``/openapi.json`` stay exactly what the routes define:

- a body that is not JSON by ``Content-Type``, has no declared length or is larger than the
  limit goes to the full stack (with the body replayed) *before* anything else happens, so
  413 answers stay the app's and nothing is consumed (no rate-limit token, no miner nonce) twice;
- an ``AitbcError`` (bad key, rate limit, bad signature, a body that breaks its message type,
  unknown model, lost lease …) is rendered by the same function as the app's exception handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from aitbc.coordinator.api.routes.jobs import result_response, submit
from aitbc.coordinator.api.routes.miners import deliver_result, deliver_results
from aitbc.coordinator.services import CoordinatorService
from aitbc.coordinator.views import job_view
from aitbc.protocol.auth import HEADER_MINER, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP
from aitbc.protocol.errors import AitbcError
from aitbc.protocol.job_messages import (
    ClaimManyRequest,
    ClaimRequest,
    HeartbeatRequest,
    JobAssignment,
    JobAssignments,
    JobRequest,
    ProgressReport,
    ResultBatch,
    ResultSubmission,
    decode_message,
)
from aitbc.runtime.disconnect import client_gone

SUBMIT_PATH: Final = "/api/v1/jobs"
JOBS_PREFIX: Final = "/api/v1/jobs/"
MINERS_PREFIX: Final = "/api/v1/miners/"
_JOB_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MINER_HEADERS: Final = {
    HEADER_MINER.lower().encode(): "miner",
    HEADER_TIMESTAMP.lower().encode(): "timestamp",
    HEADER_NONCE.lower().encode(): "nonce",
    HEADER_SIGNATURE.lower().encode(): "signature",
}

Handler = Callable[
    [CoordinatorService, str, str, Any, "asyncio.Future[None] | None"],
    Awaitable[dict[str, Any] | JobAssignment | JobAssignments | None],
]
"""(service, miner, job id from the path, body, for a long poll: done once the miner's connection closed)
→ the answer."""
_LONG_POLLS: Final = frozenset({"claim", "claim-many"})
"""Routes that wait for work and watch their connection meanwhile (``aitbc.runtime.disconnect``)."""


async def _claim(
    service: CoordinatorService, miner: str, _: str, body: ClaimRequest, gone: asyncio.Future[None] | None
) -> JobAssignment | None:
    return await service.claim(miner, body.wait_seconds, gone)


async def _heartbeat(
    service: CoordinatorService, miner: str, _: str, body: HeartbeatRequest, _gone: asyncio.Future[None] | None
) -> dict[str, Any]:
    return await service.heartbeat(miner, body.leases)


async def _progress(
    service: CoordinatorService, miner: str, job_id: str, body: ProgressReport, _gone: asyncio.Future[None] | None
) -> dict[str, Any]:
    return await service.progress(miner, job_id, body.lease_id, body.tokens, body.first_index)


async def _result(
    service: CoordinatorService, miner: str, job_id: str, body: ResultSubmission, _gone: asyncio.Future[None] | None
) -> dict[str, Any]:
    return await deliver_result(service, miner, job_id, body)


async def _claim_many(
    service: CoordinatorService, miner: str, _: str, body: ClaimManyRequest, gone: asyncio.Future[None] | None
) -> JobAssignments | None:
    claimed = await service.claim_many(miner, body.wait_seconds, body.max_jobs, gone)
    return JobAssignments(assignments=claimed) if claimed else None


async def _results(
    service: CoordinatorService, miner: str, _: str, body: ResultBatch, _gone: asyncio.Future[None] | None
) -> dict[str, Any]:
    return await deliver_results(service, miner, body)


# route (below /api/v1/miners/) → request model, handler; "jobs/*/x" routes take the job id from the path
_MINER_ROUTES: Final[dict[str, tuple[type[Any], Handler]]] = {
    "claim": (ClaimRequest, _claim),
    "claim-many": (ClaimManyRequest, _claim_many),
    "results": (ResultBatch, _results),
    "heartbeat": (HeartbeatRequest, _heartbeat),
    "jobs/*/progress": (ProgressReport, _progress),
    "jobs/*/result": (ResultSubmission, _result),
}


def _miner_route(path: str) -> tuple[str, str] | None:
    """(route key, job id) for a miner path this fast path serves, else None."""
    rest = path[len(MINERS_PREFIX) :]
    if rest in _MINER_ROUTES:
        return rest, ""
    parts = rest.split("/")
    if len(parts) == 3 and parts[0] == "jobs" and _JOB_ID.fullmatch(parts[1]):
        key = f"jobs/*/{parts[2]}"
        if key in _MINER_ROUTES:
            return key, parts[1]
    return None


def _job_read(path: str) -> tuple[str, bool] | None:
    """(job id, wants the result) for ``/api/v1/jobs/{id}`` and ``/api/v1/jobs/{id}/result``, else None."""
    parts = path[len(JOBS_PREFIX) :].split("/")
    if not _JOB_ID.fullmatch(parts[0]):
        return None
    if len(parts) == 1:
        return parts[0], False
    if len(parts) == 2 and parts[1] == "result":
        return parts[0], True
    return None


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    return content_type.split(b";", 1)[0].strip().lower() == b"application/json"


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # e.g. an integer beyond 64 bits
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class FastPath:
    """Serves the requests above; ``app`` (the full FastAPI stack) gets whatever it does not handle."""

    def __init__(
        self,
        app: ASGIApp,
        service: CoordinatorService,
        render_error: Callable[[AitbcError], Response],
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.service = service
        self.render_error = render_error
        self.max_body_bytes = max_body_bytes

    @staticmethod
    def matches(scope: Scope) -> bool:
        if scope["type"] != "http":
            return False
        path: str = scope["path"]
        if scope["method"] == "GET":
            return path.startswith(JOBS_PREFIX) and _job_read(path) is not None
        if scope["method"] != "POST":
            return False
        return path == SUBMIT_PATH or (path.startswith(MINERS_PREFIX) and _miner_route(path) is not None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.matches(scope):
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)  # the first of repeated headers, as Starlette reads them
        if scope["method"] == "GET":
            await self._read_job(scope, receive, send, headers)
            return
        length = headers.get(b"content-length")
        # Only a JSON body of a declared, acceptable size; the full stack answers the rest (413, 422 …).
        if (
            not _is_json(headers.get(b"content-type"))
            or length is None
            or not length.isdigit()
            or int(length) > self.max_body_bytes
        ):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        if scope["path"] == SUBMIT_PATH:
            await self._submit(scope, receive, send, headers, body)
        else:
            await self._miner(scope, receive, send, headers, body)

    async def _submit(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], body: bytes
    ) -> None:
        api_key = headers.get(b"x-api-key")
        try:
            client = await self.service.authenticate_client_async(
                None if api_key is None else api_key.decode("latin-1")
            )
            view = await submit(self.service, client, decode_message(JobRequest, body))
        except AitbcError as exc:
            await self.render_error(exc)(scope, receive, send)
            return
        await _send_json(send, 201, view)

    async def _read_job(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]) -> None:
        found = _job_read(scope["path"])
        assert found is not None
        job_id, wants_result = found
        api_key = headers.get(b"x-api-key")
        try:
            client = await self.service.authenticate_client_async(
                None if api_key is None else api_key.decode("latin-1")
            )
            if wants_result:
                await (await result_response(self.service, client, job_id))(scope, receive, send)
                return
            view = job_view(await self.service.get_job(client, job_id))
        except AitbcError as exc:
            await self.render_error(exc)(scope, receive, send)
            return
        await _send_json(send, 200, view)

    async def _miner(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], body: bytes
    ) -> None:
        path: str = scope["path"]
        route = _miner_route(path)
        assert route is not None
        key, job_id = route
        kind, handler = _MINER_ROUTES[key]
        auth = {
            field: None if (v := headers.get(h)) is None else v.decode("latin-1") for h, field in _MINER_HEADERS.items()
        }
        try:
            miner = self.service.authenticate_miner(auth, "POST", path, body)
            watch: contextlib.AbstractAsyncContextManager[asyncio.Future[None] | None] = (
                client_gone(receive) if key in _LONG_POLLS else contextlib.nullcontext()
            )
            async with watch as gone:
                answer = await handler(self.service, miner, job_id, decode_message(kind, body), gone)
        except AitbcError as exc:
            await self.render_error(exc)(scope, receive, send)
            return
        if answer is None:  # a claim that found no work in time
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        if isinstance(answer, JobAssignment | JobAssignments):
            await _send_bytes(send, 200, msgspec.json.encode(answer))
            return
        await _send_json(send, 200, answer)


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send: Send, status: int, value: Any) -> None:
    await _send_bytes(send, status, _dumps(value))


async def _send_bytes(send: Send, status: int, payload: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(payload)).encode()), (b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})
