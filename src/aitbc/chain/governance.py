"""Governance rules: ``submit_proposal``, ``deposit_proposal``, ``vote`` and the per-block tally and enactment.

The rule (parameters in ``GovernanceParams``; ``docs/governance.md`` has the prose and the table):

* **Submit** with any deposit (taken from the sender). Once a proposal's deposits reach ``min_deposit``
  its vote opens for ``voting_period_blocks``; a proposal that does not reach it within
  ``deposit_period_blocks`` expires and its deposits go back to their depositors.
* **Vote** ``yes`` / ``no`` / ``abstain`` / ``no_with_veto`` while the vote is open; a later vote of the same
  account replaces its earlier one.
* **Tally** at the start of the first block after the vote closes, from the bonds at that moment: each bond
  counts for its delegator's vote if the delegator voted, else for its validator's vote if the validator
  voted (delegators inherit, and can override), else for nothing. ``total_bonded`` is every bond.
  - fewer than ``quorum_bps`` of all bonded stake voted → **rejected**, deposits **burned**;
  - no-with-veto ≥ ``veto_threshold_bps`` of the votes cast → **vetoed**, deposits **burned**;
  - yes > ``threshold_bps`` of yes + no + no-with-veto → **passed**, else **rejected**; either way the
    deposits are **returned**.
* **Carry out** a passed proposal: a parameter change is scheduled for ``max(activation_height, next
  block)`` and enacted at the start of that block (checked again against ranges and invariants; a change
  that no longer fits is dropped and the proposal marked ``failed``); a treasury spend is paid from the
  reward pool (``failed`` if the pool is short); an upgrade signal is recorded; a text proposal is just
  recorded.

Every rule here is pure: state in, state out, no clock.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import msgspec

from aitbc.chain.bonds import BondReader
from aitbc.chain.context import BlockContext, TxContext
from aitbc.chain.entries import Account
from aitbc.chain.gov_params import BPS, GovernanceParams
from aitbc.chain.gov_types import (
    OPEN_STATUSES,
    GovernanceState,
    ParamRecord,
    Proposal,
    ProposalDeposit,
    ProposalStatus,
    ScheduledChange,
    Tally,
    UpgradeSignal,
    VoteRecord,
    compute_live_params,
    get_proposal,
)
from aitbc.chain.ledger import process_credit
from aitbc.chain.param_changes import compute_changed_params, get_param
from aitbc.chain.params import REWARD_POOL_ADDRESS, ChainParams
from aitbc.chain.state import StateDelta
from aitbc.chain.validators import StakingState
from aitbc.protocol.address import is_valid_address
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.tx import DepositProposal, GovernanceVote, SubmitProposal


def _replace_proposal(gov: GovernanceState, proposal: Proposal) -> GovernanceState:
    proposals = list(gov.proposals)
    proposals[proposal.id - 1] = proposal
    return msgspec.structs.replace(gov, proposals=proposals)


def _add_deposit(proposal: Proposal, depositor: str, amount: int, ctx: TxContext) -> Proposal:
    """Record ``amount`` from ``depositor``; open the vote once the total reaches the minimum."""
    by_depositor = {d.depositor: d.amount for d in proposal.deposits}
    by_depositor[depositor] = by_depositor.get(depositor, 0) + amount
    total = proposal.total_deposit + amount
    updated = msgspec.structs.replace(
        proposal,
        deposits=[ProposalDeposit(d, a) for d, a in sorted(by_depositor.items())],
        total_deposit=total,
    )
    rules = ctx.params.governance
    if proposal.status == ProposalStatus.DEPOSIT_PERIOD and total >= rules.min_deposit:
        updated = msgspec.structs.replace(
            updated,
            status=ProposalStatus.VOTING_PERIOD.value,
            voting_start_height=ctx.height,
            voting_end_height=ctx.height + rules.voting_period_blocks - 1,
        )
    return updated


def verify_proposal_content(tx: SubmitProposal, params: ChainParams, height: int) -> None:
    """The kind-specific rules of a proposal (the parameter changes against the live parameters)."""
    kind = tx.proposal_kind
    # Verify only the fields of the proposal's kind are set
    extras = {
        "changes": bool(tx.changes),
        "recipient": bool(tx.recipient) or bool(tx.spend),
        "upgrade_version": bool(tx.upgrade_version),
        "activation_height": bool(tx.activation_height),
    }
    allowed = {
        "param_change": {"changes", "activation_height"},
        "treasury_spend": {"recipient"},
        "software_upgrade": {"upgrade_version", "activation_height"},
        "text": set(),
    }[kind]
    stray = sorted(name for name, present in extras.items() if present and name not in allowed)
    if stray:
        raise InvalidTx(TxRejection.BAD_PROPOSAL, f"a {kind} proposal does not take {', '.join(stray)}")
    if kind == "param_change":
        # Verify the changes are valid against the parameters in force
        if not tx.changes:
            raise InvalidTx(TxRejection.BAD_PROPOSAL, "a param_change proposal needs at least one change")
        compute_changed_params(params, tx.changes)
    elif kind == "treasury_spend":
        # Verify the spend names a valid recipient and a positive amount
        if not is_valid_address(tx.recipient):
            raise InvalidTx(TxRejection.BAD_PROPOSAL, "recipient is not a valid address")
        if tx.spend == 0:
            raise InvalidTx(TxRejection.BAD_PROPOSAL, "a treasury spend needs a positive amount")
    elif kind == "software_upgrade":
        # Verify the upgrade names a version and a future height
        if not tx.upgrade_version:
            raise InvalidTx(TxRejection.BAD_PROPOSAL, "a software_upgrade proposal needs upgrade_version")
        if tx.activation_height <= height:
            raise InvalidTx(TxRejection.BAD_PROPOSAL, "activation_height must lie in the future")


def verify_submit_proposal(state: StateDelta, tx: SubmitProposal, ctx: TxContext) -> GovernanceState:
    """Check the proposal; returns the governance state with it added (written by ``process``)."""
    gov = state.get_governance()
    # Verify there is room for another open proposal
    open_count = sum(1 for p in gov.proposals if p.status in OPEN_STATUSES)
    if open_count >= ctx.params.governance.max_active_proposals:
        raise InvalidTx(TxRejection.TOO_MANY_PROPOSALS, f"{open_count} proposals are already open")
    verify_proposal_content(tx, ctx.params, ctx.height)
    # Verify the sender can pay the fee and the deposit
    if state.get_account(tx.sender).balance < tx.fee + tx.deposit:
        raise InvalidTx(TxRejection.INSUFFICIENT_BALANCE, f"balance does not cover fee + deposit {tx.deposit}")
    proposal = Proposal(
        id=gov.next_id,
        proposer=tx.sender,
        kind=tx.proposal_kind,
        title=tx.title,
        description=tx.description,
        changes=list(tx.changes),
        recipient=tx.recipient,
        spend=tx.spend,
        activation_height=tx.activation_height,
        upgrade_version=tx.upgrade_version,
        submit_height=ctx.height,
        deposit_end_height=ctx.height + ctx.params.governance.deposit_period_blocks - 1,
    )
    if tx.deposit:
        proposal = _add_deposit(proposal, tx.sender, tx.deposit, ctx)
    return msgspec.structs.replace(
        gov, next_id=gov.next_id + 1, proposals=[*gov.proposals, proposal], locked=gov.locked + tx.deposit
    )


def process_submit_proposal(state: StateDelta, tx: SubmitProposal, ctx: TxContext, gov: GovernanceState) -> None:
    """Take the deposit from the sender (the shared steps charged the fee) and store the proposal."""
    sender = state.get_account(tx.sender)
    state.set_account(tx.sender, Account(balance=sender.balance - tx.deposit, nonce=sender.nonce))
    state.set_governance(gov)


def _open_proposal(gov: GovernanceState, proposal_id: int, statuses: Sequence[str]) -> Proposal:
    proposal = get_proposal(gov, proposal_id)
    # Verify the proposal exists and is in a period that accepts this tx
    if proposal is None:
        raise InvalidTx(TxRejection.NO_PROPOSAL, f"no proposal {proposal_id}")
    if proposal.status not in statuses:
        raise InvalidTx(TxRejection.PROPOSAL_CLOSED, f"proposal {proposal_id} is {proposal.status}")
    return proposal


def verify_deposit_proposal(state: StateDelta, tx: DepositProposal, ctx: TxContext) -> GovernanceState:
    gov = state.get_governance()
    proposal = _open_proposal(gov, tx.proposal_id, tuple(OPEN_STATUSES))
    updated = _add_deposit(proposal, tx.sender, tx.amount, ctx)
    return msgspec.structs.replace(_replace_proposal(gov, updated), locked=gov.locked + tx.amount)


def process_governance_change(
    state: StateDelta, tx: DepositProposal | GovernanceVote, ctx: TxContext, gov: GovernanceState
) -> None:
    """Store the governance state the kind's ``verify_*`` computed (a deposit's amount was charged)."""
    state.set_governance(gov)


def verify_vote(state: StateDelta, tx: GovernanceVote, ctx: TxContext) -> GovernanceState:
    gov = state.get_governance()
    proposal = _open_proposal(gov, tx.proposal_id, (ProposalStatus.VOTING_PERIOD.value,))
    votes = list(proposal.votes)
    voters = [v.voter for v in votes]
    at = bisect.bisect_left(voters, tx.sender)
    record = VoteRecord(tx.sender, tx.option)
    if at < len(votes) and voters[at] == tx.sender:
        votes[at] = record
    else:
        votes.insert(at, record)
    return _replace_proposal(gov, msgspec.structs.replace(proposal, votes=votes))


def compute_tally(proposal: Proposal, staking: StakingState, bonds: BondReader | None = None) -> Tally:
    """Bonded stake behind each option: a bond follows its delegator's vote, else its validator's.
    ``bonds``: the block's bonds (default: ``staking.bonds``)."""
    votes = {v.voter: v.option for v in proposal.votes}
    counts = {"yes": 0, "no": 0, "abstain": 0, "no_with_veto": 0}
    total = 0
    for bond in bonds.iter_bonds() if bonds is not None else staking.bonds:
        total += bond.amount
        option = votes.get(bond.delegator) or votes.get(bond.validator)
        if option is not None:
            counts[option] += bond.amount
    return Tally(total_bonded=total, **counts)


