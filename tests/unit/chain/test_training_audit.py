"""Verifiable training audits through real blocks: the segment check, the bisection, the referee, slashing.

The training run is a toy deterministic step (``toy_step``: the next state hash from the last one and the
step number), so these rules are tested without the training runtime; a cheater skips one step."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.chain.audit_types import OPEN_AUDITS, Audit, TrainingDispute
from aitbc.chain.training_audit import (
    compute_bisection,
    draw_segment,
    get_awaited,
    get_midpoint,
    get_wrong_parties,
    is_one_step,
    max_dispute_rounds,
)
from aitbc.protocol.crypto import KeyPair, sha256_hex
from aitbc.protocol.errors import TxRejection
from aitbc.protocol.training import (
    TrainingCommitment,
    compute_commitment_hash,
    compute_step_proof,
    compute_steps_root,
)
from aitbc.protocol.tx import AnswerTrainingAudit, RevealTrainingStep, SubmitTrainingAudit, Tx
from support.audit_chain import CLIENT, MINERS, AuditChain

START_HASH = "00" * 32


def toy_step(state_hash: str, step: int) -> str:
    """The state hash after ``step`` from the one before it: a stand-in for ``aitbc.training.train_step``."""
    return sha256_hex(bytes.fromhex(state_hash) + step.to_bytes(8, "big"))


def run(steps: int, skip: int | None = None) -> list[str]:
    """State hashes after 0 … ``steps`` steps; a cheater's run leaves the state alone at step ``skip``."""
    hashes = [START_HASH]
    for step in range(1, steps + 1):
        hashes.append(hashes[-1] if step == skip else toy_step(hashes[-1], step))
    return hashes


def commit(hashes: list[str], every: int) -> TrainingCommitment:
    steps = len(hashes) - 1
    checkpoints = [hashes[i] for i in range(0, steps + 1, every)]
    if steps % every:
        checkpoints.append(hashes[-1])
    return TrainingCommitment(
        spec_hash="aa" * 32, dataset_hash="bb" * 32, runtime_build="toy-1", steps=steps, checkpoint_every=every,
        checkpoint_hashes=checkpoints,
    )  # fmt: skip


class Party:
    """An off-chain party's per-step hashes and the moves it makes from them."""

    def __init__(self, key: KeyPair, hashes: list[str]) -> None:
        self.key, self.hashes = key, hashes

    def segment(self, dispute: TrainingDispute) -> list[str]:
        return self.hashes[dispute.start_step : dispute.end_step + 1]

    def reveal(self, chain: AuditChain, job_id: str, dispute: TrainingDispute) -> Tx:
        mid = get_midpoint(dispute)
        proof = compute_step_proof(self.segment(dispute), mid)
        return chain.tx(self.key, RevealTrainingStep, job_id=job_id, state_hash=self.segment(dispute)[mid], proof=proof)


def open_training_audit(chain: AuditChain, miner_hashes: list[str], every: int, job_id: str = "train-1") -> Audit:
    chain.bond(*MINERS)
    chain.settle(job_id, MINERS[0], compute_commitment_hash(commit(miner_hashes, every)))
    chain.block()  # the draw
    return chain.audit(job_id)


def submit_segment(chain: AuditChain, audit: Audit, commitment: TrainingCommitment, auditor_hashes: list[str]) -> None:
    segment = draw_segment(audit.seed, audit.job.job_id, len(commitment.checkpoint_hashes) - 1)
    start = segment * commitment.checkpoint_every
    end = min(start + commitment.checkpoint_every, commitment.steps)
    mine = auditor_hashes[start : end + 1]
    auditor = chain.key_of(audit.auditor)
    chain.block(chain.tx(auditor, SubmitTrainingAudit, job_id=audit.job.job_id, commitment=commitment,
                         end_hash=mine[-1], steps_root=compute_steps_root(mine)))  # fmt: skip


