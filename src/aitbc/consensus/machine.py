"""One height of Tendermint BFT consensus as ``step(state, event) -> (state, actions)``.

The rules are those of "The latest gossip on BFT consensus" (Buchman, Kwon,
Milosevic, 2018), numbered here as in its Algorithm 1:

* a round starts with the proposer (``get_proposer``, weighted by power)
  proposing its *valid* block if it has one, else a new block (``Propose``);
* L22/L28: on the round's proposal, prevote it if it is valid and we are not
  locked on another block (or the proposal carries a proof-of-lock newer than
  our lock), else prevote nil;
* L36: on a valid proposal with > 2/3 prevotes in this round, lock on it and
  precommit it (and remember it as the valid block); L44: > 2/3 nil prevotes
  → precommit nil;
* L49: a block with > 2/3 precommits in any round is decided (``Decide``
  carries the precommits: the block's commit certificate);
* L55: > 1/3 of the power seen in a higher round → jump to that round;
* timeouts (``ScheduleTimeout``) grow by ``delta_ms`` per round, so once
  the network is synchronous again some round is long enough to finish.

Signatures are checked where messages enter the process (the p2p shell); the
machine sees well-formed, signed messages of this chain and counts each
validator's vote per (round, kind). A second, different vote from the
same validator is a double vote: ``ReportEvidence`` hands it to the shell, and
the vote is kept too (at most ``MAX_VOTES_PER_SLOT``), counting for the block it
names: a quorum for a block then means "more than 2/3 of the power signed for
it", whoever else they signed for, which is all the safety argument needs
(two quorums overlap in > 1/3, so in an honest validator, which signs once),
and honest nodes that saw the equivocator's two votes in different orders
still agree on which blocks have a quorum (without it they can lock forever
on a block the others cannot confirm).
Own votes and proposals are returned as actions and come back as events once
the shell has signed them (after persisting, see ``aitbc.node.signguard``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum

from aitbc.consensus.proposer import get_proposer
from aitbc.protocol.vote import (
    CommitCertificate,
    CommitSig,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    VoteKind,
    compute_evidence_key,
    is_quorum,
    make_evidence,
)

NIL = ""
MAX_VOTES_PER_SLOT = 2
"""Distinct votes kept per validator per (round, kind): one honest vote and proof of one double vote."""


class Step(IntEnum):
    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2
    COMMIT = 3


@dataclass(frozen=True, slots=True)
class TimeoutConfig:
    propose_ms: int = 1_000
    prevote_ms: int = 500
    precommit_ms: int = 500
    delta_ms: int = 500
    """Added per round: timeouts grow until they outlast the network's delays."""

    def duration(self, step: Step, round_: int) -> int:
        base = {Step.PROPOSE: self.propose_ms, Step.PREVOTE: self.prevote_ms}.get(step, self.precommit_ms)
        return base + round_ * self.delta_ms


# -- events -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Start:
    """Begin the height (round 0)."""


@dataclass(frozen=True, slots=True)
class ProposalReceived:
    proposal: Proposal
    valid: bool
    """Whether the proposed block passed the chain's rules (the shell ran ``apply_block``)."""


@dataclass(frozen=True, slots=True)
class VoteReceived:
    vote: Vote


@dataclass(frozen=True, slots=True)
class TimeoutFired:
    height: int
    round: int
    step: Step


Event = Start | ProposalReceived | VoteReceived | TimeoutFired


# -- actions ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Propose:
    """Sign and broadcast a proposal: of block ``reuse_hash`` if given (our valid block), else a new one."""

    height: int
    round: int
    reuse_hash: str | None
    pol_round: int
    """Round of the proof-of-lock for ``reuse_hash``, plus one (0: none)."""


@dataclass(frozen=True, slots=True)
class CastVote:
    """Sign (after persisting it) and broadcast this vote, then feed it back as ``VoteReceived``."""

    vote: Vote


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    height: int
    round: int
    step: Step
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Decide:
    height: int
    round: int
    block_hash: str
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True)
class ReportEvidence:
    evidence: DuplicateVoteEvidence


