"""Client API: submit, inspect, stream, cancel jobs; results and receipts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from aitbc.coordinator.api.body import openapi_body
from aitbc.coordinator.api.deps import Client, JobRequestBody, QuoteRequestBody, Service
from aitbc.coordinator.auth import ApiKey
from aitbc.coordinator.blobs import BlobStore
from aitbc.coordinator.services import CoordinatorService
from aitbc.coordinator.views import job_view
from aitbc.market.lifecycle import TERMINAL_STATES, JobState
from aitbc.protocol.errors import InvalidInput
from aitbc.protocol.job import unpack_vectors
from aitbc.protocol.job_messages import JobRequest, QuoteRequest
from aitbc.protocol.training import get_dataset_blob
from aitbc.protocol.zkml import ZK_INFERENCE, parse_zk_inference_proofs

router = APIRouter(prefix="/api/v1", tags=["jobs"])


async def submit(service: CoordinatorService, client: ApiKey, body: JobRequest) -> dict[str, Any]:
    """One submission, for the routed and the fast path alike."""
    spec = body.input.training
    if spec is not None:  # the dataset must be a blob this client uploaded, not someone else's it knows of
        blob = get_dataset_blob(spec)
        if not await BlobStore.at(service.settings).holds_async(client.id, blob):
            raise InvalidInput(
                f"no blob {blob} of yours on this coordinator: upload the dataset first (POST /api/v1/blobs)",
                reason="dataset_missing",
            )
    return await service.submit_job(client, body)


@router.post(
    "/jobs/quote",
    summary="Which miner would run a job, and at what unit price",
    description="For a private job: seal the input to the returned miner (its address is its key), then submit "
    "with `sealed`; only that miner can claim it.",
    openapi_extra=openapi_body(QuoteRequest),
)
async def quote(client: Client, service: Service, body: QuoteRequestBody) -> dict[str, Any]:
    return service.quote(body.type, body.model, body.model_digest)


@router.post(
    "/jobs",
    status_code=201,
    summary="Submit a job",
    description="On a coordinator with a node (paid jobs), `job_id` names the escrow the client opened on chain; "
    "402 says what is wrong with it.",
    openapi_extra=openapi_body(JobRequest),
)
async def submit_job(client: Client, service: Service, body: JobRequestBody) -> dict[str, Any]:
    return await submit(service, client, body)


@router.get("/jobs", summary="List your jobs, newest first")
async def list_jobs(
    client: Client,
    service: Service,
    state: Annotated[JobState | None, Query()] = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    before = None
    if cursor:
        before = parse_list_cursor(cursor)
        if before is None:
            return JSONResponse({"error": {"reason": "invalid_cursor", "message": "malformed cursor"}}, status_code=400)  # type: ignore[return-value]
    rows = await service.list_jobs(client, None if state is None else state.value, model, limit, before)
    last = rows[-1] if len(rows) == limit else None
    next_cursor = None if last is None else f"{last.created_at_ms}:{last.created_seq}:{last.id}"
    return {"jobs": [job_view(r) for r in rows], "next_cursor": next_cursor}


def parse_list_cursor(cursor: str) -> tuple[int, int, str] | None:
    """A job list's ``next_cursor`` (``<created_at_ms>:<created_seq>:<job id>``), or None if it is not one."""
    created, _, rest = cursor.partition(":")
    seq, _, job_id = rest.partition(":")
    numbers_ok = all(n.isascii() and n.isdigit() and len(n) <= 18 for n in (created, seq))
    return (int(created), int(seq), job_id) if numbers_ok and 0 < len(job_id) <= 64 else None


@router.get("/jobs/{job_id}", summary="Job status with timestamps and attempts")
async def get_job(job_id: str, client: Client, service: Service) -> dict[str, Any]:
    return job_view(await service.get_job(client, job_id))


@router.get("/jobs/{job_id}/result", summary="The result (409 while running, 410 if it never will be)")
async def get_result(job_id: str, client: Client, service: Service) -> JSONResponse:
    return await result_response(service, client, job_id)