def play_dispute(
    chain: AuditChain, job_id: str, miner: Party, auditor: Party, silent: str = "", referee_silent: bool = False
) -> Audit:
    """Answer, bisect, referee: every party moves from its own hashes; ``silent`` names one that stops."""
    audit = chain.audit(job_id)
    assert audit.training is not None
    if silent != "miner":
        chain.block(chain.tx(miner.key, AnswerTrainingAudit, job_id=job_id,
                             steps_root=compute_steps_root(miner.segment(audit.training))))  # fmt: skip
    for _ in range(80):
        audit = chain.audit(job_id)
        if audit.status not in OPEN_AUDITS:
            return audit
        dispute = audit.training
        assert dispute is not None
        if audit.status == "training_bisecting":
            moved = {"miner": dispute.miner_mid != "", "auditor": dispute.auditor_mid != ""}
            movers = [p for p, name in ((miner, "miner"), (auditor, "auditor")) if name != silent and not moved[name]]
            chain.block(*(p.reveal(chain, job_id, dispute) for p in movers))
        elif audit.status == "training_refereeing" and not referee_silent:
            referee = chain.key_of(audit.referees[0])
            truth = toy_step(dispute.lo_hash, dispute.start_step + dispute.hi)
            chain.block(chain.tx(referee, RevealTrainingStep, job_id=job_id, state_hash=truth))
        else:
            chain.block()
    raise AssertionError("the dispute did not end")


def test_an_honest_training_job_passes_its_segment_check_and_pays_the_auditor() -> None:
    chain = AuditChain()
    hashes = run(40)
    audit = open_training_audit(chain, hashes, 8)
    assert audit.status == "pending" and audit.seed == chain.state.audits.audits[0].seed != ""
    auditor = chain.key_of(audit.auditor)
    before = chain.balance(auditor)
    submit_segment(chain, audit, commit(hashes, 8), run(40))
    assert chain.audit("train-1").status == "passed"
    assert chain.balance(auditor) == before - 10 + 200 * 2_000 // 10_000


def test_a_miner_that_skips_a_step_is_bisected_to_it_slashed_and_the_client_refunded() -> None:
    chain = AuditChain()
    cheat = run(13, skip=6)  # one segment, so the draw cannot miss the skipped step
    audit = open_training_audit(chain, cheat, 13)
    miner_bond = chain.state.audits.bonds
    client_before = chain.balance(CLIENT)
    submit_segment(chain, audit, commit(cheat, 13), run(13))
    assert chain.audit("train-1").status == "training_answering"
    assert get_awaited(chain.audit("train-1")) == [MINERS[0].address]
    decided = play_dispute(chain, "train-1", Party(MINERS[0], cheat), Party(chain.key_of(audit.auditor), run(13)))
    assert get_awaited(decided) == []
    assert decided.training is not None and (decided.training.lo, decided.training.hi) == (5, 6)
    assert decided.training.rounds <= max_dispute_rounds(13) == 4
    assert decided.status == "miner_slashed" and decided.slashed == 5_000
    assert decided.refunded == 5_000 - 5_000 * 3_000 // 10_000 and chain.balance(CLIENT) == client_before + 3_500
    bond = next(b for b in chain.state.audits.bonds if b.miner == MINERS[0].address)
    assert bond.amount == 5_000 and miner_bond != chain.state.audits.bonds


def test_a_false_accusation_slashes_the_auditor_and_pays_miner_and_referee() -> None:
    chain = AuditChain()
    honest = run(16)
    audit = open_training_audit(chain, honest, 16)
    auditor = chain.key_of(audit.auditor)
    liar = run(16, skip=11)
    submit_segment(chain, audit, commit(honest, 16), liar)
    miner_before = chain.balance(MINERS[0])
    decided = play_dispute(chain, "train-1", Party(MINERS[0], honest), Party(auditor, liar))
    assert decided.status == "auditor_slashed" and decided.refunded == 0
    assert decided.training is not None and decided.training.hi == 11
    referee = decided.referees[0]
    assert referee not in (MINERS[0].address, audit.auditor)
    reward = 5_000 * 3_000 // 10_000
    assert chain.balance(MINERS[0]) == miner_before - 10 * 5 + reward // 2  # answer + 4 reveals, half the reward


def test_a_miner_that_does_not_answer_loses_and_so_does_a_silent_bisector() -> None:
    chain = AuditChain()
    cheat = run(8, skip=2)
    audit = open_training_audit(chain, cheat, 8)
    submit_segment(chain, audit, commit(cheat, 8), run(8))
    auditor = Party(chain.key_of(audit.auditor), run(8))
    assert play_dispute(chain, "train-1", Party(MINERS[0], cheat), auditor, silent="miner").status == "miner_slashed"
    chain2 = AuditChain()
    audit2 = open_training_audit(chain2, cheat, 8)
    submit_segment(chain2, audit2, commit(cheat, 8), run(8))
    auditor2 = Party(chain2.key_of(audit2.auditor), run(8))
    decided = play_dispute(chain2, "train-1", Party(MINERS[0], cheat), auditor2, silent="auditor")
    assert decided.status == "auditor_slashed"  # silence loses, whoever is right


