"""Request-scoped helpers: the service, the calling client, the calling miner."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from aitbc.coordinator.api.body import json_body
from aitbc.coordinator.auth import ApiKey
from aitbc.coordinator.services import CoordinatorService
from aitbc.protocol.auth import HEADER_MINER, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP
from aitbc.protocol.job_messages import (
    ClaimManyRequest,
    ClaimRequest,
    FailureReport,
    HeartbeatRequest,
    JobRequest,
    MinerRegistration,
    ProgressReport,
    QuoteRequest,
    ReleaseRequest,
    ResultBatch,
    ResultSubmission,
)

# Dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a worker
# thread, a round trip that cost more than the rest of a job submission.


async def get_service(request: Request) -> CoordinatorService:
    service: CoordinatorService = request.app.state.service
    return service


Service = Annotated[CoordinatorService, Depends(get_service)]


async def get_client(service: Service, x_api_key: Annotated[str | None, Header()] = None) -> ApiKey:
    return await service.authenticate_client_async(x_api_key)


Client = Annotated[ApiKey, Depends(get_client)]


async def get_miner(request: Request, service: Service) -> str:
    body = await request.body()
    headers = {
        "miner": request.headers.get(HEADER_MINER),
        "timestamp": request.headers.get(HEADER_TIMESTAMP),
        "nonce": request.headers.get(HEADER_NONCE),
        "signature": request.headers.get(HEADER_SIGNATURE),
    }
    return service.authenticate_miner(headers, request.method, request.url.path, body)


Miner = Annotated[str, Depends(get_miner)]


# Request bodies, decoded into their protocol messages (see ``aitbc.coordinator.api.body``). Declare
# them after the caller's identity (``Client`` / ``Miner``): a request from nobody is a 401 before its
# body is looked at.
JobRequestBody = Annotated[JobRequest, Depends(json_body(JobRequest))]
QuoteRequestBody = Annotated[QuoteRequest, Depends(json_body(QuoteRequest))]
RegistrationBody = Annotated[MinerRegistration, Depends(json_body(MinerRegistration))]
ClaimBody = Annotated[ClaimRequest, Depends(json_body(ClaimRequest))]
ClaimManyBody = Annotated[ClaimManyRequest, Depends(json_body(ClaimManyRequest))]
ResultBatchBody = Annotated[ResultBatch, Depends(json_body(ResultBatch))]
HeartbeatBody = Annotated[HeartbeatRequest, Depends(json_body(HeartbeatRequest))]
ProgressBody = Annotated[ProgressReport, Depends(json_body(ProgressReport))]
ResultBody = Annotated[ResultSubmission, Depends(json_body(ResultSubmission))]
FailureBody = Annotated[FailureReport, Depends(json_body(FailureReport))]
ReleaseBody = Annotated[ReleaseRequest, Depends(json_body(ReleaseRequest))]
