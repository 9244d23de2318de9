"""Miner API: every request is signed with the miner's key (see ``aitbc.protocol.auth``)."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Request, Response

from aitbc.coordinator.api.body import openapi_body
from aitbc.coordinator.api.deps import (
    ClaimBody,
    ClaimManyBody,
    FailureBody,
    HeartbeatBody,
    Miner,
    ProgressBody,
    RegistrationBody,
    ReleaseBody,
    ResultBatchBody,
    ResultBody,
    Service,
)
from aitbc.coordinator.completion import DeliveredResult
from aitbc.coordinator.services import CoordinatorService
from aitbc.market.scoring import Outcome
from aitbc.protocol.errors import AitbcError
from aitbc.protocol.job_messages import (
    ClaimManyRequest,
    ClaimRequest,
    FailureReport,
    HeartbeatRequest,
    JobAssignment,
    JobAssignments,
    MinerRegistration,
    ProgressReport,
    ReleaseRequest,
    ResultBatch,
    ResultSubmission,
)
from aitbc.protocol.receipt import InvalidReceipt
from aitbc.runtime.disconnect import client_gone
from aitbc.runtime.errors import http_status

router = APIRouter(prefix="/api/v1/miners", tags=["miners"])


@router.post(
    "/register",
    summary="Register or update this miner's capabilities",
    openapi_extra=openapi_body(MinerRegistration),
)
async def register(miner: Miner, service: Service, body: RegistrationBody) -> dict[str, Any]:
    return await service.register_miner(miner, body)


@router.post(
    "/heartbeat",
    summary="I am alive; extend the leases of these jobs",
    openapi_extra=openapi_body(HeartbeatRequest),
)
async def heartbeat(miner: Miner, service: Service, body: HeartbeatBody) -> dict[str, Any]:
    return await service.heartbeat(miner, body.leases)


@router.post(
    "/claim",
    summary="Long-poll for a job (204 when none arrived in time)",
    response_model=None,
    openapi_extra={
        **openapi_body(ClaimRequest),
        "responses": {
            "200": {
                "description": "The job and its lease",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{JobAssignment.__name__}"}}},
            },
            "204": {"description": "No job arrived in time"},
        },
    },
)
async def claim(miner: Miner, service: Service, body: ClaimBody, request: Request) -> Response:
    async with client_gone(request.receive) as gone:
        claimed = await service.claim(miner, body.wait_seconds, gone)
    return Response(status_code=204) if claimed is None else assignment_response(claimed)


@router.post(
    "/claim-many",
    summary="Long-poll for up to max_jobs jobs at once (204 when none arrived in time)",
    response_model=None,
    openapi_extra={
        **openapi_body(ClaimManyRequest),
        "responses": {
            "200": {
                "description": "The jobs and their leases",
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{JobAssignments.__name__}"}}
                },
            },
            "204": {"description": "No job arrived in time"},
        },
    },
)
async def claim_many(miner: Miner, service: Service, body: ClaimManyBody, request: Request) -> Response:
    async with client_gone(request.receive) as gone:
        claimed = await service.claim_many(miner, body.wait_seconds, body.max_jobs, gone)
    if not claimed:
        return Response(status_code=204)
    return Response(msgspec.json.encode(JobAssignments(assignments=claimed)), media_type="application/json")


@router.post(
    "/results",
    summary="Deliver several results at once; each is accepted or refused on its own",
    description="Answers `results`: per job, `receipt_hash` when accepted, else `error` {reason, message, status}.",
    openapi_extra=openapi_body(ResultBatch),
)
async def results(miner: Miner, service: Service, body: ResultBatchBody) -> dict[str, Any]:
    return await deliver_results(service, miner, body)


def assignment_response(assignment: JobAssignment) -> Response:
    return Response(msgspec.json.encode(assignment), media_type="application/json")


@router.post(
    "/jobs/{job_id}/progress",
    summary="Report progress (tokens); extends the lease",
    openapi_extra=openapi_body(ProgressReport),
)
async def progress(job_id: str, miner: Miner, service: Service, body: ProgressBody) -> dict[str, Any]:
    return await service.progress(miner, job_id, body.lease_id, body.tokens, body.first_index)


@router.post(
    "/jobs/{job_id}/result",
    summary="Deliver the output with the miner-signed receipt",
    openapi_extra=openapi_body(ResultSubmission),
)
async def result(job_id: str, miner: Miner, service: Service, body: ResultBody) -> dict[str, Any]:
    return await deliver_result(service, miner, job_id, body)


async def deliver_result(
    service: CoordinatorService, miner: str, job_id: str, body: ResultSubmission
) -> dict[str, Any]:
    """The result route's work (shared with ``aitbc.coordinator.api.fastpath``)."""
    delivered = DeliveredResult(job_id, body.lease_id, body.output, body.receipt, body.zk_proof)
    answer = (await _submit(service, miner, [delivered]))[0]
    if isinstance(answer, AitbcError):
        raise answer
    return answer


async def deliver_results(service: CoordinatorService, miner: str, body: ResultBatch) -> dict[str, Any]:
    """The results route's work: each result accepted or refused on its own, the accepted ones stored in one
    transaction (shared with ``aitbc.coordinator.api.fastpath``)."""
    items = [DeliveredResult(i.job_id, i.lease_id, i.output, i.receipt, i.zk_proof) for i in body.results]
    answers: list[dict[str, Any]] = []
    for item, answer in zip(items, await _submit(service, miner, items), strict=True):
        if isinstance(answer, AitbcError):
            answers.append({"job_id": item.job_id, "error": {**answer.to_dict(), "status": http_status(answer)}})
        else:
            answers.append({"job_id": item.job_id, "receipt_hash": answer["receipt_hash"]})
    return {"results": answers}


async def _submit(
    service: CoordinatorService, miner: str, items: list[DeliveredResult]
) -> list[dict[str, Any] | AitbcError]:
    answers = await service.submit_results(miner, items)
    for item, answer in zip(items, answers, strict=True):
        if isinstance(answer, InvalidReceipt):  # measured against the miner by the matching policy
            detail = str(answer)[:500]
            service.match_policy.on_outcome(miner, item.job_id, 0, Outcome.RECEIPT_REJECTED, detail=detail)
    return answers


@router.post("/jobs/{job_id}/fail", summary="Report that the job failed", openapi_extra=openapi_body(FailureReport))
async def fail(job_id: str, miner: Miner, service: Service, body: FailureBody) -> dict[str, Any]:
    return await service.fail(miner, job_id, body.lease_id, body.error, body.retryable)


@router.post(
    "/jobs/{job_id}/release",
    summary="Hand an unfinished job back (graceful shutdown)",
    openapi_extra=openapi_body(ReleaseRequest),
)
async def release(job_id: str, miner: Miner, service: Service, body: ReleaseBody) -> dict[str, Any]:
    return await service.release(miner, job_id, body.lease_id)
