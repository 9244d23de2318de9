"""The reward rule: how a block's reward and fees are split over the proposer, the voters and their bonds
(the rule itself is stated in ``aitbc.chain.validators``' module docstring)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from aitbc.chain.bonds import BondReader
from aitbc.chain.validators import BPS, StakingParams, StakingState, get_active_powers, get_bond_reader


def compute_rewards(
    staking: StakingState,
    authorities: Sequence[str],
    params: StakingParams,
    proposer: str,
    amount: int,
    voters: Collection[str] | None = None,
    *,
    committee: Mapping[str, int] | None = None,
    unclaimed_to: str = "",
    bonds: BondReader | None = None,
) -> dict[str, int]:
    """Split ``amount`` by the reward rule (module docstring); the credits sum to exactly ``amount``.

    ``voters`` None (a block without ``last_commit``): the whole active set shares, the proposer gets the
    full bonus and the rounding dust. Otherwise shares are by power over ``committee`` (the set that decided
    the parent; default the active set): each signer in ``voters`` gets its share, the proposer's bonus is
    ``proposer_bonus_bps`` times the share of power its ``last_commit`` includes, and the shares of
    validators it left out, with the dust, go to ``unclaimed_to`` (the reward pool), never to the proposer:
    leaving votes out always costs the proposer."""
    credits: dict[str, int] = {}

    def credit(address: str, value: int) -> None:
        if value:
            credits[address] = credits.get(address, 0) + value

    if amount == 0:
        return credits
    reader = get_bond_reader(staking, bonds)
    if voters is None:
        powers = get_active_powers(staking, authorities, params)
        paid_powers = powers
    else:
        powers = dict(committee) if committee is not None else get_active_powers(staking, authorities, params)
        paid_powers = {v: p for v, p in powers.items() if v in voters}
    total_power = sum(powers.values())
    included = sum(paid_powers.values())
    bonus = amount * params.proposer_bonus_bps * included // (BPS * total_power) if total_power else 0
    rest = amount - bonus
    paid = bonus
    credit(proposer, bonus)
    for validator, power in sorted(paid_powers.items()):
        share = rest * power // total_power
        stake_power = power - (params.authority_power if validator in authorities else 0)
        stake_part = share * max(0, stake_power) // power if power else 0
        credit(validator, share - stake_part)
        paid += share - stake_part
        delegations = reader.get_delegations(validator)
        bonded = reader.get_bonded(validator)
        for delegator, held in sorted(delegations.items()):
            cut = stake_part * held // bonded
            credit(delegator, cut)
            paid += cut
    credit(proposer if voters is None or not unclaimed_to else unclaimed_to, amount - paid)
    return credits
