"""The node's HTTP face on the RPC port: JSON-RPC at ``/``, REST under ``/v1``, health and metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Final

import orjson
from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aitbc.chain.audit_types import AuditStatus
from aitbc.chain.gov_types import ProposalStatus
from aitbc.node import audit_views
from aitbc.node import governance as gov_views
from aitbc.node.openapi import rpc_request_body, tx_request_body, with_tx_components
from aitbc.node.rpc import METHODS, RpcLimits, handle_rpc_body, parse_block_ref
from aitbc.node.rpc_base import INVALID_REQUEST, RpcError
from aitbc.node.service import NodeService
from aitbc.protocol.address import decode_address
from aitbc.protocol.errors import EncodingError, InputTooLarge, InvalidRequest, InvalidTx, NotFound
from aitbc.runtime.cors import add_cors
from aitbc.runtime.http_errors import install_error_handlers

MAX_BODY_BYTES: Final = 16 * 1024 * 1024
MAX_INT64: Final = 2**63 - 1
"""Heights and sequence numbers are SQLite integers: a larger query value is a 422, not an OverflowError."""


class BodyTooLarge(Exception):
    pass


class TxNotFound(NotFound):
    """404 for an unknown tx, carrying its status (``pending`` / ``rejected`` / ``unknown``) in the body."""

    def __init__(self, message: str, *, status: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "status": self.status}


class TxRefused(InvalidTx):
    """400 for a tx the node refused (its ``TxRejection`` reason), naming the tx hash."""

    def __init__(self, refused: InvalidTx, tx_hash: str | None) -> None:
        super().__init__(refused.rejection, refused.message)
        self.reason = refused.reason
        self.tx_hash = tx_hash

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "tx_hash": self.tx_hash}


async def read_limited_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read the body, refusing (without buffering it all) anything over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _check_address(address: str) -> None:
    """Raises ``InvalidAddress`` (400 ``invalid_address``) for anything that is not an ``ait1…`` address."""
    decode_address(address)


def _found(found: dict[str, Any] | None, message: str) -> JSONResponse:
    if found is None:
        raise NotFound(message)
    return JSONResponse(found)


JobIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Job id")]
HashPath = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{64}$", description="64-character hex hash")]


def create_http_app(
    node: NodeService, rpc_limits: RpcLimits | None = None, cors_origins: Sequence[str] = ()
) -> FastAPI:
    app = FastAPI(
        title="AITBC node",
        version="0.1.0",
        description="JSON-RPC 2.0 at POST / (get_head, get_block, get_tx, get_tx_status, get_account, "
        "get_account_proof, send_tx, get_chain_info, get_job, get_job_proof) and the same reads as REST under /v1.",
    )

    add_cors(app, cors_origins)
    install_error_handlers(app)

    @app.post("/", summary="JSON-RPC 2.0 endpoint (single or batch)", openapi_extra=rpc_request_body(METHODS))
    async def json_rpc(request: Request) -> Response:
        try:
            body = await read_limited_body(request)
        except BodyTooLarge:
            error = RpcError(INVALID_REQUEST, f"request body larger than {MAX_BODY_BYTES} bytes")
            return Response(
                orjson.dumps({"jsonrpc": "2.0", "error": error.to_json(), "id": None}),
                status_code=413,
                media_type="application/json",
            )
        reply = await handle_rpc_body(node, body, rpc_limits)
        if reply.body is None:
            return Response(status_code=204)
        return Response(reply.body, status_code=reply.status, media_type="application/json")

    @app.get("/healthz", summary="Liveness and head height")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "chain_id": node.chain_id, "height": node.head.height}

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(node.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/head", summary="The last committed block header")
    async def head() -> dict[str, Any]:
        return node.head_json()

    @app.get("/v1/chain", summary="Chain id, genesis, authorities and parameters")
    async def chain_info() -> dict[str, Any]:
        return node.chain_info()

    @app.get("/v1/blocks/{ref}", summary="A block by height or hash")
    async def get_block(ref: str, include_txs: Annotated[bool, Query()] = True) -> Response:
        try:
            parsed = parse_block_ref(ref)
        except RpcError as exc:
            raise InvalidRequest(exc.message) from exc
        block = node.get_block(parsed)
        if block is None:
            raise NotFound(f"no block {ref}")
        return JSONResponse(node.block_json(block, include_txs=include_txs))

    @app.get("/v1/txs/{tx_hash}", summary="A committed or pending tx")
    async def get_tx(tx_hash: HashPath) -> Response:
        found = node.get_tx(tx_hash.lower())
        if found is None:
            raise TxNotFound(f"no tx {tx_hash}", status=node.tx_status(tx_hash.lower()))
        return JSONResponse(found)

    @app.get("/v1/txs/{tx_hash}/status", summary="pending | committed | rejected | unknown")
    async def get_tx_status(tx_hash: HashPath) -> dict[str, Any]:
        return node.tx_status(tx_hash.lower())

    @app.post(
        "/v1/txs",
        status_code=202,
        summary="Submit a signed tx (JSON object; kinds, bytes and signing: docs/transactions.md)",
        openapi_extra=tx_request_body(),
    )
    async def post_tx(request: Request) -> Response:
        try:
            body = await read_limited_body(request, limit=1024 * 1024)
        except BodyTooLarge:
            raise InputTooLarge("tx body larger than 1 MiB", reason="too_large") from None
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise EncodingError(f"body is not valid JSON: {exc}") from exc
        (result,) = await node.submit([raw])
        if result.error is not None:
            raise TxRefused(result.error, result.tx_hash)
        return JSONResponse({"tx_hash": result.tx_hash, "status": "pending"}, status_code=202)

    @app.get("/v1/accounts/{address}", summary="Balance and nonces of an account")
    async def get_account(address: str) -> Response:
        _check_address(address)
        return JSONResponse(node.account_json(address))

    @app.get("/v1/accounts/{address}/proof", summary="Merkle proof of an account against the head state root")
    async def get_account_proof(address: str) -> Response:
        _check_address(address)
        return JSONResponse(node.account_proof_json(address))

    @app.get("/v1/jobs/{job_id}", summary="A job's escrow: state, amounts, receipt hash and its txs")
    async def get_job(job_id: JobIdPath) -> Response:
        return _found(node.job_json(job_id), f"no escrow for job {job_id}")

    @app.get("/v1/jobs/{job_id}/proof", summary="Merkle proof of a job's escrow against the head state root")
    async def get_job_proof(job_id: JobIdPath) -> dict[str, Any]:
        return node.job_proof_json(job_id)

    @app.get("/v1/job-events", summary="On-chain job events (escrow_opened, settled, refunded) from a height")
    async def job_events(from_height: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0) -> dict[str, Any]:
        return {"events": node.job_events_since(from_height)}

    @app.get("/v1/job-events/page", summary="A page of job events after a sequence number, optionally for one address")
    async def job_events_page(
        after_seq: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
        address: Annotated[str | None, Query(pattern=r"^ait1[02-9ac-hj-np-z]+$", max_length=90)] = None,
        limit: Annotated[int, Query(ge=1, le=1_000)] = 1_000,
    ) -> dict[str, Any]:
        return node.job_events_after(after_seq, address, limit)

    add_governance_routes(app, node)
    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_tx_components(base_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


AuditStatusQuery = Annotated[
    str | None, Query(pattern="^(" + "|".join(s.value for s in AuditStatus) + ")$", description="Audit status")
]
ProposalStatusQuery = Annotated[
    str | None, Query(pattern="^(" + "|".join(s.value for s in ProposalStatus) + ")$", description="Proposal status")
]


def add_governance_routes(app: FastAPI, node: NodeService) -> None:
    """REST mirrors of the governance reads (``get_proposals``, ``get_proposal``, ``get_gov_params``,
    ``get_governance_proof``)."""

    @app.get("/v1/gov/proposals", summary="A page of proposals (without votes), optionally of one status")
    async def gov_proposals(
        status: ProposalStatusQuery = None,
        after_id: Annotated[int, Query(ge=0, lt=2**63)] = 0,
        limit: Annotated[int, Query(ge=1, le=gov_views.MAX_PROPOSALS_PAGE)] = gov_views.MAX_PROPOSALS_PAGE,
    ) -> dict[str, Any]:
        return gov_views.proposals_json(node, status, after_id, limit)

    @app.get("/v1/gov/proposals/{proposal_id}", summary="One proposal with its votes and (while open) projected tally")
    async def gov_proposal(proposal_id: Annotated[int, Path(ge=1, lt=2**63)]) -> Response:
        return _found(gov_views.proposal_json(node, proposal_id), f"no proposal {proposal_id}")

    @app.get("/v1/gov/params", summary="Live chain parameters, scheduled changes, their history, upgrade signals")
    async def gov_params() -> dict[str, Any]:
        return gov_views.gov_params_json(node)

    @app.get("/v1/gov/proof", summary="The whole governance state with its Merkle proof against the head state root")
    async def gov_proof() -> dict[str, Any]:
        return gov_views.governance_proof_json(node)

    @app.get("/v1/audits", summary="The newest audits, optionally of one status or one miner / auditor / referee")
    async def audits(
        status: AuditStatusQuery = None,
        address: Annotated[str | None, Query(pattern=r"^ait1[02-9ac-hj-np-z]+$", max_length=90)] = None,
        limit: Annotated[int, Query(ge=1, le=audit_views.MAX_AUDITS_PAGE)] = audit_views.MAX_AUDITS_PAGE,
    ) -> dict[str, Any]:
        return audit_views.audits_json(node, status, address, limit)

    @app.get("/v1/audits/proof", summary="The whole audit state (bonds, audits) with its Merkle proof")
    async def audit_proof() -> dict[str, Any]:
        return audit_views.audit_proof_json(node)

    @app.get("/v1/audits/{job_id}", summary="The audit of one job: draw, auditor, reports, dispute, outcome")
    async def audit(job_id: JobIdPath) -> Response:
        return _found(audit_views.audit_json(node, job_id), f"job {job_id} has not been audited")

    @app.get("/v1/audits/{job_id}/training", summary="A training audit's bisection: steps in dispute, who moves next")
    async def training_dispute(job_id: JobIdPath) -> Response:
        return _found(audit_views.training_dispute_json(node, job_id), f"job {job_id} has no training dispute")

    @app.get("/v1/miner-bonds/{address}", summary="A miner's bond, declared models and unbondings")
    async def miner_bond(address: str) -> Response:
        _check_address(address)
        return JSONResponse(audit_views.bond_json(node, address))