Action = Propose | CastVote | ScheduleTimeout | Decide | ReportEvidence


@dataclass(frozen=True, slots=True)
class ConsensusState:
    chain_id: str
    height: int
    powers: Mapping[str, int]
    """The validator set of this height."""
    me: str | None
    """Our validator address, or None for a node that only follows."""
    timeouts: TimeoutConfig = TimeoutConfig()
    start_round: int = 0
    """The round ``Start`` begins (a restarted validator skips the rounds it already signed in)."""
    round: int = 0
    step: Step = Step.PROPOSE
    started: bool = False
    locked_hash: str | None = None
    locked_round: int = -1
    valid_hash: str | None = None
    valid_round: int = -1
    proposals: Mapping[int, tuple[Proposal, bool]] = field(default_factory=dict)
    votes: Mapping[tuple[int, str], Mapping[str, tuple[Vote, ...]]] = field(default_factory=dict)
    """(round, kind) -> validator -> its distinct votes (first one first)."""
    fired: frozenset[tuple[int, str]] = frozenset()
    """Rules that fire once per round ("for the first time")."""
    known_blocks: frozenset[str] = frozenset()
    """Hashes of every valid block proposed at this height (any round, any proposal)."""
    decided: str | None = None
    reported: frozenset[str] = frozenset()

    @property
    def total_power(self) -> int:
        return sum(self.powers.values())


def new_height(
    chain_id: str,
    height: int,
    powers: Mapping[str, int],
    me: str | None,
    timeouts: TimeoutConfig | None = None,
    *,
    start_round: int = 0,
    lock: tuple[str, int] | None = None,
) -> ConsensusState:
    """A machine for ``height``; ``start_round`` / ``lock`` restore a restarted validator's position and lock."""
    if not powers or any(p <= 0 for p in powers.values()):
        raise ValueError("a height needs validators with positive power")
    state = ConsensusState(chain_id, height, dict(powers), me, timeouts or TimeoutConfig(), start_round=start_round)
    if lock is not None and lock[0]:
        state = replace(state, locked_hash=lock[0], locked_round=lock[1])
    return state


def get_round_proposer(state: ConsensusState, round_: int) -> str:
    return get_proposer(state.powers, state.height, round_)


def _power_for(state: ConsensusState, round_: int, kind: str, block_hash: str | None) -> int:
    """Power behind ``block_hash`` (None: any value) among the (round, kind) votes."""
    votes = state.votes.get((round_, kind), {})
    return sum(
        state.powers[validator]
        for validator, cast in votes.items()
        if block_hash is None or any(v.block_hash == block_hash for v in cast)
    )


def _quorum(state: ConsensusState, power: int) -> bool:
    return is_quorum(power, state.total_power)


def _vote(state: ConsensusState, kind: VoteKind, block_hash: str) -> CastVote | None:
    if state.me is None or state.me not in state.powers:
        return None
    return CastVote(
        Vote(
            chain_id=state.chain_id,
            height=state.height,
            round=state.round,
            kind=kind.value,
            block_hash=block_hash,
            validator=state.me,
        )
    )


def _start_round(state: ConsensusState, round_: int, actions: list[Action]) -> ConsensusState:
    state = replace(state, round=round_, step=Step.PROPOSE, started=True)
    if state.me is not None and get_round_proposer(state, round_) == state.me:
        reuse = state.valid_hash
        actions.append(Propose(state.height, round_, reuse, state.valid_round + 1 if reuse is not None else 0))
    actions.append(ScheduleTimeout(state.height, round_, Step.PROPOSE, state.timeouts.duration(Step.PROPOSE, round_)))
    return state


def _enter_prevote(state: ConsensusState, block_hash: str, actions: list[Action]) -> ConsensusState:
    cast = _vote(state, VoteKind.PREVOTE, block_hash)
    if cast is not None:
        actions.append(cast)
    return replace(state, step=Step.PREVOTE)


