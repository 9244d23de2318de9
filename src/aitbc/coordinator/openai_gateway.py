"""The OpenAI-compatible API (``/v1``) as jobs: submit through the one job path, follow the job's events.

Every ``/v1`` request becomes a ``JobRequest`` (``aitbc.protocol.openai_messages``) and goes through
``CoordinatorService.submit_job`` — the very call ``POST /api/v1/jobs`` makes — so it is authenticated,
rate limited and paid (from the API key's deposit) exactly like any job: there is no second payment
path. The answer is then read from the job's live events (``JobEventBroker``): a streamed request
forwards each token the miner reports as it arrives; ``usage`` comes from the miner-signed receipt,
``id`` is the job id and ``system_fingerprint`` the served model's digest.

A client that goes away does not cancel its job: the job runs to its end and is charged (its tokens
were asked for); ``POST /api/v1/jobs/{id}/cancel`` with the job id from the ``X-Aitbc-Job-Id`` header
stops it. Each API key may hold ``openai_max_open_per_key`` ``/v1`` requests open at once (429 past it).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from aitbc.coordinator.auth import ApiKey
from aitbc.coordinator.db.records import JobRecord
from aitbc.coordinator.events import JobEvent
from aitbc.coordinator.services import CoordinatorService
from aitbc.market.lifecycle import TERMINAL_STATES, JobState
from aitbc.protocol.errors import AitbcError, InvalidRequest, RateLimited, Unauthorized, UnknownModel
from aitbc.protocol.job import unpack_vectors
from aitbc.protocol.job_messages import JobRequest
from aitbc.protocol.openai_messages import (
    DIGEST_SEPARATOR,
    EmbeddingItem,
    EmbeddingList,
    EmbeddingUsage,
    ErrorBody,
    ErrorDetail,
    ModelCard,
    ModelList,
    Usage,
)
from aitbc.runtime.errors import http_status

log = logging.getLogger("aitbc.coordinator.openai")

OPENAI_PREFIX: Final = "/v1/"
TERMINAL: Final = frozenset(s.value for s in TERMINAL_STATES)
JOB_ID_HEADER: Final = "X-Aitbc-Job-Id"
RECEIPT_HEADER: Final = "X-Aitbc-Receipt"


class JobNotCompleted(AitbcError):
    """The job behind a ``/v1`` request ended without a result (failed 502, expired 504, cancelled 409)."""

    def __init__(self, job: JobRecord) -> None:
        detail = f": {job.error}" if job.error else ""
        super().__init__(f"job {job.id} {job.state}{detail}", reason=f"job_{job.state}")
        self.state = job.state


class TooManyOpenRequests(RateLimited):
    reason = "too_many_open_requests"

    def __init__(self, limit: int) -> None:
        super().__init__(f"this API key already has {limit} /v1 requests open (openai_max_open_per_key)", 1.0)


# -- errors in OpenAI's shape ----------------------------------------------------------------------------

_JOB_END_STATUS: Final = {"failed": 502, "expired": 504, "cancelled": 409}


def openai_error(exc: AitbcError) -> tuple[int, ErrorBody]:
    """The HTTP status and OpenAI error body of an ``AitbcError`` raised on a ``/v1`` route.

    The status is the error class's own (``aitbc.runtime.errors``) except where OpenAI clients expect
    another: a body that breaks its type or a job's limits is a 400 (not 422 / 413), an unknown model
    a 404 ``model_not_found``.
    """
    status = _JOB_END_STATUS.get(exc.state, 500) if isinstance(exc, JobNotCompleted) else http_status(exc)
    code, param = exc.reason, None
    if isinstance(exc, UnknownModel):
        status, code, param = 404, "model_not_found", "model"
    elif status in (413, 422):
        status = 400
        param = (exc.field or None) if isinstance(exc, InvalidRequest) else None
    elif isinstance(exc, Unauthorized):
        code = "invalid_api_key"
    elif isinstance(exc, RateLimited) and not isinstance(exc, TooManyOpenRequests):
        code = "rate_limit_exceeded"
    kinds = {401: "invalid_request_error", 402: "insufficient_quota", 429: "rate_limit_error"}
    kind = kinds.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return status, ErrorBody(error=ErrorDetail(message=exc.message, type=kind, param=param, code=code))


# -- following one job ---------------------------------------------------------------------------------


@dataclass(slots=True)
class JobRun:
    """A submitted ``/v1`` job and its event feed; ``close`` when done with it."""

    job_id: str
    created: int
    """Unix seconds, the ``created`` of every response object."""
    history: list[JobEvent]
    queue: asyncio.Queue[JobEvent | None] | None
    on_close: Callable[[], None]
    closed: bool = field(default=False)

    async def follow(self, keepalive_s: float | None) -> AsyncIterator[JobEvent | None]:
        """The job's events in order until its final status; ``None`` each ``keepalive_s`` of silence."""
        for event in self.history:
            yield event
            if _is_final(event):
                return
        if self.queue is None:
            return
        while True:
            try:
                item = await asyncio.wait_for(self.queue.get(), keepalive_s)
            except TimeoutError:
                yield None
                continue
            if item is None:
                return
            yield item
            if _is_final(item):
                return

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.on_close()


