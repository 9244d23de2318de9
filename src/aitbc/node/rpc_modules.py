"""JSON-RPC methods of the chain's modules: governance (``docs/governance.md``) and audited inference
(``docs/verification.md``). Each read names the height, block hash and state root it was read at; the
``*_proof`` methods return the module's whole state with its Merkle proof against that root."""

from __future__ import annotations

from typing import Any, Final

from aitbc.chain.audit_types import AuditStatus
from aitbc.chain.gov_types import ProposalStatus
from aitbc.node import audit_views
from aitbc.node import governance as gov_views
from aitbc.node.rpc_base import INVALID_PARAMS, JOB_ID_RE, NOT_FOUND, Handler, RpcError, parse_address, parse_params
from aitbc.node.service import NodeService

PROPOSAL_STATUSES: Final = frozenset(s.value for s in ProposalStatus)
AUDIT_STATUSES: Final = frozenset(s.value for s in AuditStatus)


def _proposal_id_param(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value < 2**63:
        raise RpcError(INVALID_PARAMS, "'proposal_id' must be a positive integer")
    return value


async def rpc_get_proposal(node: NodeService, params: Any) -> Any:
    (proposal_id,) = parse_params(params, ("proposal_id",), 1)
    found = gov_views.proposal_json(node, _proposal_id_param(proposal_id))
    if found is None:
        raise RpcError(NOT_FOUND, f"no proposal {proposal_id}")
    return found


async def rpc_get_proposals(node: NodeService, params: Any) -> Any:
    status, after_id, limit = parse_params(params, ("status", "after_id", "limit"), 0)
    if status is not None and (not isinstance(status, str) or status not in PROPOSAL_STATUSES):
        raise RpcError(INVALID_PARAMS, f"'status' must be one of {', '.join(sorted(PROPOSAL_STATUSES))}")
    after_id = 0 if after_id is None else after_id
    if not isinstance(after_id, int) or isinstance(after_id, bool) or not 0 <= after_id < 2**63:
        raise RpcError(INVALID_PARAMS, "'after_id' must be a non-negative integer (the last id you saw)")
    limit = gov_views.MAX_PROPOSALS_PAGE if limit is None else limit
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= gov_views.MAX_PROPOSALS_PAGE:
        raise RpcError(INVALID_PARAMS, f"'limit' must be an integer from 1 to {gov_views.MAX_PROPOSALS_PAGE}")
    return gov_views.proposals_json(node, status, after_id, limit)


async def rpc_get_gov_params(node: NodeService, params: Any) -> Any:
    parse_params(params, (), 0)
    return gov_views.gov_params_json(node)


async def rpc_get_governance_proof(node: NodeService, params: Any) -> Any:
    parse_params(params, (), 0)
    return gov_views.governance_proof_json(node)


async def rpc_get_audit(node: NodeService, params: Any) -> Any:
    (job_id,) = parse_params(params, ("job_id",), 1)
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        raise RpcError(INVALID_PARAMS, "'job_id' must be 1-64 characters of letters, digits, '_' or '-'")
    found = audit_views.audit_json(node, job_id)
    if found is None:
        raise RpcError(NOT_FOUND, f"job {job_id} has not been audited (or its record was pruned)")
    return found


async def rpc_get_training_dispute(node: NodeService, params: Any) -> Any:
    (job_id,) = parse_params(params, ("job_id",), 1)
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        raise RpcError(INVALID_PARAMS, "'job_id' must be 1-64 characters of letters, digits, '_' or '-'")
    found = audit_views.training_dispute_json(node, job_id)
    if found is None:
        raise RpcError(NOT_FOUND, f"job {job_id} has no training dispute (or its record was pruned)")
    return found


async def rpc_get_audits(node: NodeService, params: Any) -> Any:
    status, address, limit = parse_params(params, ("status", "address", "limit"), 0)
    if status is not None and (not isinstance(status, str) or status not in AUDIT_STATUSES):
        raise RpcError(INVALID_PARAMS, f"'status' must be one of {', '.join(sorted(AUDIT_STATUSES))}")
    limit = audit_views.MAX_AUDITS_PAGE if limit is None else limit
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= audit_views.MAX_AUDITS_PAGE:
        raise RpcError(INVALID_PARAMS, f"'limit' must be an integer from 1 to {audit_views.MAX_AUDITS_PAGE}")
    return audit_views.audits_json(node, status, None if address is None else parse_address(address), limit)


async def rpc_get_miner_bond(node: NodeService, params: Any) -> Any:
    (address,) = parse_params(params, ("address",), 1)
    return audit_views.bond_json(node, parse_address(address))


async def rpc_get_audit_proof(node: NodeService, params: Any) -> Any:
    parse_params(params, (), 0)
    return audit_views.audit_proof_json(node)


MODULE_METHODS: Final[dict[str, Handler]] = {
    "get_proposal": rpc_get_proposal,
    "get_proposals": rpc_get_proposals,
    "get_gov_params": rpc_get_gov_params,
    "get_governance_proof": rpc_get_governance_proof,
    "get_audit": rpc_get_audit,
    "get_audits": rpc_get_audits,
    "get_training_dispute": rpc_get_training_dispute,
    "get_miner_bond": rpc_get_miner_bond,
    "get_audit_proof": rpc_get_audit_proof,
}