def compute_outcome(tally: Tally, rules: GovernanceParams) -> tuple[ProposalStatus, str, bool]:
    """Passed, rejected or vetoed, why, and whether the deposits are burned (module docstring)."""
    voted = tally.voted
    if tally.total_bonded == 0 or voted * BPS < rules.quorum_bps * tally.total_bonded:
        return ProposalStatus.REJECTED, "quorum not reached", True
    if tally.no_with_veto * BPS >= rules.veto_threshold_bps * voted:
        return ProposalStatus.VETOED, "vetoed", True
    deciding = tally.yes + tally.no + tally.no_with_veto
    if deciding and tally.yes * BPS > rules.threshold_bps * deciding:
        return ProposalStatus.PASSED, "", False
    return ProposalStatus.REJECTED, "threshold not reached", False


def _release_deposits(state: StateDelta, proposal: Proposal, burn: bool) -> None:
    if burn:
        return
    for deposit in proposal.deposits:
        process_credit(state, deposit.depositor, deposit.amount)


def compute_enactment(
    gov: GovernanceState, genesis_params: ChainParams, height: int
) -> tuple[ChainParams, list[ParamRecord], dict[int, str]]:
    """The parameters block ``height`` runs with: the live ones plus every change scheduled up to it.

    Returns them, the history records of the changes that apply, and, by proposal id, why a change was
    dropped (it no longer fits the ranges or invariants). ``build_block`` / ``apply_block`` use the
    parameters; ``process_governance_block`` stores the rest, so both agree by construction."""
    params = compute_live_params(gov, genesis_params)
    records: list[ParamRecord] = []
    dropped: dict[int, str] = {}
    for change in gov.scheduled:
        if change.height > height:
            continue
        try:
            updated = compute_changed_params(params, change.changes)
        except InvalidTx as exc:
            dropped[change.proposal_id] = f"not enacted: {exc.message}"
            continue
        for item in change.changes:
            records.append(ParamRecord(height, change.proposal_id, item.name, get_param(params, item.name), item.value))
        params = updated
    return params, records, dropped


