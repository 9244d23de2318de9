"""The validator set of the hybrid PoA/PoS chain: authorities, stakes, delegations, jail, slashing, rewards.

The exact rule (parameters in ``StakingParams``, part of genesis):

* **Authorities** (genesis, PoA) always hold ``authority_power``; a staked
  account becomes a candidate once its own bond (``stake``) is at least
  ``min_self_stake``. Anyone may ``delegate`` to an authority or a candidate.
* **Power** of a validator = ``authority_power`` (authorities only) +
  ``bonded // stake_per_power`` where ``bonded`` is its own bond plus every
  delegation to it.
* **Active set**, recomputed at the start of every block whose height is a
  multiple of ``epoch_blocks``: every authority that is not jailed, plus the
  ``max_stakers`` candidates with the most power (ties: lower address first),
  not jailed, power ≥ 1. If the stakers' power together exceeds
  ``max_staker_share_bps`` of the total, each staker's power is scaled down by
  the same factor (rounded down, at least 1). Until the first recomputation
  it is the authorities.
* **Unstake** moves a bond into an unbonding entry released to the delegator
  ``unbonding_blocks`` later (start of that block); it is slashable meanwhile.
* **Double vote** (two signed votes of one validator for one height, round and
  step naming different blocks, submitted by anyone within
  ``max_evidence_age`` blocks): ``slash_double_sign_bps`` of every bond to the
  offender and of its pending unbondings is burned; it is jailed for
  ``jail_blocks`` and leaves the active set at once. One slash settles every
  double vote it made up to the block that slashed it (a validator that
  equivocates for several steps in a row is slashed once).
* **Downtime**: every BFT block carries the precommits its proposer saw for
  the previous block, more than 2/3 of the power of the set that decided it
  (``get_commit_powers``); a member of that set missing from more than
  ``downtime_max_missed`` of the last ``downtime_window`` of them is jailed
  for ``jail_blocks`` (not slashed) and leaves the active set at once.
* **Rewards**, at the start of every block: ``block_reward`` new tokens plus
  ``reward_pool_payout_bps`` of the reward pool's balance. Shares are by power
  over the set that decided the previous block: the proposer gets
  ``proposer_bonus_bps`` of it times the share of that power its
  ``last_commit`` includes; each *voter* (signer of ``last_commit``) gets its
  share of the rest. A validator's share is split between its authority part
  (to it) and its stake part (to its bonds, pro rata). The shares of those
  left out and the rounding leftovers go to the reward pool, never to the
  proposer, so leaving out a vote always costs the proposer. A block without
  ``last_commit`` (a PoA chain, the first block of a BFT chain) counts the
  whole active set as voters (full bonus, leftovers to the proposer).
* **Fees** of a BFT block (one carrying ``last_commit``) are collected while
  its txs run and split at its end by the same rule over the same voters; in
  a block without ``last_commit`` each fee goes to the proposer.

Supply therefore changes only by ``minted - burned``, both counted here.
Everything is a pure function of typed values; the chain keeps one
``StakingState`` in its state root.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import msgspec

from aitbc.chain.bonds import Bond as Bond
from aitbc.chain.bonds import BondOverlay, BondReader, BondWriter, get_bond_index
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.types import U64, Address, Amount, Height

BPS = 10_000


class StakingParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    authority_power: U64 = 100
    """Fixed voting power of each genesis authority."""
    stake_per_power: Amount = 1_000_000
    """Bonded base units per unit of voting power (devnet: 1 AITBC)."""
    min_self_stake: Amount = 1_000_000_000
    """Own bond a staker needs to be a candidate (devnet: 1,000 AITBC)."""
    max_stakers: U64 = 20
    """Candidates admitted to the active set beside the authorities."""
    epoch_blocks: U64 = 100
    unbonding_blocks: U64 = 1_000
    slash_double_sign_bps: U64 = 500
    jail_blocks: U64 = 10_000
    max_evidence_age: U64 = 10_000
    block_reward: Amount = 0
    """New tokens per block (devnet 0: supply stays what genesis says)."""
    reward_pool_payout_bps: U64 = 0
    """Share of the reward pool paid out per block (devnet 0: the pool keeps the protocol fees)."""
    proposer_bonus_bps: U64 = 1_000
    downtime_window: U64 = 100
    downtime_max_missed: U64 = 50
    """A validator missing from more than this many of the last ``downtime_window`` commits is jailed."""
    min_delegation: Amount = 1_000_000
    """Smallest bond a stake or delegation may create or leave behind (devnet: 1 AITBC): bonds cost every
    node bookkeeping, so dust bonds are refused."""
    max_staker_share_bps: U64 = 3_000
    """Stakers together hold at most this share of the voting power (10,000: no cap). Below 1/3 the
    authorities alone keep the chain live and safe, whatever is staked (devnet: 30 %)."""


STAKING_PRESETS: dict[str, StakingParams] = {
    "devnet": StakingParams(),
    "mainnet": StakingParams(
        min_self_stake=10_000_000_000,
        max_stakers=50,
        epoch_blocks=1_800,
        unbonding_blocks=302_400,
        jail_blocks=43_200,
        max_evidence_age=100_000,
        block_reward=1_000_000,
        reward_pool_payout_bps=10,
        max_staker_share_bps=BPS,
        downtime_window=10_000,
        downtime_max_missed=5_000,
    ),
}
"""``mainnet``: 10,000 AITBC to stand, epochs of one hour and a week of unbonding at 2 s blocks,
1 AITBC minted per block and 0.1 % of the reward pool paid out per block."""


class Unbonding(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    validator: Address
    delegator: Address
    amount: Amount
    release_height: Height


class Jail(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    validator: Address
    until: Height


class Power(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    validator: Address
    power: U64


class Offence(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``validator`` was slashed in the block at ``height``; offences up to that height are settled."""

    validator: Address
    height: Height


