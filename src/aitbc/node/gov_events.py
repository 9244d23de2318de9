"""Governance changes a committed block made, as events for the ``governance`` WebSocket topic."""

from __future__ import annotations

from typing import Any

import msgspec

from aitbc.chain.gov_types import GovernanceState, get_proposal


def governance_events(before: GovernanceState, after: GovernanceState, height: int) -> list[dict[str, Any]]:
    """What a block changed, for the ``governance`` WebSocket topic: each proposal whose status moved
    (``submitted`` for a new one), and each parameter change enacted."""
    events: list[dict[str, Any]] = []
    for proposal in after.proposals:
        old = get_proposal(before, proposal.id)
        if old is None or old.status != proposal.status:
            events.append(
                {
                    "kind": "proposal",
                    "proposal_id": proposal.id,
                    "title": proposal.title,
                    "status": proposal.status,
                    "previous": None if old is None else old.status,
                    "note": proposal.note,
                    "height": height,
                }
            )
    for record in after.history[len(before.history) :]:
        events.append({"kind": "param_enacted", **msgspec.to_builtins(record)})
    return events
