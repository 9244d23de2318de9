"""Governance parameters (part of ``ChainParams``; governable themselves, within their ranges)."""

from __future__ import annotations

import msgspec

from aitbc.protocol.types import U64, Amount

BPS = 10_000


class GovernanceParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    min_deposit: Amount = 10_000_000
    """Deposit a proposal needs before its vote opens (devnet: 10 AITBC)."""
    deposit_period_blocks: U64 = 100
    """Blocks a proposal may wait for its deposit; then it expires and its deposits are returned."""
    voting_period_blocks: U64 = 30
    """Blocks the vote stays open once the deposit is reached."""
    quorum_bps: U64 = 3_340
    """Share of all bonded stake that must vote (abstain included) for the result to count."""
    threshold_bps: U64 = 5_000
    """A proposal passes when yes is MORE than this share of yes + no + no-with-veto."""
    veto_threshold_bps: U64 = 3_340
    """No-with-veto at or above this share of all votes cast vetoes the proposal and burns its deposit."""
    max_active_proposals: U64 = 20
    """Proposals in their deposit or voting period at once (a bound on the state every vote touches)."""


GOVERNANCE_PRESETS: dict[str, GovernanceParams] = {
    "devnet": GovernanceParams(),
    "mainnet": GovernanceParams(
        min_deposit=1_000_000_000,
        deposit_period_blocks=302_400,
        voting_period_blocks=302_400,
    ),
}
"""``mainnet``: 1,000 AITBC to open a vote, a week of deposit and a week of voting at 2 s blocks."""
