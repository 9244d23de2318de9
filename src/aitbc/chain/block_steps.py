"""What the chain does at the start and the end of every block, around its txs.

``process_begin_block`` runs these named steps, in this order:

1. ``process_expired_escrows`` (``aitbc.chain.escrow``): refund every open
   escrow whose deadline has passed; ``process_deposit_withdrawals`` and
   ``process_expired_paid_jobs`` (``aitbc.chain.deposits``): pay out deposit
   withdrawals whose delay has passed, forget expired paid job ids;
2. ``process_downtime``: BFT blocks count who signed the parent's commit and
   jail the chronically absent; the signers become the block's voters;
3. ``process_unbonding_releases``: return matured unbondings to their delegators;
4. ``process_epoch_boundary``: at an epoch boundary recompute the active set;
5. ``process_block_reward``: mint the block reward, draw the reward pool's
   payout, and split it over the proposer and the voters;
6. ``process_governance_block`` (``aitbc.chain.governance``): expire proposals,
   tally closed votes from the bonds now, carry out passed proposals, enact the
   parameter changes due at this height;
7. ``process_audit_block`` (``aitbc.chain.audits``): draw audits among the jobs
   the parent settled, expire and decide audits past their windows, release
   matured miner unbondings; ``process_training_deadlines``
   (``aitbc.chain.training_audit``): a party silent in its round of a training
   dispute loses it.

``process_end_block`` splits the fees a BFT block collected by the same rule, then
records the set that decided the block if the block changed the active set
(the next block's ``last_commit`` is measured against it).
"""

from __future__ import annotations

import msgspec

from aitbc.chain.audits import process_audit_block, process_audit_candidates
from aitbc.chain.context import BlockContext
from aitbc.chain.deposits import process_deposit_withdrawals, process_expired_paid_jobs
from aitbc.chain.entries import Account
from aitbc.chain.escrow import process_expired_escrows
from aitbc.chain.governance import process_governance_block
from aitbc.chain.ledger import process_credit
from aitbc.chain.params import REWARD_POOL_ADDRESS
from aitbc.chain.rewards import compute_rewards
from aitbc.chain.state import ChainState, StateDelta
from aitbc.chain.training_audit import process_training_deadlines
from aitbc.chain.validators import (
    StakingState,
    get_commit_powers,
    process_commit_signers,
    process_epoch,
    process_matured_unbondings,
    process_record_deciding_set,
)


def process_downtime(state: StateDelta, staking: StakingState, ctx: BlockContext) -> StakingState:
    """The parent's precommits (``last_commit``, > 2/3 of the deciding set's power, checked before) name this
    block's voters; members of the deciding set missing from it count as downtime."""
    if ctx.last_commit is None:
        return staking
    signers = frozenset(sig.validator for sig in ctx.last_commit.signatures)
    state.voters = signers
    committee = state.committee
    return process_commit_signers(
        staking, signers, ctx.last_commit.height, state.get_authorities(), ctx.params.staking, committee
    )


def process_unbonding_releases(state: StateDelta, staking: StakingState, ctx: BlockContext) -> StakingState:
    staking, released = process_matured_unbondings(staking, ctx.height)
    for delegator, amount in released:
        process_credit(state, delegator, amount)
    return staking


def process_epoch_boundary(state: StateDelta, staking: StakingState, ctx: BlockContext) -> StakingState:
    return process_epoch(staking, state.get_authorities(), ctx.params.staking, ctx.height, state.bonds)


def process_block_reward(state: StateDelta, staking: StakingState, ctx: BlockContext) -> StakingState:
    """``block_reward`` new tokens plus ``reward_pool_payout_bps`` of the pool, split by the reward rule."""
    rules = ctx.params.staking
    pool = state.get_account(REWARD_POOL_ADDRESS)
    from_pool = pool.balance * rules.reward_pool_payout_bps // 10_000
    reward = rules.block_reward + from_pool
    if not reward:
        return staking
    if from_pool:
        state.set_account(REWARD_POOL_ADDRESS, Account(balance=pool.balance - from_pool, nonce=pool.nonce))
    credits = compute_rewards(
        staking,
        state.get_authorities(),
        rules,
        ctx.proposer,
        reward,
        state.voters,
        committee=state.committee,
        unclaimed_to=REWARD_POOL_ADDRESS,
        bonds=state.bonds,
    )
    for address, amount in sorted(credits.items()):
        process_credit(state, address, amount)
    return msgspec.structs.replace(staking, minted=staking.minted + rules.block_reward)


def process_begin_block(state: StateDelta, base: ChainState, ctx: BlockContext) -> None:
    """Start of every block (module docstring); ``base`` is the committed state the block builds on."""
    process_expired_escrows(state, base, ctx)
    process_deposit_withdrawals(state, base, ctx)
    process_expired_paid_jobs(state, base, ctx)
    original = staking = state.get_staking()
    if ctx.last_commit is not None:
        state.committee = get_commit_powers(base.staking, base.authorities, ctx.params.staking)
    staking = process_downtime(state, staking, ctx)
    staking = process_unbonding_releases(state, staking, ctx)
    staking = process_epoch_boundary(state, staking, ctx)
    staking = process_block_reward(state, staking, ctx)
    if staking != original:
        state.set_staking(staking)
    process_governance_block(state, ctx)
    process_audit_block(state, ctx)
    process_training_deadlines(state, ctx)


def process_fee_split(state: StateDelta, ctx: BlockContext) -> None:
    """A BFT block's collected fees go by the reward rule to the proposer and the voters."""
    if state.voters is None or state.fees == 0:
        return
    staking, authorities = state.get_staking(), state.get_authorities()
    credits = compute_rewards(
        staking,
        authorities,
        ctx.params.staking,
        ctx.proposer,
        state.fees,
        state.voters,
        committee=state.committee,
        unclaimed_to=REWARD_POOL_ADDRESS,
        bonds=state.bonds,
    )
    state.fees = 0
    for address, amount in sorted(credits.items()):
        process_credit(state, address, amount)


def process_deciding_set(state: StateDelta, ctx: BlockContext) -> None:
    """Remember which set decided this block if the block changed the active set (see ``last_set``)."""
    before = state.base.get_staking()
    staking = state.get_staking()
    updated = process_record_deciding_set(staking, before, state.get_authorities(), ctx.params.staking)
    if updated is not staking:
        state.set_staking(updated)


def process_end_block(state: StateDelta, ctx: BlockContext) -> None:
    """End of every block: split a BFT block's fees, record the set that decided it, and keep the jobs it
    settled for the next block's audit draw."""
    process_fee_split(state, ctx)
    process_deciding_set(state, ctx)
    process_audit_candidates(state)