def test_a_silent_referee_leaves_it_inconclusive() -> None:
    chain = AuditChain()
    cheat = run(4, skip=3)
    audit = open_training_audit(chain, cheat, 4)
    submit_segment(chain, audit, commit(cheat, 4), run(4))
    auditor = Party(chain.key_of(audit.auditor), run(4))
    decided = play_dispute(chain, "train-1", Party(MINERS[0], cheat), auditor, referee_silent=True)
    assert decided.status == "inconclusive" and decided.slashed == 0


def test_bad_moves_are_refused() -> None:
    chain = AuditChain()
    cheat = run(8, skip=5)
    audit = open_training_audit(chain, cheat, 8)
    auditor = chain.key_of(audit.auditor)
    other = next(m for m in MINERS[1:] if m.address != audit.auditor)
    mine = run(8)
    good = {"job_id": "train-1", "end_hash": mine[-1], "steps_root": compute_steps_root(mine)}
    chain.block(chain.tx(other, SubmitTrainingAudit, commitment=commit(cheat, 8), **good),
                dropped=TxRejection.NOT_AUDITOR)  # fmt: skip
    chain.block(chain.tx(auditor, SubmitTrainingAudit, commitment=commit(mine, 8), **good),
                dropped=TxRejection.WRONG_COMMITMENT)  # fmt: skip
    chain.block(chain.tx(auditor, SubmitTrainingAudit, commitment=commit(cheat, 8), **good))
    chain.block(chain.tx(auditor, AnswerTrainingAudit, job_id="train-1", steps_root=good["steps_root"]),
                dropped=TxRejection.NOT_AUDITOR)  # fmt: skip
    chain.block(chain.tx(MINERS[0], AnswerTrainingAudit, job_id="train-1", steps_root=compute_steps_root(cheat)))
    dispute = chain.audit("train-1").training
    assert dispute is not None and get_midpoint(dispute) == 4
    assert sorted(get_awaited(chain.audit("train-1"))) == sorted([MINERS[0].address, auditor.address])
    wrong = compute_step_proof(mine, 3)  # the proof of another leaf
    chain.block(chain.tx(auditor, RevealTrainingStep, job_id="train-1", state_hash=mine[4], proof=wrong),
                dropped=TxRejection.BAD_STEP_PROOF)  # fmt: skip
    chain.block(chain.tx(auditor, RevealTrainingStep, job_id="train-1", state_hash=mine[5],
                         proof=compute_step_proof(mine, 4)), dropped=TxRejection.BAD_STEP_PROOF)  # fmt: skip
    chain.block(Party(auditor, mine).reveal(chain, "train-1", dispute))
    chain.block(Party(auditor, mine).reveal(chain, "train-1", dispute), dropped=TxRejection.DUPLICATE)


def test_a_commitment_no_run_can_produce_slashes_the_miner() -> None:
    chain = AuditChain()
    bogus = TrainingCommitment(spec_hash="aa" * 32, dataset_hash="bb" * 32, runtime_build="toy-1", steps=10,
                               checkpoint_every=5, checkpoint_hashes=[START_HASH, START_HASH])  # fmt: skip
    chain.bond(*MINERS)
    chain.settle("train-1", MINERS[0], compute_commitment_hash(bogus))
    chain.block()
    audit = chain.audit("train-1")
    chain.block(chain.tx(chain.key_of(audit.auditor), SubmitTrainingAudit, job_id="train-1", commitment=bogus,
                         end_hash=START_HASH, steps_root=START_HASH))  # fmt: skip
    assert chain.audit("train-1").status == "miner_slashed"


