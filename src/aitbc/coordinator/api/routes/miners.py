"""Miner API: every request is signed with the miner's key (see ``aitbc.protocol.auth``)."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Response

from aitbc.coordinator.api.deps import Miner, Service
from aitbc.coordinator.schemas import (
    ClaimRequest,
    FailRequest,
    HeartbeatRequest,
    MinerRegistration,
    ProgressRequest,
    ReleaseRequest,
    ResultRequest,
)
from aitbc.coordinator.services import BadResult, CoordinatorService
from aitbc.market.scoring import Outcome
from aitbc.protocol.job import JobOutput
from aitbc.protocol.receipt import InvalidReceipt, Receipt
from aitbc.protocol.zk import ZkReceiptProof

router = APIRouter(prefix="/api/v1/miners", tags=["miners"])


@router.post("/register", summary="Register or update this miner's capabilities")
async def register(body: MinerRegistration, miner: Miner, service: Service) -> dict[str, Any]:
    return await service.register_miner(miner, body.model_dump(exclude_none=True))


@router.post("/heartbeat", summary="I am alive; extend the leases of these jobs")
async def heartbeat(body: HeartbeatRequest, miner: Miner, service: Service) -> dict[str, Any]:
    return await service.heartbeat(miner, body.leases)


@router.post("/claim", summary="Long-poll for a job (204 when none arrived in time)", response_model=None)
async def claim(body: ClaimRequest, miner: Miner, service: Service) -> dict[str, Any] | Response:
    claimed = await service.claim(miner, body.wait_seconds)
    return Response(status_code=204) if claimed is None else claimed


@router.post("/jobs/{job_id}/progress", summary="Report progress (tokens); extends the lease")
async def progress(job_id: str, body: ProgressRequest, miner: Miner, service: Service) -> dict[str, Any]:
    return await service.progress(miner, job_id, body.lease_id, body.tokens, body.first_index)


@router.post("/jobs/{job_id}/result", summary="Deliver the output with the miner-signed receipt")
async def result(job_id: str, body: ResultRequest, miner: Miner, service: Service) -> dict[str, Any]:
    return await deliver_result(service, miner, job_id, body)


async def deliver_result(service: CoordinatorService, miner: str, job_id: str, body: ResultRequest) -> dict[str, Any]:
    """The result route's work (shared with ``aitbc.coordinator.api.fastpath``)."""
    try:
        output = msgspec.convert(body.output, JobOutput)
        receipt = msgspec.convert(body.receipt, Receipt)
        zk_proof = None if body.zk_proof is None else msgspec.convert(body.zk_proof, ZkReceiptProof)
    except msgspec.ValidationError as exc:
        raise BadResult(f"malformed output, receipt or zk proof: {exc}") from None
    try:
        return await service.submit_result(miner, job_id, body.lease_id, output, receipt, zk_proof)
    except InvalidReceipt as exc:  # measured against the miner by the matching policy
        service.match_policy.on_outcome(miner, job_id, 0, Outcome.RECEIPT_REJECTED, detail=str(exc)[:500])
        raise


@router.post("/jobs/{job_id}/fail", summary="Report that the job failed")
async def fail(job_id: str, body: FailRequest, miner: Miner, service: Service) -> dict[str, Any]:
    return await service.fail(miner, job_id, body.lease_id, body.error, body.retryable)


@router.post("/jobs/{job_id}/release", summary="Hand an unfinished job back (graceful shutdown)")
async def release(job_id: str, body: ReleaseRequest, miner: Miner, service: Service) -> dict[str, Any]:
    return await service.release(miner, job_id, body.lease_id)
