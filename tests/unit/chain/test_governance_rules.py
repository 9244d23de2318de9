"""Governance rules through real blocks: proposals, deposits, votes with delegation, tally, enactment."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aitbc.chain.block import build_block, compute_block_params
from aitbc.chain.entries import is_valid_governance_proof
from aitbc.chain.genesis import Genesis, GenesisBalance, genesis_block, genesis_state
from aitbc.chain.gov_params import GovernanceParams
from aitbc.chain.gov_types import GovernanceState, Proposal, ProposalStatus, VoteRecord, get_proposal
from aitbc.chain.governance import compute_outcome, compute_tally
from aitbc.chain.params import REWARD_POOL_ADDRESS, ChainParams
from aitbc.chain.state import ChainState, commit_delta
from aitbc.chain.validators import Bond, StakingParams, StakingState
from aitbc.protocol.block import BlockHeader
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.tx import (
    Delegate,
    DepositProposal,
    GovernanceVote,
    ParamChange,
    SubmitProposal,
    Transfer,
    Tx,
    sign_tx,
    verify_tx,
)

CHAIN = "aitbc-test"
AUTHORITY = KeyPair.from_seed(b"\x01" * 32)
ALICE = KeyPair.from_seed(b"\x02" * 32)
BOB = KeyPair.from_seed(b"\x03" * 32)
CAROL = KeyPair.from_seed(b"\x04" * 32)
GOV = GovernanceParams(
    min_deposit=1_000, deposit_period_blocks=5, voting_period_blocks=3, quorum_bps=3_340, veto_threshold_bps=3_340
)
PARAMS = ChainParams(protocol_fee_bps=200, governance=GOV, staking=StakingParams(min_delegation=1))
START = 10**9
POOL = 50_000


class Chain:
    """A one-validator chain driven block by block through ``build_block`` (the real rules)."""

    def __init__(self) -> None:
        genesis = Genesis(
            chain_id=CHAIN,
            genesis_time_ms=1,
            authorities=[AUTHORITY.address],
            balances=[
                *(GenesisBalance(k.address, START) for k in (AUTHORITY, ALICE, BOB, CAROL)),
                GenesisBalance(REWARD_POOL_ADDRESS, POOL),
            ],
            params=PARAMS,
        )
        self.state: ChainState = genesis_state(genesis)
        self.head: BlockHeader = genesis_block(genesis, self.state).header
        self.supply = self.state.total_supply()
        self.nonces: dict[str, int] = {}

    def tx(self, key: KeyPair, tx_type: type, **fields: object) -> Tx:
        nonce = self.nonces.get(key.address, 0)
        self.nonces[key.address] = nonce + 1
        tx = tx_type(chain_id=CHAIN, sender=key.address, nonce=nonce, fee=10, **fields)
        return sign_tx(tx, key)

    def block(self, *txs: Tx, expect_dropped: TxRejection | None = None) -> None:
        verified = [verify_tx(t) for t in txs]
        outcome = build_block(self.state, self.head, verified, AUTHORITY, self.head.time_ms + 1000, PARAMS)
        if expect_dropped is None:
            assert not outcome.dropped, [(v.tx.type if hasattr(v.tx, "type") else v.tx, e) for v, e in outcome.dropped]
        else:
            assert [e.reason for _, e in outcome.dropped] == [expect_dropped.value]
            for vtx, _ in outcome.dropped:
                self.nonces[vtx.tx.sender] -= 1
        commit_delta(self.state, outcome.delta, outcome.tree)
        self.head = outcome.block.header
        gov = self.state.governance
        burned = gov.burned + self.state.staking.burned - self.state.staking.minted
        assert self.state.total_supply() + burned == self.supply, "supply not conserved"

    @property
    def height(self) -> int:
        return self.head.height

    def proposal(self, proposal_id: int = 1) -> Proposal:
        found = get_proposal(self.state.governance, proposal_id)
        assert found is not None
        return found

    def balance(self, key: KeyPair | str) -> int:
        return self.state.get_account(key if isinstance(key, str) else key.address).balance

    def run_until_closed(self, proposal_id: int = 1) -> Proposal:
        for _ in range(20):
            if self.proposal(proposal_id).status not in ("deposit_period", "voting_period"):
                return self.proposal(proposal_id)
            self.block()
        raise AssertionError("proposal never closed")


def vote(chain: Chain, key: KeyPair, proposal_id: int, option: str) -> Tx:
    return chain.tx(key, GovernanceVote, proposal_id=proposal_id, option=option)


def fee_change(chain: Chain, deposit: int = 1_000, activation: int = 0, value: int = 50) -> Tx:
    return chain.tx(
        ALICE,
        SubmitProposal,
        proposal_kind="param_change",
        title="lower the protocol fee",
        changes=[ParamChange(name="protocol_fee_bps", value=value)],
        activation_height=activation,
        deposit=deposit,
    )


def bonded_chain() -> Chain:
    """Alice bonds 600, Bob 300, Carol 100 to the authority."""
    chain = Chain()
    chain.block(
        chain.tx(ALICE, Delegate, validator=AUTHORITY.address, amount=600),
        chain.tx(BOB, Delegate, validator=AUTHORITY.address, amount=300),
        chain.tx(CAROL, Delegate, validator=AUTHORITY.address, amount=100),
    )
    return chain


def test_param_change_passes_and_applies_exactly_at_its_height() -> None:
    chain = bonded_chain()
    before = chain.balance(ALICE)
    activation = chain.height + 9
    chain.block(fee_change(chain, activation=activation))
    proposal = chain.proposal()
    assert proposal.status == "voting_period" and proposal.total_deposit == 1_000
    assert chain.balance(ALICE) == before - 1_000 - 10
    chain.block(
        vote(chain, ALICE, 1, "yes"),
        vote(chain, BOB, 1, "no"),
    )
    closed = chain.run_until_closed()
    assert closed.status == "passed"
    assert closed.tally is not None and (closed.tally.yes, closed.tally.no, closed.tally.total_bonded) == (
        600,
        300,
        1000,
    )
    assert closed.votes == []  # the tally replaces them
    assert chain.balance(ALICE) == before - 10 - 10  # deposit returned; two fees paid
    enact = closed.enact_height
    assert enact == activation
    while chain.height < enact - 1:
        chain.block()
        assert chain.state.governance.params is None
    assert compute_block_params(chain.state, PARAMS, enact - 1).protocol_fee_bps == 200
    assert compute_block_params(chain.state, PARAMS, enact).protocol_fee_bps == 50
    chain.block()
    assert chain.height == enact
    live = chain.state.governance.params
    assert live is not None and live.protocol_fee_bps == 50
    assert [(r.name, r.old, r.new, r.height) for r in chain.state.governance.history] == [
        ("protocol_fee_bps", 200, 50, enact)
    ]


def test_delegators_inherit_the_validators_vote_unless_they_vote() -> None:
    chain = bonded_chain()
    chain.block(fee_change(chain))
    # The authority (validator of every bond) votes yes; Bob overrides with no; Alice and Carol inherit yes.
    chain.block(
        vote(chain, AUTHORITY, 1, "yes"),
        vote(chain, BOB, 1, "no"),
    )
    closed = chain.run_until_closed()
    assert closed.tally is not None
    assert (closed.tally.yes, closed.tally.no, closed.tally.voted) == (700, 300, 1_000)
    assert closed.status == "passed"


def test_a_vetoed_proposal_burns_its_deposit() -> None:
    chain = bonded_chain()
    before = chain.balance(ALICE)
    chain.block(fee_change(chain))
    chain.block(
        vote(chain, ALICE, 1, "yes"),
        vote(chain, BOB, 1, "no_with_veto"),
        vote(chain, CAROL, 1, "no_with_veto"),
    )
    closed = chain.run_until_closed()
    assert closed.status == "vetoed"  # 400 of 1,000 cast: at or above 33.4 %
    assert chain.state.governance.burned == 1_000
    assert chain.balance(ALICE) == before - 1_000 - 20


def test_quorum_not_reached_burns_and_threshold_not_reached_returns() -> None:
    chain = bonded_chain()
    chain.block(fee_change(chain))
    chain.block(vote(chain, CAROL, 1, "yes"))  # 100 of 1,000 bonded: below 33.4 %
    assert chain.run_until_closed().note == "quorum not reached"
    assert chain.state.governance.burned == 1_000

    chain.block(fee_change(chain))
    chain.block(
        vote(chain, ALICE, 2, "no"),
        vote(chain, BOB, 2, "yes"),
    )
    before = chain.balance(ALICE)
    closed = chain.run_until_closed(2)
    assert (closed.status, closed.note) == ("rejected", "threshold not reached")
    assert chain.balance(ALICE) == before + 1_000
    assert chain.state.governance.burned == 1_000


def test_deposit_period_and_top_ups() -> None:
    chain = bonded_chain()
    chain.block(fee_change(chain, deposit=400))
    assert chain.proposal().status == "deposit_period"
    chain.block(vote(chain, ALICE, 1, "yes"), expect_dropped=TxRejection.PROPOSAL_CLOSED)
    chain.block(chain.tx(BOB, DepositProposal, proposal_id=1, amount=600))
    proposal = chain.proposal()
    assert proposal.status == "voting_period" and proposal.total_deposit == 1_000
    assert [(d.depositor, d.amount) for d in proposal.deposits] == sorted([(ALICE.address, 400), (BOB.address, 600)])

    chain.block(fee_change(chain, deposit=10))
    bob = chain.balance(BOB)
    chain.block(chain.tx(BOB, DepositProposal, proposal_id=2, amount=5))
    assert chain.run_until_closed(2).status == "expired"
    assert chain.balance(BOB) == bob - 10  # the deposit came back, the fee did not


def test_revote_replaces_and_votes_outside_the_period_are_refused() -> None:
    chain = bonded_chain()
    chain.block(fee_change(chain))
    chain.block(vote(chain, ALICE, 1, "no"))
    chain.block(vote(chain, ALICE, 1, "yes"))
    assert [(v.voter, v.option) for v in chain.proposal().votes] == [(ALICE.address, "yes")]
    chain.block(vote(chain, ALICE, 9, "yes"), expect_dropped=TxRejection.NO_PROPOSAL)
    chain.run_until_closed()
    chain.block(vote(chain, BOB, 1, "no"), expect_dropped=TxRejection.PROPOSAL_CLOSED)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ([ParamChange(name="protocol_fee_bps", value=9_000)], "must lie in"),
        ([ParamChange(name="staking.authority_power", value=1)], "not a governable"),
        (
            [ParamChange(name="max_tx_bytes", value=1_048_576), ParamChange(name="max_block_bytes", value=65_536)],
            "max_tx_bytes",
        ),
        ([ParamChange(name="min_fee", value=5), ParamChange(name="min_fee", value=6)], "twice"),
        ([], "at least one change"),
    ],
)
def test_bad_parameter_changes_are_refused_at_submission(changes: list[ParamChange], message: str) -> None:
    chain = Chain()
    tx = chain.tx(ALICE, SubmitProposal, proposal_kind="param_change", title="t", changes=changes, deposit=1_000)
    before = chain.balance(ALICE)
    verified = [verify_tx(tx)]
    outcome = build_block(chain.state, chain.head, verified, AUTHORITY, 2, PARAMS)
    assert len(outcome.dropped) == 1
    exc = outcome.dropped[0][1]
    assert isinstance(exc, InvalidTx) and message in exc.message
    assert exc.reason in (TxRejection.BAD_PARAM_CHANGE.value, TxRejection.BAD_PROPOSAL.value)
    commit_delta(chain.state, outcome.delta, outcome.tree)
    assert chain.balance(ALICE) == before and chain.state.governance.proposals == []


def test_stray_fields_and_kinds_are_refused() -> None:
    chain = Chain()
    text_with_changes = chain.tx(
        ALICE, SubmitProposal, proposal_kind="text", title="t", changes=[ParamChange(name="min_fee", value=2)]
    )
    chain.block(text_with_changes, expect_dropped=TxRejection.BAD_PROPOSAL)
    spend_without_recipient = chain.tx(ALICE, SubmitProposal, proposal_kind="treasury_spend", title="t", spend=5)
    chain.block(spend_without_recipient, expect_dropped=TxRejection.BAD_PROPOSAL)
    too_rich = chain.tx(ALICE, SubmitProposal, proposal_kind="text", title="t", deposit=START * 2)
    chain.block(too_rich, expect_dropped=TxRejection.INSUFFICIENT_BALANCE)


def test_treasury_spend_pays_from_the_reward_pool_or_fails() -> None:
    chain = bonded_chain()
    chain.block(
        chain.tx(
            ALICE,
            SubmitProposal,
            proposal_kind="treasury_spend",
            title="grant",
            recipient=CAROL.address,
            spend=20_000,
            deposit=1_000,
        )
    )
    chain.block(vote(chain, ALICE, 1, "yes"))
    carol = chain.balance(CAROL)
    assert chain.run_until_closed().status == "passed"
    assert chain.balance(CAROL) == carol + 20_000
    assert chain.balance(REWARD_POOL_ADDRESS) == POOL - 20_000

    chain.block(
        chain.tx(
            ALICE,
            SubmitProposal,
            proposal_kind="treasury_spend",
            title="too much",
            recipient=CAROL.address,
            spend=10**8,
            deposit=1_000,
        )
    )
    chain.block(vote(chain, ALICE, 2, "yes"))
    failed = chain.run_until_closed(2)
    assert failed.status == "failed" and "reward pool" in failed.note


def test_upgrade_signal_is_recorded() -> None:
    chain = bonded_chain()
    chain.block(
        chain.tx(
            ALICE,
            SubmitProposal,
            proposal_kind="software_upgrade",
            title="v2",
            upgrade_version="2.0.0",
            activation_height=500,
            deposit=1_000,
        )
    )
    chain.block(vote(chain, ALICE, 1, "yes"))
    chain.run_until_closed()
    assert [(u.height, u.version) for u in chain.state.governance.upgrades] == [(500, "2.0.0")]


def test_too_many_open_proposals() -> None:
    chain = Chain()
    limited = msgspec.structs.replace(PARAMS, governance=msgspec.structs.replace(GOV, max_active_proposals=1))
    tx1 = chain.tx(ALICE, SubmitProposal, proposal_kind="text", title="a")
    tx2 = chain.tx(ALICE, SubmitProposal, proposal_kind="text", title="b")
    outcome = build_block(chain.state, chain.head, [verify_tx(tx1), verify_tx(tx2)], AUTHORITY, 2, limited)
    assert [e.reason for _, e in outcome.dropped] == [TxRejection.TOO_MANY_PROPOSALS.value]


def test_governance_state_is_proven_against_the_root() -> None:
    chain = bonded_chain()
    chain.block(fee_change(chain))
    gov = chain.state.governance
    proof = chain.state.prove_governance()
    assert is_valid_governance_proof(chain.head.state_root, gov, proof)
    forged = msgspec.structs.replace(gov, burned=gov.burned + 1)
    assert not is_valid_governance_proof(chain.head.state_root, forged, proof)


# --- the tally against a reference computation ---------------------------------------------------------

ADDRESSES = [KeyPair.from_seed(bytes([i + 10]) * 32).address for i in range(6)]
OPTIONS = ["yes", "no", "abstain", "no_with_veto"]


def reference_tally(bonds: list[tuple[int, int, int]], votes: dict[int, str]) -> dict[str, int]:
    """Spelled out differently: per bond, the delegator's own vote wins, else the validator's."""
    out = dict.fromkeys(OPTIONS, 0)
    for validator, delegator, amount in bonds:
        if delegator in votes:
            out[votes[delegator]] += amount
        elif validator in votes:
            out[votes[validator]] += amount
    return out


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    bonds=st.dictionaries(
        st.tuples(st.integers(0, 2), st.integers(0, 5)), st.integers(1, 10**12), min_size=0, max_size=12
    ),
    votes=st.dictionaries(st.integers(0, 5), st.sampled_from(OPTIONS), max_size=6),
)
def test_tally_matches_a_reference_computation(bonds: dict[tuple[int, int], int], votes: dict[int, str]) -> None:
    ordered = sorted(bonds.items(), key=lambda kv: (ADDRESSES[kv[0][0]], ADDRESSES[kv[0][1]]))
    staking = StakingState(bonds=[Bond(ADDRESSES[v], ADDRESSES[d], a) for (v, d), a in ordered])
    proposal = Proposal(
        id=1,
        proposer=ADDRESSES[0],
        kind="text",
        title="t",
        votes=sorted((VoteRecord(ADDRESSES[i], o) for i, o in votes.items()), key=lambda r: r.voter),
    )
    tally = compute_tally(proposal, staking)
    expected = reference_tally([(v, d, a) for (v, d), a in bonds.items()], votes)
    assert (tally.yes, tally.no, tally.abstain, tally.no_with_veto) == tuple(expected[o] for o in OPTIONS)
    assert tally.total_bonded == sum(bonds.values())
    assert tally.voted <= tally.total_bonded
    status, _, burn = compute_outcome(tally, GOV)
    if status == ProposalStatus.PASSED:
        assert tally.yes * 2 > tally.yes + tally.no + tally.no_with_veto and not burn
    if status == ProposalStatus.VETOED:
        assert burn


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=st.lists(
        st.tuples(st.sampled_from(["submit", "deposit", "vote", "idle"]), st.integers(0, 2), st.sampled_from(OPTIONS)),
        max_size=14,
    )
)
def test_supply_is_conserved_through_any_governance_sequence(actions: list[tuple[str, int, str]]) -> None:
    """``Chain.block`` asserts supply = genesis + minted - burned after every block; here any mix of
    submissions, deposits and votes runs until every proposal closed."""
    chain = bonded_chain()
    keys = [ALICE, BOB, CAROL]
    for action, who, option in actions:
        key = keys[who]
        count = len(chain.state.governance.proposals)
        if action == "submit":
            tx = (
                fee_change(chain, deposit=500)
                if key is ALICE
                else chain.tx(key, SubmitProposal, proposal_kind="text", title="x", deposit=700)
            )
        elif action == "deposit" and count:
            tx = chain.tx(key, DepositProposal, proposal_id=count, amount=300)
        elif action == "vote" and count:
            tx = vote(chain, key, count, option)
        else:
            chain.block()
            continue
        verified = [verify_tx(tx)]
        outcome = build_block(chain.state, chain.head, verified, AUTHORITY, chain.head.time_ms + 1000, PARAMS)
        for vtx, _ in outcome.dropped:
            chain.nonces[vtx.tx.sender] -= 1
        commit_delta(chain.state, outcome.delta, outcome.tree)
        chain.head = outcome.block.header
    for _ in range(12):
        chain.block()
    gov: GovernanceState = chain.state.governance
    assert gov.locked == 0
    assert all(p.status not in ("deposit_period", "voting_period") for p in gov.proposals)
    assert chain.state.total_supply() + gov.burned == chain.supply


def test_transfer_still_works_beside_governance() -> None:
    chain = Chain()
    chain.block(chain.tx(ALICE, Transfer, recipient=BOB.address, amount=5))
    assert chain.balance(BOB) == START + 5