class Missed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    validator: Address
    heights: list[Height]
    """Heights of the recent commits (within ``downtime_window``) this validator did not sign."""


class StakingState(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Bonds sorted by (validator, delegator); unbondings in creation order; ``active`` empty = the authorities."""

    bonds: list[Bond] = msgspec.field(default_factory=list)
    unbonding: list[Unbonding] = msgspec.field(default_factory=list)
    jailed: list[Jail] = msgspec.field(default_factory=list)
    active: list[Power] = msgspec.field(default_factory=list)
    punished: list[Offence] = msgspec.field(default_factory=list)
    minted: Amount = 0
    burned: Amount = 0
    missed: list[Missed] = msgspec.field(default_factory=list)
    last_set: list[Power] = msgspec.field(default_factory=list)
    """The set that decided the latest block (whose precommits the next block's ``last_commit`` carries),
    recorded only when it differs from ``active`` (empty: it is the active set)."""


EMPTY_STAKING = StakingState()


@dataclass(frozen=True, slots=True)
class StakingPlan:
    """What a verified staking or evidence tx will write: the staking state and the bonds it changes (an
    overlay of the block's bonds, so nothing is written before the tx is fully checked)."""

    staking: StakingState
    bonds: BondOverlay


def is_empty_staking(staking: StakingState) -> bool:
    return staking == EMPTY_STAKING


def get_bond_reader(staking: StakingState, bonds: BondReader | None) -> BondReader:
    """The block's bond reader if given, else an index of ``staking.bonds``."""
    return bonds if bonds is not None else get_bond_index(staking.bonds)


def _writer(staking: StakingState, bonds: BondWriter | None) -> BondWriter:
    return bonds if bonds is not None else BondOverlay(get_bond_index(staking.bonds))


def _finish(staking: StakingState, writer: BondWriter, given: BondWriter | None) -> StakingState:
    """With the block's writer the bonds live there; without one, write them back into the list."""
    if given is not None:
        return staking
    return msgspec.structs.replace(staking, bonds=list(writer.iter_bonds()))


def get_bond(staking: StakingState, validator: str, delegator: str, bonds: BondReader | None = None) -> int:
    return get_bond_reader(staking, bonds).get(validator, delegator)


def get_bonded(staking: StakingState, validator: str, bonds: BondReader | None = None) -> int:
    return get_bond_reader(staking, bonds).get_bonded(validator)


def get_locked(staking: StakingState, bonds: BondReader | None = None) -> int:
    """Tokens held by the staking module: bonds and pending unbondings (part of the supply)."""
    return get_bond_reader(staking, bonds).get_total() + sum(u.amount for u in staking.unbonding)


def get_jailed_until(staking: StakingState, validator: str) -> int:
    return max((j.until for j in staking.jailed if j.validator == validator), default=0)


def is_jailed(staking: StakingState, validator: str, height: int) -> bool:
    return get_jailed_until(staking, validator) > height


def is_candidate(
    staking: StakingState,
    validator: str,
    authorities: Sequence[str],
    params: StakingParams,
    bonds: BondReader | None = None,
) -> bool:
    """May receive delegations: an authority, or an account whose own bond reaches ``min_self_stake``."""
    return validator in authorities or get_bond(staking, validator, validator, bonds) >= params.min_self_stake


def compute_power(
    staking: StakingState,
    validator: str,
    authorities: Sequence[str],
    params: StakingParams,
    bonds: BondReader | None = None,
) -> int:
    base = params.authority_power if validator in authorities else 0
    return base + get_bonded(staking, validator, bonds) // params.stake_per_power


def get_active_list(staking: StakingState, authorities: Sequence[str], params: StakingParams) -> list[Power]:
    """The set in force (as of the last epoch boundary or jailing), sorted by address."""
    if staking.active:
        return list(staking.active)
    return sorted((Power(a, params.authority_power) for a in authorities), key=lambda p: p.validator)


def get_active_powers(staking: StakingState, authorities: Sequence[str], params: StakingParams) -> dict[str, int]:
    if staking.active:
        return {p.validator: p.power for p in staking.active}
    return {a: params.authority_power for a in authorities}


def get_commit_powers(staking: StakingState, authorities: Sequence[str], params: StakingParams) -> dict[str, int]:
    """The powers of the set that decided the latest block: what its commit (the next ``last_commit``) is
    measured against."""
    if staking.last_set:
        return {p.validator: p.power for p in staking.last_set}
    return get_active_powers(staking, authorities, params)


def process_record_deciding_set(
    staking: StakingState, before: StakingState, authorities: Sequence[str], params: StakingParams
) -> StakingState:
    """End of a block: the set that decided it is the active set it started with (``before``); remember it
    if the block changed the active set (jail, slash, epoch), forget it otherwise."""
    start = get_active_list(before, authorities, params)
    wanted = [] if get_active_list(staking, authorities, params) == start else start
    if staking.last_set == wanted:
        return staking
    return msgspec.structs.replace(staking, last_set=wanted)


def compute_active_set(
    staking: StakingState,
    authorities: Sequence[str],
    params: StakingParams,
    height: int,
    bonds: BondReader | None = None,
) -> list[Power]:
    """The epoch rule (module docstring): authorities not jailed + top ``max_stakers`` candidates."""
    reader = get_bond_reader(staking, bonds)
    chosen = [
        Power(a, compute_power(staking, a, authorities, params, reader))
        for a in authorities
        if not is_jailed(staking, a, height)
    ]
    stakers = {v for v in reader.get_validators() if v not in authorities}
    ranked = sorted(
        (
            (compute_power(staking, v, authorities, params, reader), v)
            for v in stakers
            if reader.get(v, v) >= params.min_self_stake and not is_jailed(staking, v, height)
        ),
        key=lambda pv: (-pv[0], pv[1]),
    )
    stakers_chosen = [(v, p) for p, v in ranked[: params.max_stakers] if p >= 1]
    staker_total = sum(p for _, p in stakers_chosen)
    authority_total = sum(p.power for p in chosen)
    cap_bps = params.max_staker_share_bps
    if chosen and cap_bps < BPS and staker_total * (BPS - cap_bps) > authority_total * cap_bps:
        allowed = authority_total * cap_bps // (BPS - cap_bps)
        stakers_chosen = [(v, max(1, p * allowed // staker_total)) for v, p in stakers_chosen]
    chosen += [Power(v, p) for v, p in stakers_chosen]
    return sorted(chosen, key=lambda p: p.validator)


def _normalize_active(active: list[Power], authorities: Sequence[str], params: StakingParams) -> list[Power]:
    """Store nothing while the set is exactly the genesis authorities at their fixed power."""
    default = sorted((Power(a, params.authority_power) for a in authorities), key=lambda p: p.validator)
    return [] if active == default else active


def process_epoch(
    staking: StakingState,
    authorities: Sequence[str],
    params: StakingParams,
    height: int,
    bonds: BondReader | None = None,
) -> StakingState:
    """At an epoch boundary: recompute the active set, forget expired jail terms and too-old offences."""
    if height == 0 or height % params.epoch_blocks != 0:
        return staking
    active = compute_active_set(staking, authorities, params, height, bonds)
    if not active:  # never leave the chain without validators: keep the last set
        active = get_active_list(staking, authorities, params)
    jailed = [j for j in staking.jailed if j.until > height]
    punished = [o for o in staking.punished if o.height + params.max_evidence_age >= height]
    return msgspec.structs.replace(
        staking, active=_normalize_active(active, authorities, params), jailed=jailed, punished=punished
    )


def process_bond(
    staking: StakingState,
    validator: str,
    delegator: str,
    amount: int,
    authorities: Sequence[str],
    params: StakingParams,
    bonds: BondWriter | None = None,
) -> StakingState:
    """``stake`` (validator == delegator) or ``delegate``; the caller moves ``amount`` out of the balance.
    With ``bonds`` (the block's writer) the bond is written there in O(1); else into ``staking.bonds``."""
    writer = _writer(staking, bonds)
    # Verify the amount is no dust bond
    if amount < params.min_delegation:
        raise InvalidTx(
            TxRejection.DELEGATION_TOO_LOW, f"bonding {amount} is below the minimum of {params.min_delegation}"
        )
    if validator == delegator:
        # Verify the own bond reaches the candidate floor (authorities may bond any amount)
        own = writer.get(validator, validator) + amount
        if validator not in authorities and own < params.min_self_stake:
            raise InvalidTx(TxRejection.STAKE_TOO_LOW, f"own stake {own} is below the minimum {params.min_self_stake}")
    elif not is_candidate(staking, validator, authorities, params, writer):
        # Verify a delegation goes to a validator
        raise InvalidTx(TxRejection.NOT_A_VALIDATOR, f"{validator} is neither an authority nor a staked candidate")
    writer.set(validator, delegator, writer.get(validator, delegator) + amount)
    return _finish(staking, writer, bonds)


def process_unbond(
    staking: StakingState,
    validator: str,
    delegator: str,
    amount: int,
    height: int,
    params: StakingParams,
    bonds: BondWriter | None = None,
) -> StakingState:
    """``unstake``: the bond shrinks now; the tokens return ``unbonding_blocks`` later."""
    writer = _writer(staking, bonds)
    held = writer.get(validator, delegator)
    # Verify the delegator holds that much with that validator
    if amount == 0 or amount > held:
        raise InvalidTx(TxRejection.INSUFFICIENT_STAKE, f"bond with {validator} is {held}; cannot unstake {amount}")
    # Verify no dust bond is left behind (unstake all of it instead)
    if 0 < held - amount < params.min_delegation:
        raise InvalidTx(
            TxRejection.DELEGATION_TOO_LOW,
            f"unstaking {amount} leaves {held - amount}, below the minimum bond of {params.min_delegation}",
        )
    writer.set(validator, delegator, held - amount)
    entry = Unbonding(validator, delegator, amount, height + params.unbonding_blocks)
    return msgspec.structs.replace(_finish(staking, writer, bonds), unbonding=[*staking.unbonding, entry])


def process_matured_unbondings(staking: StakingState, height: int) -> tuple[StakingState, list[tuple[str, int]]]:
    """Release unbondings due at or before ``height``: (new state, [(delegator, amount)] in order)."""
    due = [u for u in staking.unbonding if u.release_height <= height]
    if not due:
        return staking, []
    rest = [u for u in staking.unbonding if u.release_height > height]
    return msgspec.structs.replace(staking, unbonding=rest), [(u.delegator, u.amount) for u in due]


def is_punished(staking: StakingState, validator: str, offence_height: int) -> bool:
    """One slash covers every double vote the validator made up to the block that slashed it."""
    return any(o.validator == validator and o.height >= offence_height for o in staking.punished)


def process_slash(
    staking: StakingState,
    validator: str,
    height: int,
    authorities: Sequence[str],
    params: StakingParams,
    bonds: BondWriter | None = None,
) -> tuple[StakingState, int]:
    """Burn ``slash_double_sign_bps`` of the offender's bonds and pending unbondings, jail it, drop it from
    the active set; returns (new state, burned)."""
    burned = 0
    writer = _writer(staking, bonds)
    for delegator, amount in sorted(writer.get_delegations(validator).items()):
        cut = amount * params.slash_double_sign_bps // BPS
        writer.set(validator, delegator, amount - cut)
        burned += cut
    unbonding: list[Unbonding] = []
    for u in staking.unbonding:
        if u.validator == validator:
            cut = u.amount * params.slash_double_sign_bps // BPS
            burned += cut
            u = msgspec.structs.replace(u, amount=u.amount - cut)
        if u.amount > 0:
            unbonding.append(u)
    cut_down = msgspec.structs.replace(
        _finish(staking, writer, bonds),
        unbonding=unbonding,
        punished=[*(o for o in staking.punished if o.validator != validator), Offence(validator, height)],
        burned=staking.burned + burned,
    )
    return process_jail(cut_down, validator, height, authorities, params), burned


def process_jail(
    staking: StakingState, validator: str, height: int, authorities: Sequence[str], params: StakingParams
) -> StakingState:
    """Jail ``validator`` until ``height + jail_blocks`` (or longer, if it already sits longer) and drop it
    from the active set at once; the rule of both slashing and downtime."""
    until = max(get_jailed_until(staking, validator), height + params.jail_blocks)
    jailed = sorted(
        [*(j for j in staking.jailed if j.validator != validator), Jail(validator, until)], key=lambda j: j.validator
    )
    active = [p for p in get_active_list(staking, authorities, params) if p.validator != validator]
    if not active:  # the last validator standing stays (a chain without validators cannot even jail)
        active = get_active_list(staking, authorities, params)
    return msgspec.structs.replace(staking, jailed=jailed, active=_normalize_active(active, authorities, params))


def process_commit_signers(
    staking: StakingState,
    signers: Collection[str],
    commit_height: int,
    authorities: Sequence[str],
    params: StakingParams,
    committee: Collection[str] | None = None,
) -> StakingState:
    """Count who of ``committee`` (the set that decided ``commit_height``; default the active set) did not
    sign its commit; jail the chronically absent."""
    floor = commit_height - params.downtime_window
    missed = {m.validator: [h for h in m.heights if h > floor] for m in staking.missed}
    to_jail: list[str] = []
    members = (
        sorted(committee)
        if committee is not None
        else [p.validator for p in get_active_list(staking, authorities, params)]
    )
    for v in members:
        if v not in signers:
            missed[v] = [*missed.get(v, []), commit_height]
            if len(missed[v]) > params.downtime_max_missed:
                to_jail.append(v)
                missed[v] = []
    updated = msgspec.structs.replace(staking, missed=[Missed(v, hs) for v, hs in sorted(missed.items()) if hs])
    for v in to_jail:
        updated = process_jail(updated, v, commit_height + 1, authorities, params)
    return updated
