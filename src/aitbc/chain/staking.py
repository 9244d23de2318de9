"""Tx rules of staking: ``stake``, ``delegate`` and ``unstake``.

The staking arithmetic itself (bonds, unbonding, the active set) is pure and
lives in ``aitbc.chain.validators``; here each kind's ``verify_*`` computes the
change (refusing the tx if the rule does) without writing anything: the new
``StakingState`` and the bond writes, held in an overlay of the block's bonds
(O(1), whatever the number of bonds). ``process_staking_change`` stores both
once the shared sender step has charged the amount. The evidence tx kind has its
own module, ``aitbc.chain.evidence``.
"""

from __future__ import annotations

from aitbc.chain.bonds import BondOverlay
from aitbc.chain.context import TxContext
from aitbc.chain.state import StateDelta
from aitbc.chain.validators import StakingPlan, process_bond, process_unbond
from aitbc.protocol.tx import Delegate, Stake, Unstake


def verify_stake(state: StateDelta, tx: Stake, ctx: TxContext) -> StakingPlan:
    """Bond ``amount`` of the sender to itself (the own bond must reach the candidate floor)."""
    bonds = BondOverlay(state.bonds)
    staking = process_bond(
        state.get_staking(), tx.sender, tx.sender, tx.amount, state.get_authorities(), ctx.params.staking, bonds
    )
    return StakingPlan(staking, bonds)


def verify_delegate(state: StateDelta, tx: Delegate, ctx: TxContext) -> StakingPlan:
    """Bond ``amount`` of the sender to a validator (an authority or a staked candidate)."""
    staking, authorities, bonds = state.get_staking(), state.get_authorities(), BondOverlay(state.bonds)
    staking = process_bond(staking, tx.validator, tx.sender, tx.amount, authorities, ctx.params.staking, bonds)
    return StakingPlan(staking, bonds)


def verify_unstake(state: StateDelta, tx: Unstake, ctx: TxContext) -> StakingPlan:
    """Start unbonding ``amount`` of the sender's bond with ``validator``."""
    bonds = BondOverlay(state.bonds)
    staking = process_unbond(
        state.get_staking(), tx.validator, tx.sender, tx.amount, ctx.height, ctx.params.staking, bonds
    )
    return StakingPlan(staking, bonds)


def process_staking_change(
    state: StateDelta, tx: Stake | Delegate | Unstake, ctx: TxContext, plan: StakingPlan
) -> None:
    """Store the staking state and the bond writes the kind's ``verify_*`` computed."""
    state.set_staking_plan(plan)
