"""Why a job goes (or went) to a miner: the matching policy's ranking for one of your jobs."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from aitbc.coordinator.api.deps import Client, Service
from aitbc.coordinator.dispatch import now_ms
from aitbc.coordinator.views import job_view

router = APIRouter(prefix="/api/v1", tags=["jobs"])


@router.get("/jobs/{job_id}/match", summary="How the live miners rank for this job now, and why others are excluded")
async def explain_match(job_id: str, client: Client, service: Service) -> dict[str, Any]:
    job = await service.get_job(client, job_id)
    live = service.live_miners()
    ranking = await asyncio.to_thread(service.match_policy.explain, job.requirements(), job_id, live, now_ms())
    return {"job": job_view(job), "ranking": ranking}
