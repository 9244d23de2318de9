"""Tx rules of staking: ``stake``, ``delegate`` and ``unstake``.

The staking arithmetic itself (bonds, unbonding, the active set) is pure and
lives in ``aitbc.chain.validators``; here each kind's ``verify_*`` computes the
new ``StakingState`` (refusing the tx if the rule does), and
``process_staking_change`` stores it once the shared sender step has charged the
amount. The evidence tx kind has its own module, ``aitbc.chain.evidence``.
"""

from __future__ import annotations

from aitbc.chain.context import TxContext
from aitbc.chain.state import StateDelta
from aitbc.chain.validators import StakingState, process_bond, process_unbond
from aitbc.protocol.tx import Delegate, Stake, Unstake


def verify_stake(state: StateDelta, tx: Stake, ctx: TxContext) -> StakingState:
    """Bond ``amount`` of the sender to itself (the own bond must reach the candidate floor)."""
    return process_bond(
        state.get_staking(), tx.sender, tx.sender, tx.amount, state.get_authorities(), ctx.params.staking
    )


def verify_delegate(state: StateDelta, tx: Delegate, ctx: TxContext) -> StakingState:
    """Bond ``amount`` of the sender to a validator (an authority or a staked candidate)."""
    staking, authorities = state.get_staking(), state.get_authorities()
    return process_bond(staking, tx.validator, tx.sender, tx.amount, authorities, ctx.params.staking)


def verify_unstake(state: StateDelta, tx: Unstake, ctx: TxContext) -> StakingState:
    """Start unbonding ``amount`` of the sender's bond with ``validator``."""
    return process_unbond(state.get_staking(), tx.validator, tx.sender, tx.amount, ctx.height, ctx.params.staking)


def process_staking_change(
    state: StateDelta, tx: Stake | Delegate | Unstake, ctx: TxContext, updated: StakingState
) -> None:
    """Store the staking state the kind's ``verify_*`` computed."""
    state.set_staking(updated)
