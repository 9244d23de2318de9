"""``report_evidence``: anyone may prove a validator's double vote; the chain slashes and jails it.

The slash itself (burn, jail, leave the active set) is ``process_slash`` in
``aitbc.chain.validators``, which reuses the jail rule the downtime rule uses.
"""

from __future__ import annotations

from aitbc.chain.bonds import BondOverlay
from aitbc.chain.context import TxContext
from aitbc.chain.state import StateDelta
from aitbc.chain.validators import StakingPlan, get_active_powers, get_bonded, is_punished, process_slash
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.tx import ReportEvidence
from aitbc.protocol.vote import get_evidence_problem


def verify_report_evidence(state: StateDelta, tx: ReportEvidence, ctx: TxContext) -> StakingPlan:
    """The votes prove a double vote, recent enough, by a validator not punished for it yet;
    returns the staking state after the slash."""
    staking, authorities, rules = state.get_staking(), state.get_authorities(), ctx.params.staking
    evidence = tx.evidence
    offender = evidence.vote_a.validator
    # Verify the votes prove a double vote (same validator, height, round, step; different blocks; both signed)
    problem = get_evidence_problem(evidence, ctx.chain_id)
    if problem is not None:
        raise InvalidTx(TxRejection.BAD_EVIDENCE, problem)
    # Verify the offence is not in the future and not older than max_evidence_age
    if evidence.vote_a.height > ctx.height or ctx.height - evidence.vote_a.height > rules.max_evidence_age:
        raise InvalidTx(TxRejection.EVIDENCE_TOO_OLD, f"evidence must be within {rules.max_evidence_age} blocks")
    # Verify the offender is a validator (an authority, in the active set, or bonded)
    known = offender in authorities or offender in get_active_powers(staking, authorities, rules)
    if not known and get_bonded(staking, offender, state.bonds) == 0:
        raise InvalidTx(TxRejection.NOT_A_VALIDATOR, f"{offender} is not a validator")
    # Verify this offence was not punished yet (one slash covers every earlier double vote)
    if is_punished(staking, offender, evidence.vote_a.height):
        raise InvalidTx(TxRejection.ALREADY_PUNISHED, "this offence was already punished")
    bonds = BondOverlay(state.bonds)
    updated, _ = process_slash(staking, offender, ctx.height, authorities, rules, bonds)
    return StakingPlan(updated, bonds)


def process_report_evidence(state: StateDelta, tx: ReportEvidence, ctx: TxContext, slashed: StakingPlan) -> None:
    """Store the staking state and bonds after the slash (the fee was charged by the shared sender step)."""
    state.set_staking_plan(slashed)