def _carry_out(
    state: StateDelta, gov: GovernanceState, proposal: Proposal, height: int
) -> tuple[GovernanceState, Proposal]:
    """Do what a passed proposal says (module docstring)."""
    if proposal.kind == "param_change":
        at = max(proposal.activation_height, height + 1)
        scheduled = sorted(
            [*gov.scheduled, ScheduledChange(at, proposal.id, list(proposal.changes))],
            key=lambda s: (s.height, s.proposal_id),
        )
        return msgspec.structs.replace(gov, scheduled=scheduled), msgspec.structs.replace(proposal, enact_height=at)
    if proposal.kind == "treasury_spend":
        pool = state.get_account(REWARD_POOL_ADDRESS)
        if pool.balance < proposal.spend:
            note = f"the reward pool holds {pool.balance}, less than the spend {proposal.spend}"
            return gov, msgspec.structs.replace(proposal, status=ProposalStatus.FAILED.value, note=note)
        state.set_account(REWARD_POOL_ADDRESS, Account(balance=pool.balance - proposal.spend, nonce=pool.nonce))
        process_credit(state, proposal.recipient, proposal.spend)
        return gov, proposal
    if proposal.kind == "software_upgrade":
        signal = UpgradeSignal(proposal.id, proposal.activation_height, proposal.upgrade_version)
        return msgspec.structs.replace(gov, upgrades=[*gov.upgrades, signal]), proposal
    return gov, proposal