async def result_response(service: CoordinatorService, client: ApiKey, job_id: str) -> JSONResponse:
    """The result route's answer (shared with ``aitbc.coordinator.api.fastpath``)."""
    job = await service.get_job(client, job_id)
    state = job.state
    if state != JobState.COMPLETED.value or job.result is None:
        gone = state in {s.value for s in TERMINAL_STATES}
        return JSONResponse(
            {
                "error": {
                    "reason": f"job_{state}" if gone else "not_ready",
                    "state": state,
                    "message": f"job is {state}"
                    + (f": {job.error}" if gone and job.error else "; the result is not ready yet"),
                }
            },
            status_code=410 if gone else 409,
        )
    output = job.result
    receipt = await service.get_receipt(client, job_id, job=job)
    body: dict[str, Any] = {
        "job_id": job_id,
        "state": state,
        "model": job.model,
        "model_digest": job.served_digest,
        "receipt_hash": receipt["receipt_hash"],
        "usage": receipt["receipt"]["units"],
        "total_price": receipt["receipt"]["total_price"],
    }
    if job.type == ZK_INFERENCE:  # EXPERIMENTAL: the outputs and the EZKL proofs of them
        body["output"] = {
            "experimental": True,
            "outputs": unpack_vectors(output.dimensions, output.vectors_f32),
            "proofs": parse_zk_inference_proofs(output.text),
        }
    elif output.training is not None:  # the commitment the receipt's output_hash is, and the blobs to fetch
        body["output"] = {"training": msgspec.to_builtins(output.training)}
    elif output.text is not None:
        body["output"] = {"text": output.text}
    else:
        body["output"] = {
            "dimensions": output.dimensions,
            "embeddings": unpack_vectors(output.dimensions, output.vectors_f32),
        }
    return JSONResponse(body)


@router.get("/jobs/{job_id}/receipt", summary="The miner-signed, coordinator-countersigned receipt")
async def get_receipt(job_id: str, client: Client, service: Service) -> dict[str, Any]:
    return await service.get_receipt(client, job_id)


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job that has not finished")
async def cancel_job(job_id: str, client: Client, service: Service) -> dict[str, Any]:
    return await service.cancel_job(client, job_id)


def _sse(event: str, seq: int, data: dict[str, Any]) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, event.encode(), orjson.dumps(data))


@router.get("/jobs/{job_id}/events", summary="Server-sent events: status changes and generated tokens")
async def job_events(job_id: str, request: Request, client: Client, service: Service) -> StreamingResponse:
    job = await service.get_job(client, job_id)
    history, queue = service.events.subscribe(job_id)

    async def stream() -> AsyncIterator[bytes]:
        # Events that are already there go out as one write (a progress report publishes its tokens
        # together): the same bytes as one write per event, at a fraction of the cost for both sides.
        try:
            if history:
                yield b"".join(_sse(item.event, item.seq, item.data) for item in history)
            if queue is None:
                if not history or history[-1].data.get("state") not in {s.value for s in TERMINAL_STATES}:
                    latest = await service.get_job(client, job_id)
                    yield _sse("status", 0, job_view(latest))
                return
            if job.state in {s.value for s in TERMINAL_STATES} and not history:
                yield _sse("status", 0, job_view(job))
                return
            while True:
                pushed = await queue.get()
                chunk: list[bytes] = []
                while pushed is not None:
                    chunk.append(_sse(pushed.event, pushed.seq, pushed.data))
                    if queue.empty():
                        break
                    pushed = queue.get_nowait()
                if chunk:
                    yield b"".join(chunk)
                if pushed is None:
                    return
        finally:
            if queue is not None:
                service.events.unsubscribe(job_id, queue)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/models", summary="Models served by live miners, with digests and prices")
async def list_models(service: Service) -> dict[str, Any]:
    return {"models": service.served_models()}
