"""Audited inference parameters (part of ``ChainParams``; governable within their ranges)."""

from __future__ import annotations

import msgspec

from aitbc.protocol.types import U64, Amount


class AuditParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    probability_bps: U64 = 500
    """Chance (basis points) that a settled job is selected for a re-execution audit (devnet: 5 %)."""
    min_miner_bond: Amount = 100_000_000
    """Bond a miner needs to serve audited jobs and to audit (devnet: 100 AITBC)."""
    unbonding_blocks: U64 = 200
    """Blocks an unbonded amount stays slashable; longer while the miner has an open audit or dispute."""
    audit_window_blocks: U64 = 60
    """Blocks the chosen auditor has to report its re-execution."""
    dispute_window_blocks: U64 = 60
    """Blocks the two referees have to report theirs once an audit is disputed."""
    fraud_slash_bps: U64 = 5_000
    """Share of the losing party's bond (bonded and unbonding) slashed when a dispute is decided."""
    reporter_reward_bps: U64 = 3_000
    """Share of a slash paid to the honest re-executors (split equally); the client's refund comes next,
    the rest is burned."""
    audit_fee_bps: U64 = 2_000
    """Share of the audited job's protocol fee the reward pool pays an auditor whose report matches."""
    max_bond_models: U64 = 16
    """Model digests one bond may declare."""