def _is_final(event: JobEvent) -> bool:
    return event.event == "status" and event.data.get("state") in TERMINAL


class OpenAIGateway:
    def __init__(self, service: CoordinatorService, max_open_per_key: int, keepalive_s: float) -> None:
        self.service = service
        self.max_open_per_key = max_open_per_key
        self.keepalive_s = keepalive_s
        self._open: dict[str, int] = {}

    def models(self) -> ModelList:
        """One card per (name, digest) live miners serve; a name served with two digests gets ``name@digest`` ids."""
        by_name: dict[str, set[str]] = {}
        entries: dict[tuple[str, str, str], dict[str, Any]] = {}
        for miner in self.service.live_miners():
            for model in miner.offer.models:
                by_name.setdefault(model.name, set()).add(model.digest)
                entry = entries.setdefault(
                    (model.name, model.digest, model.kind),
                    {"miners": [], "prices": []},
                )
                entry["miners"].append(miner.offer.miner)
                entry["prices"].append(model.unit_price)
        cards = []
        for (name, digest, kind), entry in sorted(entries.items()):
            miners = sorted(set(entry["miners"]))
            cards.append(
                ModelCard(
                    id=name if len(by_name[name]) == 1 else f"{name}{DIGEST_SEPARATOR}{digest}",
                    created=0,
                    owned_by=miners[0] if len(miners) == 1 else f"{len(miners)} miners",
                    kind=kind,
                    digest=digest,
                    miners=miners,
                    min_unit_price=min(entry["prices"]),
                    max_unit_price=max(entry["prices"]),
                )
            )
        return ModelList(data=cards)

    def _claim_slot(self, client: ApiKey) -> Callable[[], None]:
        count = self._open.get(client.id, 0)
        if count >= self.max_open_per_key:
            raise TooManyOpenRequests(self.max_open_per_key)
        self._open[client.id] = count + 1

        def release() -> None:
            left = self._open.get(client.id, 1) - 1
            if left > 0:
                self._open[client.id] = left
            else:
                self._open.pop(client.id, None)

        return release

    async def start(self, client: ApiKey, request: JobRequest) -> JobRun:
        """Submit the job through the one job path (payment included) and subscribe to its events."""
        release = self._claim_slot(client)
        try:
            view = await self.service.submit_job(client, request)
        except BaseException:
            release()
            raise
        job_id: str = view["job_id"]
        history, queue = self.service.events.subscribe(job_id)

        def close() -> None:
            release()
            if queue is not None:
                self.service.events.unsubscribe(job_id, queue)

        return JobRun(job_id, view["created_at_ms"] // 1000, history, queue, close)

    async def finish(self, client: ApiKey, run: JobRun) -> tuple[JobRecord, Usage]:
        """Wait for the job's end: the completed job (with its output) and the receipt's usage."""
        async for _ in run.follow(None):
            pass
        return await self.outcome(client, run.job_id)

    async def outcome(self, client: ApiKey, job_id: str) -> tuple[JobRecord, Usage]:
        job = await self.service.get_job(client, job_id)
        if job.state != JobState.COMPLETED.value or job.result is None:
            raise JobNotCompleted(job)
        receipt = await self.service.get_receipt(client, job_id, job=job)
        units = receipt["receipt"]["units"]
        prompt, completion = int(units["prompt_tokens"]), int(units["completion_tokens"])
        return job, Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def job_headers(job_id: str) -> dict[str, str]:
    """Response headers that name the job and where its receipt is (``x-request-id`` for the OpenAI SDK)."""
    return {JOB_ID_HEADER: job_id, RECEIPT_HEADER: f"/api/v1/jobs/{job_id}/receipt", "x-request-id": job_id}


def embedding_list(job: JobRecord, model: str, usage: Usage, encoding: str) -> EmbeddingList:
    assert job.result is not None
    output = job.result
    if encoding == "base64":  # the stored bytes are already little-endian float32, as OpenAI's base64 is
        raw = bytes.fromhex(output.vectors_f32)
        step = 4 * output.dimensions
        items = [
            EmbeddingItem(index=i, embedding=base64.b64encode(raw[i * step : (i + 1) * step]).decode())
            for i in range(len(raw) // step if step else 0)
        ]
    else:
        vectors = unpack_vectors(output.dimensions, output.vectors_f32)
        items = [EmbeddingItem(index=i, embedding=v) for i, v in enumerate(vectors)]
    return EmbeddingList(
        data=items,
        model=model,
        usage=EmbeddingUsage(prompt_tokens=usage.prompt_tokens, total_tokens=usage.total_tokens),
    )


def sse(message: msgspec.Struct) -> bytes:
    return b"data: " + msgspec.json.encode(message) + b"\n\n"


SSE_DONE: Final = b"data: [DONE]\n\n"
SSE_KEEPALIVE: Final = b": keep-alive\n\n"
