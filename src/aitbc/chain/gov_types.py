"""Governance state: proposals, their deposits, votes and tallies, scheduled and enacted parameter changes.

One ``GovernanceState`` lives under one key of the state root (like the staking state), so a light client
checks any proposal, vote, tally or the live parameters with one Merkle proof. Votes are kept only while a
proposal is open (the tally replaces them), which bounds what every vote rewrites by
``max_active_proposals`` x the number of voters.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from aitbc.chain.params import ChainParams
from aitbc.protocol.tx import ParamChange
from aitbc.protocol.types import U64, Address, Amount, Height, Wire


class ProposalStatus(StrEnum):
    DEPOSIT_PERIOD = "deposit_period"
    VOTING_PERIOD = "voting_period"
    PASSED = "passed"
    REJECTED = "rejected"
    VETOED = "vetoed"
    EXPIRED = "expired"
    """The deposit period ended before the deposit reached ``min_deposit`` (deposits returned)."""
    FAILED = "failed"
    """Passed, but could not be carried out (a treasury spend larger than the pool; ``note`` says why)."""


OPEN_STATUSES: Final = frozenset({ProposalStatus.DEPOSIT_PERIOD.value, ProposalStatus.VOTING_PERIOD.value})

Text = Annotated[str, Wire.STR]


class ProposalDeposit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    depositor: Address
    amount: Amount


class VoteRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    voter: Address
    option: Text


class Tally(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Bonded stake behind each option at the end of the vote, and all bonded stake then."""

    yes: Amount = 0
    no: Amount = 0
    abstain: Amount = 0
    no_with_veto: Amount = 0
    total_bonded: Amount = 0

    @property
    def voted(self) -> int:
        return self.yes + self.no + self.abstain + self.no_with_veto


class Proposal(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: U64
    proposer: Address
    kind: Text
    title: Text
    description: Text = ""
    changes: list[ParamChange] = msgspec.field(default_factory=list)
    recipient: Text = ""
    spend: Amount = 0
    activation_height: Height = 0
    upgrade_version: Text = ""
    status: Annotated[str, Meta(pattern=r"^[a-z_]+$"), Wire.STR] = ProposalStatus.DEPOSIT_PERIOD.value
    submit_height: Height = 0
    deposit_end_height: Height = 0
    voting_start_height: Height = 0
    voting_end_height: Height = 0
    """Last height at which a vote is accepted; the tally runs at the start of the next block."""
    deposits: list[ProposalDeposit] = msgspec.field(default_factory=list)
    total_deposit: Amount = 0
    votes: list[VoteRecord] = msgspec.field(default_factory=list)
    """Sorted by voter; emptied once the tally is stored."""
    tally: Tally | None = None
    outcome_height: Height = 0
    enact_height: Height = 0
    """Parameter changes: the height whose block first runs with them."""
    note: Text = ""


class ScheduledChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    height: Height
    proposal_id: U64
    changes: list[ParamChange]


class ParamRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One enacted parameter change: the params history."""

    height: Height
    proposal_id: U64
    name: Text
    old: U64
    new: U64


class UpgradeSignal(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A passed software-upgrade proposal: nodes report it and warn operators as the height nears."""

    proposal_id: U64
    height: Height
    version: Text


class GovernanceState(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    next_id: U64 = 1
    proposals: list[Proposal] = msgspec.field(default_factory=list)
    """Every proposal, by id (ids are dense from 1, so ``proposals[id - 1]``)."""
    scheduled: list[ScheduledChange] = msgspec.field(default_factory=list)
    params: ChainParams | None = None
    """The live parameters once any change was enacted (``None``: genesis's)."""
    history: list[ParamRecord] = msgspec.field(default_factory=list)
    upgrades: list[UpgradeSignal] = msgspec.field(default_factory=list)
    locked: Amount = 0
    """Deposits held for open proposals (part of the supply)."""
    burned: Amount = 0
    """Deposits burned by vetoes and missed quorums (supply = genesis + minted - burned)."""


EMPTY_GOVERNANCE: Final = GovernanceState()


def get_proposal(gov: GovernanceState, proposal_id: int) -> Proposal | None:
    if 1 <= proposal_id <= len(gov.proposals):
        return gov.proposals[proposal_id - 1]
    return None


def compute_live_params(gov: GovernanceState, genesis_params: ChainParams) -> ChainParams:
    """The parameters in force now: the last enacted set, else genesis's."""
    return gov.params if gov.params is not None else genesis_params
