"""Blobs: ``POST /api/v1/blobs`` stores a body under its sha256, ``GET /api/v1/blobs/{hash}`` gives it back to
those who may read it (``aitbc.coordinator.blob_access``; 404 for anyone else).

Clients authenticate with ``X-Api-Key``; miners with their signed request headers (the signature covers the
body's sha256, checked once the body is in; before a byte is read the miner must be registered and the
timestamp fresh). The body is streamed to disk and limited there (``blob_max_bytes``): this path is exempt
from the service-wide ``max_body_bytes``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from aitbc.coordinator.api.body import json_body, openapi_body
from aitbc.coordinator.api.deps import Client, Service
from aitbc.coordinator.blob_access import JOB_ID, may_read
from aitbc.coordinator.blobs import BlobStore
from aitbc.coordinator.dispatch import now_ms
from aitbc.coordinator.services import CoordinatorService
from aitbc.protocol.auth import HEADER_MINER, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP
from aitbc.protocol.errors import InvalidInput, NotFound, Unauthorized
from aitbc.protocol.training import SealedDataset

router = APIRouter(prefix="/api/v1", tags=["blobs"])
BLOBS_PATH = "/api/v1/blobs"
ResealedBody = Annotated[SealedDataset, Depends(json_body(SealedDataset))]
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _store(request: Request) -> BlobStore:
    store: BlobStore = request.app.state.blobs
    return store


async def _caller(request: Request, body_sha256: str | None) -> str:
    """The client key id or miner address making the request (``Unauthorized`` otherwise)."""
    service: CoordinatorService = request.app.state.service
    headers = request.headers
    api_key = headers.get("x-api-key")
    if api_key is not None:
        return (await service.authenticate_client_async(api_key)).id
    miner, timestamp = headers.get(HEADER_MINER), headers.get(HEADER_TIMESTAMP)
    if body_sha256 is None:  # before the body: a registered miner with a fresh timestamp, or nobody
        if not miner or not timestamp or not timestamp.isdigit():
            raise Unauthorized("send X-Api-Key (clients) or sign the request (miners)")
        if abs(now_ms() - int(timestamp)) > service.miner_auth.max_age_ms:
            raise Unauthorized("miner request timestamp is outside the accepted window (check the clock)")
        if all(live.offer.miner != miner for live in service.live_miners()):
            raise Unauthorized("only a registered miner may upload blobs")
        return miner
    return service.miner_auth.verify(
        miner,
        timestamp,
        headers.get(HEADER_NONCE),
        headers.get(HEADER_SIGNATURE),
        request.method,
        request.url.path,
        b"",
        now_ms(),
        body_sha256=body_sha256,
    )


@router.post(
    "/blobs",
    status_code=201,
    summary="Store a blob (a training dataset, weights, a loss curve); returns its sha256",
    description="The raw body is the blob (any content type), at most blob_max_bytes (413 past it).",
)
async def put_blob(request: Request) -> dict[str, Any]:
    caller = await _caller(request, None)
    length = request.headers.get("content-length")
    declared = int(length) if length is not None and length.isdigit() else None
    blob_hash, size = await _store(request).put(request.stream(), declared, owner=caller)
    if request.headers.get("x-api-key") is None:
        caller = await _caller(request, blob_hash)  # the miner's signature covers the body just stored
    return {"hash": blob_hash, "size": size, "uploaded_by": caller}


@router.get(
    "/blobs/{blob_hash}",
    summary="Fetch a blob by its sha256",
    description="For its uploaders; with `?job=ID` also for that job's client, miner and drawn auditor or referee "
    "when the job names the blob. 404 for anyone else, as for a blob that does not exist.",
    response_class=FileResponse,
)
async def get_blob(request: Request, blob_hash: str, job: str | None = None) -> FileResponse:
    caller = await _caller(request, EMPTY_SHA256)
    store = _store(request)
    path = store.path_of(blob_hash)  # 404: a malformed hash, or a blob not stored
    if not await may_read(request.app.state.service, store, request.app.state.audits, caller, blob_hash, job):
        raise NotFound(f"no blob {blob_hash}", reason="blob_not_found")  # the answer for a blob not stored
    return FileResponse(path, media_type="application/octet-stream", headers={"X-Blob-Hash": blob_hash})


@router.post(
    "/jobs/{job_id}/sealed-datasets",
    status_code=201,
    summary="Give a drawn auditor or referee the job's sealed dataset, re-sealed to it by the client",
    description="For an audited training job on a sealed dataset: `{miner, blob}`, the blob (uploaded by this key) "
    "holding the dataset sealed to that miner; its audit input names it (docs/training.md).",
    openapi_extra=openapi_body(SealedDataset),
)
async def put_resealed_dataset(
    request: Request, job_id: str, client: Client, service: Service, body: ResealedBody
) -> dict[str, Any]:
    job = await service.db.get_job(job_id) if JOB_ID.match(job_id) else None
    if job is None or job.api_key_id != client.id:
        raise NotFound(f"no job {job_id}")
    spec = job.training
    if spec is None or spec.sealed_dataset is None:
        raise InvalidInput(f"job {job_id} is not a training job on a sealed dataset")
    store = _store(request)
    if not await store.holds_async(client.id, body.blob):
        raise InvalidInput(f"no blob {body.blob} of yours on this coordinator", reason="dataset_missing")
    await asyncio.to_thread(store.put_resealed, job_id, body.miner, body.blob)
    return {"job_id": job_id, "miner": body.miner, "blob": body.blob}
