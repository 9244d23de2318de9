"""``GET /api/v1/audits/{job_id}/input``: a job's input for its drawn auditor or dispute referee (signed)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from aitbc.coordinator.api.deps import Miner
from aitbc.coordinator.audits import AuditDesk
from aitbc.coordinator.blobs import BlobStore
from aitbc.protocol.errors import Unavailable

router = APIRouter(prefix="/api/v1/audits", tags=["miners"])


@router.get(
    "/{job_id}/input",
    summary="The input, delivered output and receipt of a job under audit, for the miner the chain drew to re-run it",
)
async def audit_input(job_id: str, miner: Miner, request: Request) -> dict[str, Any]:
    desk: AuditDesk | None = request.app.state.audits
    if desk is None:
        raise Unavailable("this coordinator runs jobs unpaid (no node): there are no audits")
    answer = await desk.audit_input(miner, job_id)
    store: BlobStore = request.app.state.blobs  # a sealed dataset: the copy its client re-sealed to this miner
    answer["resealed_dataset"] = (await asyncio.to_thread(store.resealed, job_id)).get(miner)
    return answer
