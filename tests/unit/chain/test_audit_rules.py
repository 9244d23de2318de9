"""Audited inference rules through real blocks: bonds, the draw, reports, disputes, slashing, unbonding."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.chain.audit_params import AuditParams
from aitbc.chain.audit_types import (
    Audit,
    AuditCandidate,
    AuditState,
    MinerBond,
    RefereeReport,
    Unbonding,
    get_audit,
    get_bond,
)
from aitbc.chain.audits import (
    Settlement,
    choose,
    compute_slash,
    is_selected_for_audit,
    resolve_dispute,
)
from aitbc.chain.block import build_block
from aitbc.chain.genesis import Genesis, GenesisBalance, genesis_block, genesis_state
from aitbc.chain.params import REWARD_POOL_ADDRESS, ChainParams
from aitbc.chain.state import ChainState, commit_delta
from aitbc.protocol.block import BlockHeader
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import TxRejection
from aitbc.protocol.receipt import Receipt, ReceiptUnits, countersign_receipt, sign_receipt_as_miner
from aitbc.protocol.tx import BondMiner, OpenEscrow, SettleJob, SubmitAudit, Tx, UnbondMiner, sign_tx, verify_tx

CHAIN = "aitbc-test"
AUTHORITY = KeyPair.from_seed(b"\x01" * 32)
CLIENT = KeyPair.from_seed(b"\x02" * 32)
COORDINATOR = KeyPair.from_seed(b"\x03" * 32)
MINERS = [KeyPair.from_seed(bytes([0x10 + i]) * 32) for i in range(4)]
DIGEST = "sha256:" + "ab" * 32
HONEST, FAKE = "11" * 32, "99" * 32
AUDIT = AuditParams(
    probability_bps=10_000,
    min_miner_bond=1_000,
    unbonding_blocks=5,
    audit_window_blocks=4,
    dispute_window_blocks=4,
    fraud_slash_bps=5_000,
    reporter_reward_bps=3_000,
    audit_fee_bps=2_000,
)
PARAMS = ChainParams(protocol_fee_bps=200, audit=AUDIT)
START = 10**9


class Chain:
    def __init__(self) -> None:
        keys = [AUTHORITY, CLIENT, COORDINATOR, *MINERS]
        genesis = Genesis(
            chain_id=CHAIN,
            genesis_time_ms=1,
            authorities=[AUTHORITY.address],
            balances=[*(GenesisBalance(k.address, START) for k in keys), GenesisBalance(REWARD_POOL_ADDRESS, 10_000)],
            params=PARAMS,
        )
        self.state: ChainState = genesis_state(genesis)
        self.head: BlockHeader = genesis_block(genesis, self.state).header
        self.supply = self.state.total_supply()
        self.nonces: dict[str, int] = {}

    def tx(self, key: KeyPair, kind: type, **fields: object) -> Tx:
        nonce = self.nonces.get(key.address, 0)
        self.nonces[key.address] = nonce + 1
        return sign_tx(kind(chain_id=CHAIN, sender=key.address, nonce=nonce, fee=10, **fields), key)

    def block(self, *txs: Tx, dropped: TxRejection | None = None) -> None:
        outcome = build_block(
            self.state, self.head, [verify_tx(t) for t in txs], AUTHORITY, self.head.time_ms + 1000, PARAMS
        )
        reasons = [e.reason for _, e in outcome.dropped]
        assert reasons == ([] if dropped is None else [dropped.value]), reasons
        for vtx, _ in outcome.dropped:
            self.nonces[vtx.tx.sender] -= 1
        commit_delta(self.state, outcome.delta, outcome.tree)
        self.head = outcome.block.header
        audits = self.state.audits
        assert self.state.total_supply() + audits.burned == self.supply, "supply not conserved"

    def balance(self, who: KeyPair | str) -> int:
        return self.state.get_account(who if isinstance(who, str) else who.address).balance

    def audit(self, job_id: str) -> Audit:
        found = get_audit(self.state.audits, job_id)
        assert found is not None, f"{job_id} was not selected"
        return found

    def settle(self, job_id: str, miner: KeyPair, output_hash: str = HONEST) -> None:
        """A paid job: escrow, then the coordinator's settle with the miner's receipt."""
        self.block(self.tx(CLIENT, OpenEscrow, job_id=job_id, coordinator=COORDINATOR.address, amount=100_000,
                           deadline_height=self.head.height + 50))  # fmt: skip
        unsigned = Receipt(
            chain_id=CHAIN, job_id=job_id, miner=miner.address, client=CLIENT.address,
            coordinator=COORDINATOR.address, model="m", model_digest=DIGEST, input_hash="00" * 32,
            output_hash=output_hash, units=ReceiptUnits(prompt_tokens=10, completion_tokens=90, compute_ms=900),
            unit_price=100, total_price=10_000, started_at_ms=1_000, finished_at_ms=2_000,
        )  # fmt: skip
        receipt = countersign_receipt(sign_receipt_as_miner(unsigned, miner), COORDINATOR)
        self.block(self.tx(COORDINATOR, SettleJob, receipt=receipt))


def bonded(chain: Chain, *miners: KeyPair, amount: int = 10_000) -> None:
    chain.block(*(chain.tx(m, BondMiner, amount=amount, models=[DIGEST]) for m in miners))


def test_a_bond_must_reach_the_minimum_and_declares_models() -> None:
    chain = Chain()
    chain.block(chain.tx(MINERS[0], BondMiner, amount=999, models=[DIGEST]), dropped=TxRejection.BOND_TOO_LOW)
    bonded(chain, MINERS[0])
    bond = get_bond(chain.state.audits, MINERS[0].address)
    assert bond is not None and bond.amount == 10_000 and bond.models == [DIGEST]
    assert chain.balance(MINERS[0]) == START - 10_000 - 10


def test_an_honest_report_passes_and_pays_the_auditor_a_share_of_the_fee() -> None:
    chain = Chain()
    bonded(chain, *MINERS)
    chain.settle("job-1", MINERS[0])
    chain.block()  # the next block draws from the settling block's hash (p = 1 here)
    audit = chain.audit("job-1")
    assert audit.status == "pending" and audit.auditor != MINERS[0].address
    auditor = next(m for m in MINERS if m.address == audit.auditor)
    before = chain.balance(auditor)
    chain.block(chain.tx(auditor, SubmitAudit, job_id="job-1", output_hash=HONEST))
    assert chain.audit("job-1").status == "passed"
    assert chain.balance(auditor) == before - 10 + 200 * 2_000 // 10_000  # fee 200 (2 % of 10,000) x 20 %


def test_only_the_drawn_auditor_may_report_and_only_in_time() -> None:
    chain = Chain()
    bonded(chain, *MINERS)
    chain.settle("job-1", MINERS[0])
    chain.block()
    audit = chain.audit("job-1")
    stranger = next(m for m in MINERS if m.address not in (audit.auditor, MINERS[0].address))
    chain.block(chain.tx(stranger, SubmitAudit, job_id="job-1", output_hash=HONEST), dropped=TxRejection.NOT_AUDITOR)
    chain.block(chain.tx(stranger, SubmitAudit, job_id="job-2", output_hash=HONEST), dropped=TxRejection.NO_AUDIT)
    for _ in range(AUDIT.audit_window_blocks):
        chain.block()
    assert chain.audit("job-1").status == "expired"


def test_a_cheating_miner_is_slashed_and_the_client_refunded() -> None:
    chain = Chain()
    bonded(chain, *MINERS)
    chain.settle("job-1", MINERS[0], output_hash=FAKE)  # the miner returned something the model did not produce
    chain.block()
    audit = chain.audit("job-1")
    auditor = next(m for m in MINERS if m.address == audit.auditor)
    client_before = chain.balance(CLIENT)
    chain.block(chain.tx(auditor, SubmitAudit, job_id="job-1", output_hash=HONEST))
    disputed = chain.audit("job-1")
    assert disputed.status == "disputed" and len(disputed.referees) == 2
    assert MINERS[0].address not in disputed.referees and auditor.address not in disputed.referees
    referees = [m for m in MINERS if m.address in disputed.referees]
    chain.block(*(chain.tx(r, SubmitAudit, job_id="job-1", output_hash=HONEST) for r in referees))
    decided = chain.audit("job-1")
    assert decided.status == "miner_slashed"
    assert decided.slashed == 5_000  # 50 % of the 10,000 bond
    reward = 5_000 * 3_000 // 10_000
    assert decided.refunded == min(10_200, 5_000 - reward)
    assert chain.balance(CLIENT) == client_before + decided.refunded
    bond = get_bond(chain.state.audits, MINERS[0].address)
    assert bond is not None and bond.amount == 5_000
    assert chain.state.audits.burned == 5_000 - reward - decided.refunded


def test_a_false_accusation_slashes_the_auditor() -> None:
    chain = Chain()
    bonded(chain, *MINERS)
    chain.settle("job-1", MINERS[0])
    chain.block()
    audit = chain.audit("job-1")
    liar = next(m for m in MINERS if m.address == audit.auditor)
    chain.block(chain.tx(liar, SubmitAudit, job_id="job-1", output_hash=FAKE))
    referees = [m for m in MINERS if m.address in chain.audit("job-1").referees]
    chain.block(*(chain.tx(r, SubmitAudit, job_id="job-1", output_hash=HONEST) for r in referees))
    assert chain.audit("job-1").status == "auditor_slashed"
    liar_bond = get_bond(chain.state.audits, liar.address)
    assert liar_bond is not None and liar_bond.amount == 5_000


def test_a_miner_cannot_unbond_out_of_a_pending_dispute() -> None:
    chain = Chain()
    bonded(chain, *MINERS)
    chain.settle("job-1", MINERS[0], output_hash=FAKE)
    chain.block()
    chain.block(chain.tx(MINERS[0], UnbondMiner, amount=10_000))  # runs away with its whole bond
    auditor = next(m for m in MINERS if m.address == chain.audit("job-1").auditor)
    chain.block(chain.tx(auditor, SubmitAudit, job_id="job-1", output_hash=HONEST))
    held_while_open = 0
    for _ in range(AUDIT.unbonding_blocks + AUDIT.dispute_window_blocks + 2):
        chain.block()
        bond = get_bond(chain.state.audits, MINERS[0].address)
        if chain.audit("job-1").status == "disputed":
            # matured or not, nothing is released while the dispute is open: it stays slashable
            assert bond is not None and sum(u.amount for u in bond.unbonding) == 10_000
            held_while_open += 1
    assert held_while_open >= 3
    # the referees never reported: the window closed inconclusive, and only then was the unbonding released
    assert chain.audit("job-1").status == "inconclusive"
    released = get_bond(chain.state.audits, MINERS[0].address)
    assert released is None or not released.unbonding


def test_a_job_with_no_other_miner_of_its_model_is_not_audited() -> None:
    chain = Chain()
    bonded(chain, MINERS[0])
    chain.settle("job-1", MINERS[0])
    chain.block()
    assert get_audit(chain.state.audits, "job-1") is None
    assert chain.state.audits.candidates == []


# -- pure properties ----------------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_selection_is_deterministic_and_near_its_probability(seed: bytes) -> None:
    parent = seed.hex()
    picks = [is_selected_for_audit(parent, f"job-{i}", 2_500) for i in range(4_000)]
    assert picks == [is_selected_for_audit(parent, f"job-{i}", 2_500) for i in range(4_000)]
    assert 800 <= sum(picks) <= 1_200  # 25 % of 4,000 = 1,000; 6 sigma is about 165


def test_choose_is_distinct_and_a_function_of_the_seed() -> None:
    pool = [m.address for m in MINERS]
    one = choose(pool, "aa" * 32, "job-1", b"referees", 2)
    assert len(set(one)) == 2 and set(one) <= set(pool)
    assert one == choose(pool, "aa" * 32, "job-1", b"referees", 2)
    assert choose(pool, "aa" * 32, "job-1", b"referees", 9) != [] and len(choose(pool, "aa" * 32, "x", b"r", 9)) == 4


@settings(max_examples=200)
@given(
    amount=st.integers(0, 10**12),
    unbonding=st.lists(st.integers(1, 10**9), max_size=4),
    bps=st.integers(0, 10_000),
)
def test_slash_takes_exactly_its_share(amount: int, unbonding: list[int], bps: int) -> None:
    bond = MinerBond(miner=MINERS[0].address, amount=amount, unbonding=[Unbonding(u, 5) for u in unbonding])
    after, taken = compute_slash(bond, bps)
    assert taken == bond.slashable * bps // 10_000
    assert after.slashable == bond.slashable - taken


@settings(max_examples=200)
@given(reports=st.lists(st.sampled_from([HONEST, FAKE, "55" * 32]), max_size=2), bond=st.integers(1, 10**9))
def test_a_dispute_always_resolves_and_conserves_what_it_slashes(reports: list[str], bond: int) -> None:
    job = AuditCandidate(job_id="j", miner=MINERS[0].address, client=CLIENT.address, model_digest=DIGEST,
                         output_hash=FAKE, receipt_hash="00" * 32, charged=10_200, protocol_fee=200)  # fmt: skip
    audit = Audit(job=job, auditor=MINERS[1].address, selected_height=1, deadline_height=9, status="disputed",
                  auditor_output=HONEST, referees=[MINERS[2].address, MINERS[3].address],
                  reports=[RefereeReport(MINERS[2 + i].address, r) for i, r in enumerate(reports)])  # fmt: skip
    state = AuditState(bonds=[MinerBond(miner=m.address, amount=bond, models=[DIGEST]) for m in MINERS])
    moves = Settlement()
    after, decided = resolve_dispute(state, audit, 10, AUDIT, moves)
    assert decided.status in ("miner_slashed", "auditor_slashed", "inconclusive")
    locked_before = sum(b.slashable for b in state.bonds)
    locked_after = sum(b.slashable for b in after.bonds)
    assert locked_before - locked_after == sum(moves.credits.values()) + moves.burned == decided.slashed
    assert after.burned == moves.burned
    assert msgspec.structs.replace(decided, status="x") != decided