def _enter_precommit(state: ConsensusState, block_hash: str, actions: list[Action]) -> ConsensusState:
    cast = _vote(state, VoteKind.PRECOMMIT, block_hash)
    if cast is not None:
        actions.append(cast)
    return replace(state, step=Step.PRECOMMIT)


def _fire_once(state: ConsensusState, key: tuple[int, str]) -> ConsensusState | None:
    if key in state.fired:
        return None
    return replace(state, fired=state.fired | {key})


def _on_vote(state: ConsensusState, vote: Vote, actions: list[Action]) -> ConsensusState:
    if vote.validator not in state.powers or vote.chain_id != state.chain_id or vote.height != state.height:
        return state
    slot = (vote.round, vote.kind)
    existing = state.votes.get(slot, {})
    cast = existing.get(vote.validator, ())
    if any(v.block_hash == vote.block_hash for v in cast):
        return state  # seen (gossip repeats itself)
    if cast:
        first = cast[0]
        if first.signature and vote.signature:
            evidence = make_evidence(first, vote)
            key = compute_evidence_key(evidence)
            if key not in state.reported:
                actions.append(ReportEvidence(evidence))
                state = replace(state, reported=state.reported | {key})
        if len(cast) >= MAX_VOTES_PER_SLOT:
            return state
    votes = dict(state.votes)
    votes[slot] = {**existing, vote.validator: (*cast, vote)}
    return replace(state, votes=votes)


def _on_proposal(state: ConsensusState, proposal: Proposal, valid: bool) -> ConsensusState:
    if proposal.chain_id != state.chain_id or proposal.height != state.height:
        return state
    if proposal.proposer != get_round_proposer(state, proposal.round):
        return state
    if valid and proposal.block_hash not in state.known_blocks:
        state = replace(state, known_blocks=state.known_blocks | {proposal.block_hash})
    held = state.proposals.get(proposal.round)
    if held is not None:
        if valid and not held[1] and held[0] == proposal:
            # the same signed proposal, now with a copy of its block that checks out: it replaces the bad copy
            return replace(state, proposals={**state.proposals, proposal.round: (proposal, True)})
        return state  # a second proposal from the same proposer: the first one counts for voting
    return replace(state, proposals={**state.proposals, proposal.round: (proposal, valid)})


def _valid_block(state: ConsensusState, block_hash: str) -> bool:
    """We hold a valid proposal of this block (in any round)."""
    return block_hash in state.known_blocks


def _apply_rules(state: ConsensusState, actions: list[Action]) -> ConsensusState:
    """Fire every rule whose condition holds, until none does."""
    while True:
        before = state
        state = _apply_rules_once(state, actions)
        if state is before or state.decided is not None:
            return state


