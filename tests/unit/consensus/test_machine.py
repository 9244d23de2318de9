"""Single-machine rules: proposing, locking, nil votes on timeouts, growing timeouts, evidence, rotation."""

from __future__ import annotations

from collections import Counter

import pytest

from aitbc.consensus.machine import (
    CastVote,
    ConsensusState,
    Decide,
    ProposalReceived,
    Propose,
    ReportEvidence,
    ScheduleTimeout,
    Start,
    Step,
    TimeoutConfig,
    TimeoutFired,
    VoteReceived,
    get_round_proposer,
    new_height,
    step,
)
from aitbc.consensus.proposer import get_proposer
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.vote import Proposal, Vote, VoteKind, sign_proposal, sign_vote, verify_commit

CHAIN = "aitbc-test"
KEYS = sorted((KeyPair.from_seed(bytes([i + 1]) * 32) for i in range(4)), key=lambda k: k.address)
POWERS = {k.address: 10 for k in KEYS}
BY_ADDRESS = {k.address: k for k in KEYS}
A, B = "aa" * 32, "bb" * 32


def vote(validator: str, kind: VoteKind, block_hash: str, round_: int = 0, height: int = 1) -> VoteReceived:
    v = Vote(chain_id=CHAIN, height=height, round=round_, kind=kind.value, block_hash=block_hash, validator=validator)
    return VoteReceived(sign_vote(v, BY_ADDRESS[validator]))


def proposal(state: ConsensusState, round_: int, block_hash: str, pol_round: int = 0) -> ProposalReceived:
    proposer = get_round_proposer(state, round_)
    p = Proposal(chain_id=CHAIN, height=1, round=round_, block_hash=block_hash, pol_round=pol_round, proposer=proposer)
    return ProposalReceived(sign_proposal(p, BY_ADDRESS[proposer]), valid=True)


def follower(state_round: int = 0) -> tuple[ConsensusState, str]:
    """A validator that is not the proposer of round 0 or 1."""
    probe = new_height(CHAIN, 1, POWERS, None)
    busy = {get_round_proposer(probe, 0), get_round_proposer(probe, 1)}
    me = next(k.address for k in KEYS if k.address not in busy)
    state, _ = step(new_height(CHAIN, 1, POWERS, me), Start())
    return state, me


def votes_of(actions: list[object]) -> list[tuple[str, str]]:
    return [(a.vote.kind, a.vote.block_hash) for a in actions if isinstance(a, CastVote)]


def test_proposer_of_the_round_proposes_and_everyone_schedules_the_propose_timeout() -> None:
    probe = new_height(CHAIN, 1, POWERS, None)
    proposer = get_round_proposer(probe, 0)
    _, actions = step(new_height(CHAIN, 1, POWERS, proposer), Start())
    assert Propose(1, 0, None, 0) in actions
    assert ScheduleTimeout(1, 0, Step.PROPOSE, 1_000) in actions


def test_valid_proposal_is_prevoted_then_locked_and_precommitted_then_decided() -> None:
    state, me = follower()
    state, actions = step(state, proposal(state, 0, A))
    assert votes_of(actions) == [("prevote", A)]
    others = [k.address for k in KEYS if k.address != me]
    for v in [me, *others[:2]]:
        state, actions = step(state, vote(v, VoteKind.PREVOTE, A))
    assert votes_of(actions) == [("precommit", A)]
    assert (state.locked_hash, state.locked_round) == (A, 0)
    decide = None
    for v in [me, *others[:2]]:
        state, actions = step(state, vote(v, VoteKind.PRECOMMIT, A))
        decide = next((a for a in actions if isinstance(a, Decide)), decide)
    assert decide is not None and decide.block_hash == A and state.step == Step.COMMIT
    verify_commit(decide.certificate, CHAIN, 1, A, POWERS)  # the certificate checks out


def test_timeouts_vote_nil_and_grow_each_round() -> None:
    state, _ = follower()
    state, actions = step(state, TimeoutFired(1, 0, Step.PROPOSE))
    assert votes_of(actions) == [("prevote", "")]
    for k in KEYS[:3]:
        state, actions = step(state, vote(k.address, VoteKind.PREVOTE, "", 0))
    state, actions = step(state, TimeoutFired(1, 0, Step.PRECOMMIT))
    assert state.round == 1
    timeouts = [a for a in actions if isinstance(a, ScheduleTimeout)]
    assert timeouts == [ScheduleTimeout(1, 1, Step.PROPOSE, 1_500)]
    assert TimeoutConfig().duration(Step.PREVOTE, 3) > TimeoutConfig().duration(Step.PREVOTE, 2)


