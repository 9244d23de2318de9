"""Which chain parameters governance may change, within which ranges, and the invariants a change keeps.

A parameter is named by its dotted path in ``ChainParams`` (``protocol_fee_bps``, ``staking.jail_blocks``,
``governance.quorum_bps``). Only the names in ``GOVERNABLE_PARAMS`` can change; every value must lie in its
range, and the whole parameter set must still satisfy ``check_param_invariants`` — checked when a proposal
is submitted and again when it is enacted (other changes may have been enacted in between), so a node never
runs with parameters that break its rules.

Not governable: ``staking.authority_power``, ``staking.stake_per_power`` and
``staking.max_staker_share_bps`` (they change every validator's voting power under a running height), and
``staking.min_self_stake`` (it would turn existing candidates out without an unbonding).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec

from aitbc.chain.gov_params import BPS
from aitbc.chain.params import ChainParams
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.tx import ParamChange
from aitbc.protocol.types import MAX_U64

AITBC: Final = 1_000_000

GOVERNABLE_PARAMS: Final[dict[str, tuple[int, int]]] = {
    "block_time_ms": (100, 60_000),
    "max_block_txs": (1, 100_000),
    "max_block_bytes": (64 * 1024, 64 * 1024 * 1024),
    "max_tx_bytes": (1_024, 1024 * 1024),
    "min_fee": (1, 1_000 * AITBC),
    "mempool_max_txs": (1_000, 1_000_000),
    "mempool_nonce_window": (1, 100_000),
    "mempool_max_per_sender": (1, 100_000),
    "protocol_fee_bps": (0, 5_000),
    "max_escrow_blocks": (10, 100_000_000),
    "staking.max_stakers": (0, 1_000),
    "staking.epoch_blocks": (1, 1_000_000),
    "staking.unbonding_blocks": (1, 10_000_000),
    "staking.slash_double_sign_bps": (0, BPS),
    "staking.jail_blocks": (1, 10_000_000),
    "staking.max_evidence_age": (1, 10_000_000),
    "staking.block_reward": (0, 1_000 * AITBC),
    "staking.reward_pool_payout_bps": (0, BPS),
    "staking.proposer_bonus_bps": (0, BPS),
    "staking.downtime_window": (1, 1_000_000),
    "staking.downtime_max_missed": (0, 1_000_000),
    "governance.min_deposit": (1, MAX_U64),
    "governance.deposit_period_blocks": (1, 10_000_000),
    "governance.voting_period_blocks": (1, 10_000_000),
    "governance.quorum_bps": (1, BPS),
    "governance.threshold_bps": (1, BPS - 1),
    "governance.veto_threshold_bps": (1, BPS),
    "governance.max_active_proposals": (1, 1_000),
    "audit.probability_bps": (0, BPS),
    "audit.min_miner_bond": (1, MAX_U64),
    "audit.unbonding_blocks": (1, 10_000_000),
    "audit.audit_window_blocks": (1, 1_000_000),
    "audit.dispute_window_blocks": (1, 1_000_000),
    "audit.fraud_slash_bps": (0, BPS),
    "audit.reporter_reward_bps": (0, BPS),
    "audit.audit_fee_bps": (0, BPS),
}
"""Dotted name → inclusive (min, max) of every parameter governance may set."""


def get_param(params: ChainParams, name: str) -> int:
    """The current value of the governable parameter ``name``."""
    section, _, field = name.rpartition(".")
    holder = getattr(params, section) if section else params
    value: int = getattr(holder, field)
    return value


def _set_param(params: ChainParams, name: str, value: int) -> ChainParams:
    section, _, field = name.rpartition(".")
    if not section:
        return msgspec.structs.replace(params, **{field: value})
    inner = msgspec.structs.replace(getattr(params, section), **{field: value})
    return msgspec.structs.replace(params, **{section: inner})


def check_param_invariants(params: ChainParams) -> None:
    """Cross-parameter rules every parameter set must keep; raises ``InvalidTx(bad_param_change)``."""
    rules = [
        (params.max_tx_bytes <= params.max_block_bytes, "max_tx_bytes must not exceed max_block_bytes"),
        (
            params.mempool_max_per_sender <= params.mempool_max_txs,
            "mempool_max_per_sender must not exceed mempool_max_txs",
        ),
        (
            params.staking.downtime_max_missed <= params.staking.downtime_window,
            "staking.downtime_max_missed must not exceed staking.downtime_window",
        ),
        (
            params.staking.proposer_bonus_bps <= BPS and params.staking.reward_pool_payout_bps <= BPS,
            "basis points must not exceed 10,000",
        ),
    ]
    for ok, message in rules:
        if not ok:
            raise InvalidTx(TxRejection.BAD_PARAM_CHANGE, message)


def compute_changed_params(params: ChainParams, changes: Iterable[ParamChange]) -> ChainParams:
    """``params`` with ``changes`` applied, each checked against its range, then the invariants checked.

    Raises ``InvalidTx(bad_param_change)`` naming the first change or invariant that fails."""
    seen: set[str] = set()
    for change in changes:
        # Verify the parameter is governable and named once
        bounds = GOVERNABLE_PARAMS.get(change.name)
        if bounds is None:
            raise InvalidTx(TxRejection.BAD_PARAM_CHANGE, f"{change.name} is not a governable parameter")
        if change.name in seen:
            raise InvalidTx(TxRejection.BAD_PARAM_CHANGE, f"{change.name} is changed twice")
        seen.add(change.name)
        # Verify the value lies in the parameter's range
        low, high = bounds
        if not low <= change.value <= high:
            raise InvalidTx(TxRejection.BAD_PARAM_CHANGE, f"{change.name} must lie in [{low}, {high}]")
        params = _set_param(params, change.name, change.value)
    check_param_invariants(params)
    return params