def process_proposal_deadlines(state: StateDelta, gov: GovernanceState, ctx: BlockContext) -> GovernanceState:
    """Expire proposals whose deposit period ended; tally, settle and carry out those whose vote closed."""
    for proposal in gov.proposals:
        if proposal.status == ProposalStatus.DEPOSIT_PERIOD and proposal.deposit_end_height < ctx.height:
            _release_deposits(state, proposal, burn=False)
            closed = msgspec.structs.replace(
                proposal, status=ProposalStatus.EXPIRED.value, outcome_height=ctx.height, note="deposit not reached"
            )
            gov = msgspec.structs.replace(_replace_proposal(gov, closed), locked=gov.locked - proposal.total_deposit)
        elif proposal.status == ProposalStatus.VOTING_PERIOD and proposal.voting_end_height < ctx.height:
            tally = compute_tally(proposal, state.get_staking(), state.bonds)
            status, note, burn = compute_outcome(tally, ctx.params.governance)
            _release_deposits(state, proposal, burn=burn)
            closed = msgspec.structs.replace(
                proposal, status=status.value, tally=tally, votes=[], outcome_height=ctx.height, note=note
            )
            gov = msgspec.structs.replace(
                gov,
                locked=gov.locked - proposal.total_deposit,
                burned=gov.burned + (proposal.total_deposit if burn else 0),
            )
            if status == ProposalStatus.PASSED:
                gov, closed = _carry_out(state, gov, closed, ctx.height)
            gov = _replace_proposal(gov, closed)
    return gov


def process_scheduled_changes(gov: GovernanceState, genesis_params: ChainParams, height: int) -> GovernanceState:
    """Enact the parameter changes due at ``height``: the live parameters, their history, failures noted."""
    due = [s for s in gov.scheduled if s.height <= height]
    if not due:
        return gov
    params, records, dropped = compute_enactment(gov, genesis_params, height)
    gov = msgspec.structs.replace(
        gov,
        scheduled=[s for s in gov.scheduled if s.height > height],
        params=params,
        history=[*gov.history, *records],
    )
    for proposal_id, note in sorted(dropped.items()):
        proposal = get_proposal(gov, proposal_id)
        if proposal is not None:
            gov = _replace_proposal(
                gov, msgspec.structs.replace(proposal, status=ProposalStatus.FAILED.value, note=note)
            )
    return gov


def process_governance_block(state: StateDelta, ctx: BlockContext) -> None:
    """Start of every block: proposal deadlines, then the parameter changes due now."""
    original = gov = state.get_governance()
    if not gov.scheduled and not any(p.status in OPEN_STATUSES for p in gov.proposals):
        return
    gov = process_proposal_deadlines(state, gov, ctx)
    gov = process_scheduled_changes(gov, ctx.genesis_params or ctx.params, ctx.height)
    if gov != original:
        state.set_governance(gov)
