"""Read views of on-chain governance for RPC, REST and the WebSocket (``docs/governance.md``).

Every view names the height, block hash and state root it was read at; ``governance_proof_json`` returns
the whole governance state with its Merkle proof against that root, which is how a light client checks any
proposal, vote, tally or parameter it was shown (``aitbc.chain.state.is_valid_governance_proof``).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from aitbc.chain.gov_types import OPEN_STATUSES, Proposal, get_proposal
from aitbc.chain.governance import compute_outcome, compute_tally
from aitbc.node.json_views import proof_to_json
from aitbc.node.service import NodeService

MAX_PROPOSALS_PAGE: Final = 100


def _at(node: NodeService) -> dict[str, Any]:
    return {"height": node.head.height, "block_hash": node.head_hash, "state_root": node.head.state_root}


def _proposal(node: NodeService, proposal: Proposal, *, votes: bool) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(proposal)
    if not votes:
        out.pop("votes")
    out["vote_count"] = len(proposal.votes)
    if proposal.status in OPEN_STATUSES:
        # What the tally would be if the vote closed now (bonds move until it does).
        tally = compute_tally(proposal, node.state.staking, node.state.bonds)
        status, note, _ = compute_outcome(tally, node.params.governance)
        out["projected"] = {"tally": msgspec.to_builtins(tally), "outcome": status.value, "note": note}
    return out


def proposal_json(node: NodeService, proposal_id: int) -> dict[str, Any] | None:
    proposal = get_proposal(node.state.governance, proposal_id)
    if proposal is None:
        return None
    return {"proposal": _proposal(node, proposal, votes=True), **_at(node)}


def proposals_json(node: NodeService, status: str | None, after_id: int, limit: int) -> dict[str, Any]:
    """A page of proposals by id (without their votes), optionally of one status."""
    chosen = [p for p in node.state.governance.proposals[after_id:] if status is None or p.status == status][:limit]
    return {
        "proposals": [_proposal(node, p, votes=False) for p in chosen],
        "next_after_id": chosen[-1].id if chosen else after_id,
        **_at(node),
    }


def gov_params_json(node: NodeService) -> dict[str, Any]:
    gov = node.state.governance
    return {
        "params": msgspec.to_builtins(node.params),
        "scheduled": msgspec.to_builtins(gov.scheduled),
        "history": msgspec.to_builtins(gov.history),
        "upgrades": msgspec.to_builtins(gov.upgrades),
        "locked": gov.locked,
        "burned": gov.burned,
        **_at(node),
    }


def governance_proof_json(node: NodeService) -> dict[str, Any]:
    return {
        "governance": msgspec.to_builtins(node.state.governance),
        "proof": proof_to_json(node.state.prove_governance()),
        **_at(node),
    }