# -- properties --------------------------------------------------------------------------------------------
@settings(max_examples=300)
@given(
    length=st.integers(1, 5_000),
    data=st.data(),
    miner_honest=st.booleans(),
)
def test_bisection_ends_within_log2_rounds_on_a_step_the_honest_party_wins(
    length: int, data: st.DataObject, miner_honest: bool
) -> None:
    """Whatever hashes a cheater reveals, the dispute ends in ``ceil(log2(length))`` rounds on one step whose
    referee check the honest party passes."""
    truth = [START_HASH]
    for step in range(1, length + 1):
        truth.append(toy_step(truth[-1], step))
    lies = data.draw(st.lists(st.integers(0, length), max_size=8))
    cheat = list(truth)
    for offset in {*lies, length}:  # the cheater's end hash differs, or there is no dispute
        cheat[offset] = sha256_hex(cheat[offset].encode()) if offset else cheat[offset]
    miner, auditor = (truth, cheat) if miner_honest else (cheat, truth)
    dispute = TrainingDispute(
        segment=0, start_step=0, end_step=length, auditor_root=START_HASH, lo_hash=START_HASH, hi=length,
        miner_hash=miner[-1], auditor_hash=auditor[-1],
    )  # fmt: skip
    while not is_one_step(dispute):
        mid = get_midpoint(dispute)
        dispute = compute_bisection(dispute, miner[mid], auditor[mid])
        assert dispute.lo < dispute.hi and dispute.lo_hash == truth[dispute.lo]
    assert dispute.rounds <= max_dispute_rounds(length) == math.ceil(math.log2(length)) if length > 1 else True
    miner_wrong, auditor_wrong = get_wrong_parties(dispute, toy_step(dispute.lo_hash, dispute.hi))
    assert (miner_wrong, auditor_wrong) != (False, False)
    assert not (miner_wrong if miner_honest else auditor_wrong), "the honest party lost"


@settings(max_examples=12, deadline=None)
@given(
    length=st.integers(2, 40),
    skip=st.integers(1, 40),
    miner_cheats=st.booleans(),
    silent=st.sampled_from(["", "miner", "auditor"]),
)
def test_a_dispute_through_blocks_terminates_conserves_supply_and_the_honest_party_never_loses(
    length: int, skip: int, miner_cheats: bool, silent: str
) -> None:
    skip = min(skip, length)
    chain = AuditChain()
    honest, cheat = run(length), run(length, skip=skip)
    miner_hashes, auditor_hashes = (cheat, honest) if miner_cheats else (honest, cheat)
    audit = open_training_audit(chain, miner_hashes, length)
    opened = chain.head.height
    submit_segment(chain, audit, commit(miner_hashes, length), auditor_hashes)
    miner, auditor = Party(MINERS[0], miner_hashes), Party(chain.key_of(audit.auditor), auditor_hashes)
    decided = play_dispute(chain, "train-1", miner, auditor, silent=silent)
    honest_party = "auditor" if miner_cheats else "miner"
    loser = {"miner_slashed": "miner", "auditor_slashed": "auditor"}.get(decided.status, "both")
    if silent != honest_party:
        assert loser != honest_party and loser != "both"
    window = chain.params.audit.dispute_window_blocks
    assert chain.head.height - opened <= (max_dispute_rounds(length) + 3) * (window + 1)


def test_a_referee_that_matches_neither_side_slashes_both_and_conserves_supply() -> None:
    chain = AuditChain()
    cheat = run(4, skip=2)
    audit = open_training_audit(chain, cheat, 4)
    honest = run(4)
    liar = honest[:2] + [sha256_hex(h.encode()) for h in honest[2:]]  # the auditor is wrong too, at the same step
    submit_segment(chain, audit, commit(cheat, 4), liar)
    auditor = chain.key_of(audit.auditor)
    chain.block(chain.tx(MINERS[0], AnswerTrainingAudit, job_id="train-1", steps_root=compute_steps_root(cheat)))
    while chain.audit("train-1").status == "training_bisecting":
        dispute = chain.audit("train-1").training
        assert dispute is not None
        chain.block(
            Party(MINERS[0], cheat).reveal(chain, "train-1", dispute),
            Party(auditor, liar).reveal(chain, "train-1", dispute),
        )
    refereeing = chain.audit("train-1")
    assert refereeing.status == "training_refereeing" and refereeing.training is not None
    referee = chain.key_of(refereeing.referees[0])
    before = chain.balance(referee)
    truth = toy_step(refereeing.training.lo_hash, refereeing.training.hi)
    chain.block(chain.tx(referee, RevealTrainingStep, job_id="train-1", state_hash=truth))
    decided = chain.audit("train-1")
    assert decided.status == "both_slashed" and decided.slashed == 2 * 5_000 and decided.refunded > 0
    assert chain.balance(referee) == before - 10 + 2 * (5_000 * 3_000 // 10_000)  # both rewards: the only winner