def _apply_rules_once(state: ConsensusState, actions: list[Action]) -> ConsensusState:
    prevote, precommit = VoteKind.PREVOTE.value, VoteKind.PRECOMMIT.value
    # L49: a block with > 2/3 precommits in any round is decided
    for (round_, kind), votes in state.votes.items():
        if kind != precommit:
            continue
        for block_hash in sorted({v.block_hash for cast in votes.values() for v in cast} - {NIL}):
            if _quorum(state, _power_for(state, round_, precommit, block_hash)) and _valid_block(state, block_hash):
                sigs = sorted(
                    (
                        CommitSig(v.validator, v.signature)
                        for cast in votes.values()
                        for v in cast
                        if v.block_hash == block_hash
                    ),
                    key=lambda s: s.validator,
                )
                cert = CommitCertificate(
                    chain_id=state.chain_id,
                    height=state.height,
                    round=round_,
                    block_hash=block_hash,
                    signatures=sigs,
                )
                actions.append(Decide(state.height, round_, block_hash, cert))
                return replace(state, decided=block_hash, step=Step.COMMIT)
    if not state.started or state.step == Step.COMMIT:
        return state
    # L55: > 1/3 of the power is already in a higher round: join it
    later = sorted({r for r, _ in state.votes if r > state.round} | {r for r in state.proposals if r > state.round})
    for round_ in reversed(later):
        seen = {v for kind in (prevote, precommit) for v in state.votes.get((round_, kind), {})}
        if round_ in state.proposals:
            seen.add(state.proposals[round_][0].proposer)
        if 3 * sum(state.powers[v] for v in seen) > state.total_power:
            return _start_round(state, round_, actions)
    r = state.round
    current = state.proposals.get(r)
    if state.step == Step.PROPOSE and current is not None:
        proposal, valid = current
        pol = proposal.pol_round - 1
        if pol < 0:  # L22
            ok = valid and (state.locked_round == -1 or state.locked_hash == proposal.block_hash)
            return _enter_prevote(state, proposal.block_hash if ok else NIL, actions)
        if pol < r and _quorum(state, _power_for(state, pol, prevote, proposal.block_hash)):  # L28
            ok = valid and (state.locked_round <= pol or state.locked_hash == proposal.block_hash)
            return _enter_prevote(state, proposal.block_hash if ok else NIL, actions)
    if state.step == Step.PREVOTE and _quorum(state, _power_for(state, r, prevote, None)):  # L34
        fired = _fire_once(state, (r, "prevote-any"))
        if fired is not None:
            actions.append(ScheduleTimeout(state.height, r, Step.PREVOTE, state.timeouts.duration(Step.PREVOTE, r)))
            return fired
    if state.step >= Step.PREVOTE and current is not None and current[1]:  # L36
        block_hash = current[0].block_hash
        if _quorum(state, _power_for(state, r, prevote, block_hash)):
            fired = _fire_once(state, (r, "prevote-block"))
            if fired is not None:
                state = replace(fired, valid_hash=block_hash, valid_round=r)
                if state.step == Step.PREVOTE:
                    state = replace(state, locked_hash=block_hash, locked_round=r)
                    state = _enter_precommit(state, block_hash, actions)
                return state
    if state.step == Step.PREVOTE and _quorum(state, _power_for(state, r, prevote, NIL)):  # L44
        return _enter_precommit(state, NIL, actions)
    if _quorum(state, _power_for(state, r, precommit, None)):  # L47
        fired = _fire_once(state, (r, "precommit-any"))
        if fired is not None:
            actions.append(ScheduleTimeout(state.height, r, Step.PRECOMMIT, state.timeouts.duration(Step.PRECOMMIT, r)))
            return fired
    return state


def _on_timeout(state: ConsensusState, event: TimeoutFired, actions: list[Action]) -> ConsensusState:
    if event.height != state.height or event.round != state.round or state.step == Step.COMMIT:
        return state
    if event.step == Step.PROPOSE and state.step == Step.PROPOSE:  # L57
        return _enter_prevote(state, NIL, actions)
    if event.step == Step.PREVOTE and state.step == Step.PREVOTE:  # L61
        return _enter_precommit(state, NIL, actions)
    if event.step == Step.PRECOMMIT:  # L65
        return _start_round(state, state.round + 1, actions)
    return state


def step(state: ConsensusState, event: Event) -> tuple[ConsensusState, list[Action]]:
    """Apply one event; the actions are for the shell to carry out, in order."""
    actions: list[Action] = []
    if state.decided is not None:
        if isinstance(event, VoteReceived):  # late votes still reveal double voters
            state = _on_vote(state, event.vote, actions)
        return state, actions
    if isinstance(event, Start):
        if not state.started:
            state = _start_round(state, state.start_round, actions)
    elif isinstance(event, ProposalReceived):
        state = _on_proposal(state, event.proposal, event.valid)
    elif isinstance(event, VoteReceived):
        state = _on_vote(state, event.vote, actions)
    elif isinstance(event, TimeoutFired):
        state = _on_timeout(state, event, actions)
    return _apply_rules(state, actions), actions