def test_a_locked_validator_prevotes_nil_for_another_block_without_a_newer_lock_proof() -> None:
    state, me = follower()
    others = [k.address for k in KEYS if k.address != me]
    state, _ = step(state, proposal(state, 0, A))
    for v in [me, *others[:2]]:
        state, _ = step(state, vote(v, VoteKind.PREVOTE, A))
    assert state.locked_hash == A
    state, _ = step(state, TimeoutFired(1, 0, Step.PRECOMMIT))
    assert state.round == 1
    state, actions = step(state, proposal(state, 1, B))
    assert votes_of(actions) == [("prevote", "")]  # still locked on A


def test_a_proof_of_lock_from_a_later_round_unlocks() -> None:
    state, me = follower()
    others = [k.address for k in KEYS if k.address != me]
    state, _ = step(state, proposal(state, 0, A))
    for v in [me, *others[:2]]:
        state, _ = step(state, vote(v, VoteKind.PREVOTE, A))
    state, _ = step(state, TimeoutFired(1, 0, Step.PRECOMMIT))
    # round 1: three others prevoted B (we missed it); round 2 re-proposes B with that proof-of-lock
    state, _ = step(state, proposal(state, 1, B))
    for v in others:
        state, _ = step(state, vote(v, VoteKind.PREVOTE, B, round_=1))
    state, _ = step(state, TimeoutFired(1, 1, Step.PREVOTE))
    if state.round == 1:
        state, _ = step(state, TimeoutFired(1, 1, Step.PRECOMMIT))
    state, actions = step(state, proposal(state, 2, B, pol_round=2))
    assert ("prevote", B) in votes_of(actions)


def test_more_than_a_third_in_a_higher_round_makes_us_jump() -> None:
    state, me = follower()
    others = [k.address for k in KEYS if k.address != me]
    state, _ = step(state, vote(others[0], VoteKind.PREVOTE, "", 5))
    assert state.round == 0
    state, _ = step(state, vote(others[1], VoteKind.PREVOTE, "", 5))
    assert state.round == 5


def test_a_double_vote_is_reported_once() -> None:
    state, me = follower()
    other = next(k.address for k in KEYS if k.address != me)
    state, _ = step(state, vote(other, VoteKind.PREVOTE, A))
    state, actions = step(state, vote(other, VoteKind.PREVOTE, B))
    reports = [a for a in actions if isinstance(a, ReportEvidence)]
    assert len(reports) == 1 and {reports[0].evidence.vote_a.block_hash, reports[0].evidence.vote_b.block_hash} == {
        A,
        B,
    }
    state, actions = step(state, vote(other, VoteKind.PREVOTE, "cc" * 32))
    assert not [a for a in actions if isinstance(a, ReportEvidence)]


def test_votes_from_outside_the_set_or_height_are_ignored() -> None:
    state, _ = follower()
    stranger = KeyPair.from_seed(b"\x77" * 32)
    BY_ADDRESS[stranger.address] = stranger
    after, _ = step(state, vote(stranger.address, VoteKind.PREVOTE, A))
    assert after.votes == state.votes
    after, _ = step(state, vote(KEYS[0].address, VoteKind.PREVOTE, A, height=2))
    assert after.votes == state.votes


def test_proposer_rotation_is_weighted_and_spread() -> None:
    powers = {"a": 3, "b": 1, "c": 2}
    cycle = [get_proposer(powers, h, 0) for h in range(6)]
    assert Counter(cycle) == {"a": 3, "b": 1, "c": 2}
    assert cycle[:3] != ["a", "a", "a"]  # spread out, not in runs
    # rounds walk the same cycle: a crashed proposer costs one round, not its whole weight
    assert [get_proposer(powers, 7, r) for r in range(6)] == [cycle[(7 + r) % 6] for r in range(6)]
    big = {f"v{i}": 10**6 + i for i in range(5)}
    picks = Counter(get_proposer(big, h, 0) for h in range(2_000))
    assert set(picks) == set(big) and min(picks.values()) > 300


def test_new_height_refuses_an_empty_set() -> None:
    with pytest.raises(ValueError, match="validators"):
        new_height(CHAIN, 1, {}, None)
