"""Read views of audited inference for RPC and REST (``docs/verification.md``)."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from aitbc.chain.audit_types import get_audit, get_bond
from aitbc.chain.training_audit import get_awaited, get_midpoint, max_dispute_rounds
from aitbc.node.json_views import proof_to_json
from aitbc.node.service import NodeService

MAX_AUDITS_PAGE: Final = 200


def _at(node: NodeService) -> dict[str, Any]:
    return {"height": node.head.height, "block_hash": node.head_hash, "state_root": node.head.state_root}


def audit_json(node: NodeService, job_id: str) -> dict[str, Any] | None:
    audit = get_audit(node.state.audits, job_id)
    return None if audit is None else {"audit": msgspec.to_builtins(audit), **_at(node)}


def training_dispute_json(node: NodeService, job_id: str) -> dict[str, Any] | None:
    """A training audit's bisection with what its parties need next: the steps still in dispute, the step
    to reveal this round, who must move and by which block (``aitbc.chain.training_audit``)."""
    audit = get_audit(node.state.audits, job_id)
    if audit is None or audit.training is None:
        return None
    dispute = audit.training
    mid = get_midpoint(dispute)
    return {
        "job_id": job_id,
        "status": audit.status,
        "miner": audit.job.miner,
        "auditor": audit.auditor,
        "referees": audit.referees,
        "dispute": msgspec.to_builtins(dispute),
        "lo_step": dispute.start_step + dispute.lo,
        "hi_step": dispute.start_step + dispute.hi,
        "midpoint": mid,
        "mid_step": dispute.start_step + mid,
        "leaves": dispute.end_step - dispute.start_step + 1,
        "max_rounds": max_dispute_rounds(dispute.end_step - dispute.start_step),
        "awaiting": get_awaited(audit),
        "deadline_height": audit.deadline_height,
        **_at(node),
    }


def audits_json(node: NodeService, status: str | None, address: str | None, limit: int) -> dict[str, Any]:
    """The newest audits first, optionally of one status, or where ``address`` is miner, auditor or referee."""
    chosen = [
        a
        for a in reversed(node.state.audits.audits)
        if (status is None or a.status == status)
        and (address is None or address in (a.job.miner, a.auditor, *a.referees))
    ][:limit]
    pending = len(node.state.audits.candidates)
    return {
        "audits": msgspec.to_builtins(chosen),
        "candidates": pending,
        "burned": node.state.audits.burned,
        **_at(node),
    }


def bond_json(node: NodeService, address: str) -> dict[str, Any]:
    bond = get_bond(node.state.audits, address)
    rules = node.params.audit
    return {
        "address": address,
        "bond": None if bond is None else msgspec.to_builtins(bond),
        "eligible": bond is not None and bond.amount >= rules.min_miner_bond,
        "min_miner_bond": rules.min_miner_bond,
        **_at(node),
    }


def audit_proof_json(node: NodeService) -> dict[str, Any]:
    return {
        "audits": msgspec.to_builtins(node.state.audits),
        "proof": proof_to_json(node.state.prove_audits()),
        **_at(node),
    }
