"""Verifiable training: a segment re-executed between two committed checkpoints, an interactive bisection
down to the first step the miner and the auditor disagree on, and a referee that recomputes that one step.

A training job settles like any job; its receipt's ``output_hash`` is the hash of a ``TrainingCommitment``
(``aitbc.protocol.training``: state hashes ``c_0 … c_n`` every ``checkpoint_every`` steps). It is drawn
for audit, and its auditor drawn, exactly as an inference job (``aitbc.chain.audits``). Then:

* **Segment** (``submit_training_audit``): the auditor sends the commitment (the chain checks its hash
  against the receipt), its state hash at the end of segment ``j`` and the Merkle root of its state hashes
  at every step of it. ``j`` is drawn from the settling block's hash (``Audit.seed``), which the miner could
  not know when it committed. A commitment that is not well formed is fraud: the miner is slashed at once.
  An end hash equal to ``c_{j+1}`` passes (the auditor is paid as for inference); otherwise a dispute opens.
* **Answer** (``answer_training_audit``): within ``dispute_window_blocks`` the miner commits the root of its
  own per-step hashes; silence loses.
* **Bisection** (``reveal_training_step``): both parties agree on the state at offset ``lo`` (``c_j`` to
  begin) and disagree at ``hi`` (``c_{j+1}`` against the auditor's end hash). Each round both reveal their
  hash at ``mid = (lo + hi) // 2`` with a Merkle proof against their own root, within
  ``dispute_window_blocks``; equal hashes move ``lo`` up, different ones move ``hi`` down. A party that does
  not reveal in time loses. After at most ``ceil(log2(segment length))`` rounds one step is left.
* **Referee** (``reveal_training_step`` from the referee): a third bonded miner of the model, drawn from
  the seed, recomputes step ``lo → hi`` from the agreed state (it fetches the bytes from the parties'
  checkpoint stores and checks their hash) and reports the hash. Whoever's ``hi`` hash differs is slashed
  (both, if neither matches). A silent referee leaves it **inconclusive**.
* **Slash**: as for inference (``fraud_slash_bps``; ``reporter_reward_bps`` to the winners: the honest
  party and the referee; a cheating miner's client refunded what it paid; the rest burned).
"""

from __future__ import annotations

import msgspec

from aitbc.chain.audit_params import AuditParams
from aitbc.chain.audit_types import (
    TRAINING_DISPUTES,
    Audit,
    AuditState,
    AuditStatus,
    MinerBond,
    TrainingDispute,
    get_audit,
    get_bond,
)
from aitbc.chain.audits import (
    BPS,
    AuditPlan,
    Settlement,
    apply_moves,
    choose,
    compute_audit_event,
    compute_draw,
    compute_slash,
    get_eligible_auditors,
    with_audit,
    with_bond,
)
from aitbc.chain.context import BlockContext, TxContext
from aitbc.chain.params import REWARD_POOL_ADDRESS
from aitbc.chain.state import StateDelta
from aitbc.protocol.address import is_valid_address
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.training import (
    compute_commitment_hash,
    count_segments,
    get_segment_steps,
    is_valid_step_proof,
)
from aitbc.protocol.tx_training import AnswerTrainingAudit, RevealTrainingStep, SubmitTrainingAudit


# -- pure bisection ----------------------------------------------------------------------------------------
def draw_segment(seed: str, job_id: str, segments: int) -> int:
    """The segment an audit re-executes: uniform over ``segments`` from the settling block's hash."""
    return compute_draw(seed, job_id, b"training-segment") % segments


def get_midpoint(dispute: TrainingDispute) -> int:
    """The offset both parties reveal this round."""
    return (dispute.lo + dispute.hi) // 2


def is_one_step(dispute: TrainingDispute) -> bool:
    return dispute.hi - dispute.lo == 1


def compute_bisection(dispute: TrainingDispute, miner_mid: str, auditor_mid: str) -> TrainingDispute:
    """One decided round: agreement at the midpoint moves ``lo`` up, disagreement moves ``hi`` down."""
    mid = get_midpoint(dispute)
    if miner_mid == auditor_mid:
        moved = msgspec.structs.replace(dispute, lo=mid, lo_hash=miner_mid)
    else:
        moved = msgspec.structs.replace(dispute, hi=mid, miner_hash=miner_mid, auditor_hash=auditor_mid)
    return msgspec.structs.replace(moved, miner_mid="", auditor_mid="", rounds=dispute.rounds + 1)


def get_wrong_parties(dispute: TrainingDispute, referee_hash: str) -> tuple[bool, bool]:
    """(miner wrong, auditor wrong) once the referee recomputed step ``lo → hi``."""
    return dispute.miner_hash != referee_hash, dispute.auditor_hash != referee_hash


def max_dispute_rounds(segment_steps: int) -> int:
    """Bisection rounds a segment of this many steps can take: ``ceil(log2(steps))``."""
    return max(segment_steps - 1, 0).bit_length()


# -- settlement --------------------------------------------------------------------------------------------
def compute_training_slash(
    audits: AuditState, audit: Audit, losers: list[str], winners: list[str], height: int, rules: AuditParams,
    moves: Settlement,
) -> tuple[AuditState, Audit]:  # fmt: skip
    """Slash every loser as inference disputes do; the winners share the reporter reward; a losing miner's
    client is refunded; the rest is burned."""
    slashed_total = refunded = 0
    for loser in losers:
        bond = get_bond(audits, loser) or MinerBond(miner=loser)
        slashed_bond, slashed = compute_slash(bond, rules.fraud_slash_bps)
        reward = slashed * rules.reporter_reward_bps // BPS if winners else 0
        share, leftover = divmod(reward, len(winners)) if winners else (0, 0)
        for i, winner in enumerate(winners):
            moves.credit(winner, share + (leftover if i == 0 else 0))
        refund = 0
        if loser == audit.job.miner and is_valid_address(audit.job.client):
            refund = min(audit.job.charged, slashed - reward)
            moves.credit(audit.job.client, refund)
        burned = slashed - reward - refund
        moves.burned += burned
        audits = msgspec.structs.replace(with_bond(audits, slashed_bond), burned=audits.burned + burned)
        slashed_total, refunded = slashed_total + slashed, refunded + refund
    if not losers:
        status = AuditStatus.INCONCLUSIVE
    elif len(losers) == 2:
        status = AuditStatus.BOTH_SLASHED
    else:
        status = AuditStatus.MINER_SLASHED if losers[0] == audit.job.miner else AuditStatus.AUDITOR_SLASHED
    decided = msgspec.structs.replace(
        audit, status=status.value, slashed=slashed_total, refunded=refunded, closed_height=height
    )
    return audits, decided


def _to_next_round(
    audits: AuditState, audit: Audit, dispute: TrainingDispute, height: int, rules: AuditParams
) -> Audit:
    """After the answer or a decided round: bisect again, or draw the referee for the one step left."""
    deadline = height + rules.dispute_window_blocks
    if not is_one_step(dispute):
        status = AuditStatus.TRAINING_BISECTING.value
        return msgspec.structs.replace(audit, status=status, training=dispute, deadline_height=deadline)
    exclude = {audit.job.miner, audit.auditor}
    pool = get_eligible_auditors(audits, audit.job.model_digest, exclude, rules)
    referees = choose(pool, audit.seed, audit.job.job_id, b"training-referee", 1)
    if not referees:
        status = AuditStatus.INCONCLUSIVE.value
        return msgspec.structs.replace(audit, status=status, training=dispute, closed_height=height)
    status = AuditStatus.TRAINING_REFEREEING.value
    return msgspec.structs.replace(audit, status=status, training=dispute, referees=referees, deadline_height=deadline)


# -- the tx kinds ------------------------------------------------------------------------------------------
def _open_audit(audits: AuditState, job_id: str, height: int, statuses: frozenset[str]) -> Audit:
    audit = get_audit(audits, job_id)
    # Verify the job is under an audit in one of these phases, within its deadline
    if audit is None:
        raise InvalidTx(TxRejection.NO_AUDIT, f"job {job_id} is not being audited")
    if audit.status not in statuses or height > audit.deadline_height:
        raise InvalidTx(TxRejection.AUDIT_CLOSED, f"the audit of {job_id} is {audit.status}")
    return audit


def verify_submit_training_audit(state: StateDelta, tx: SubmitTrainingAudit, ctx: TxContext) -> AuditPlan:
    audits, rules = state.get_audits(), ctx.params.audit
    audit = _open_audit(audits, tx.job_id, ctx.height, frozenset({AuditStatus.PENDING.value}))
    moves = Settlement()
    # Verify the sender is the drawn auditor and the commitment is the one the receipt names
    if tx.sender != audit.auditor:
        raise InvalidTx(TxRejection.NOT_AUDITOR, f"{tx.sender} is not the auditor of {tx.job_id}")
    if compute_commitment_hash(tx.commitment) != audit.job.output_hash:
        raise InvalidTx(TxRejection.WRONG_COMMITMENT, f"the commitment does not hash to {tx.job_id}'s output hash")
    segments = count_segments(tx.commitment)
    if segments == 0:  # the miner committed to something no run can produce
        audits, decided = compute_training_slash(
            audits, audit, [audit.job.miner], [audit.auditor], ctx.height, rules, moves
        )
        return AuditPlan(with_audit(audits, decided), decided, moves)
    segment = draw_segment(audit.seed, tx.job_id, segments)
    start, end = get_segment_steps(tx.commitment, segment)
    agreed, claimed = tx.commitment.checkpoint_hashes[segment], tx.commitment.checkpoint_hashes[segment + 1]
    if tx.end_hash == claimed:
        fee = audit.job.protocol_fee * rules.audit_fee_bps // BPS
        fee = min(fee, state.get_account(REWARD_POOL_ADDRESS).balance)
        moves.pool_debit = fee
        moves.credit(tx.sender, fee)
        passed = msgspec.structs.replace(audit, status=AuditStatus.PASSED.value, closed_height=ctx.height)
        return AuditPlan(with_audit(audits, passed), passed, moves)
    dispute = TrainingDispute(
        segment=segment, start_step=start, end_step=end, auditor_root=tx.steps_root, lo_hash=agreed,
        hi=end - start, miner_hash=claimed, auditor_hash=tx.end_hash,
    )  # fmt: skip
    opened = msgspec.structs.replace(
        audit,
        status=AuditStatus.TRAINING_ANSWERING.value,
        training=dispute,
        deadline_height=ctx.height + rules.dispute_window_blocks,
    )
    return AuditPlan(with_audit(audits, opened), opened, moves)


def verify_answer_training_audit(state: StateDelta, tx: AnswerTrainingAudit, ctx: TxContext) -> AuditPlan:
    audits, rules = state.get_audits(), ctx.params.audit
    audit = _open_audit(audits, tx.job_id, ctx.height, frozenset({AuditStatus.TRAINING_ANSWERING.value}))
    # Verify the sender is the job's miner
    if tx.sender != audit.job.miner or audit.training is None:
        raise InvalidTx(TxRejection.NOT_AUDITOR, f"{tx.sender} is not the miner of {tx.job_id}")
    dispute = msgspec.structs.replace(audit.training, miner_root=tx.steps_root)
    moved = _to_next_round(audits, audit, dispute, ctx.height, rules)
    return AuditPlan(with_audit(audits, moved), moved, Settlement())


def verify_reveal_training_step(state: StateDelta, tx: RevealTrainingStep, ctx: TxContext) -> AuditPlan:
    audits, rules = state.get_audits(), ctx.params.audit
    statuses = frozenset({AuditStatus.TRAINING_BISECTING.value, AuditStatus.TRAINING_REFEREEING.value})
    audit = _open_audit(audits, tx.job_id, ctx.height, statuses)
    dispute, moves = audit.training, Settlement()
    assert dispute is not None, "a training dispute carries its bisection"
    if audit.status == AuditStatus.TRAINING_REFEREEING:
        # Verify the sender is the drawn referee
        if tx.sender not in audit.referees:
            raise InvalidTx(TxRejection.NOT_AUDITOR, f"{tx.sender} is not the referee of {tx.job_id}")
        dispute = msgspec.structs.replace(dispute, referee_hash=tx.state_hash)
        miner_wrong, auditor_wrong = get_wrong_parties(dispute, tx.state_hash)
        losers = [p for p, wrong in ((audit.job.miner, miner_wrong), (audit.auditor, auditor_wrong)) if wrong]
        winners = [p for p, wrong in ((audit.job.miner, miner_wrong), (audit.auditor, auditor_wrong)) if not wrong]
        audit = msgspec.structs.replace(audit, training=dispute)
        audits, decided = compute_training_slash(audits, audit, losers, [*winners, tx.sender], ctx.height, rules, moves)
        return AuditPlan(with_audit(audits, decided), decided, moves)
    # Verify the sender is a party that has not revealed this round, with a proof against its own root
    is_miner = tx.sender == audit.job.miner
    if not is_miner and tx.sender != audit.auditor:
        raise InvalidTx(TxRejection.NOT_AUDITOR, f"{tx.sender} is not a party to the dispute of {tx.job_id}")
    if (dispute.miner_mid if is_miner else dispute.auditor_mid) != "":
        raise InvalidTx(TxRejection.DUPLICATE, f"{tx.sender} already revealed this round of {tx.job_id}")
    root = dispute.miner_root if is_miner else dispute.auditor_root
    count = dispute.end_step - dispute.start_step + 1
    if not is_valid_step_proof(root, tx.state_hash, get_midpoint(dispute), count, list(tx.proof)):
        raise InvalidTx(
            TxRejection.BAD_STEP_PROOF, f"the proof does not place the hash at step {get_midpoint(dispute)}"
        )
    if is_miner:
        dispute = msgspec.structs.replace(dispute, miner_mid=tx.state_hash)
    else:
        dispute = msgspec.structs.replace(dispute, auditor_mid=tx.state_hash)
    if dispute.miner_mid and dispute.auditor_mid:
        moved = _to_next_round(audits, audit, compute_bisection(dispute, dispute.miner_mid, dispute.auditor_mid),
                               ctx.height, rules)  # fmt: skip
    else:
        moved = msgspec.structs.replace(audit, training=dispute)
    return AuditPlan(with_audit(audits, moved), moved, moves)


def process_training_audit(
    state: StateDelta, tx: SubmitTrainingAudit | AnswerTrainingAudit | RevealTrainingStep, ctx: TxContext,
    plan: AuditPlan,
) -> None:  # fmt: skip
    apply_moves(state, plan.moves)
    state.set_audits(plan.audits)
    state.emit(compute_audit_event(plan.audit, ctx.tx_hash))


# -- the block step ----------------------------------------------------------------------------------------
def compute_silent_losers(audit: Audit) -> tuple[list[str], list[str]]:
    """Who loses a training dispute whose deadline passed (losers, winners); a silent referee: nobody."""
    dispute = audit.training
    miner, auditor = audit.job.miner, audit.auditor
    if dispute is None or audit.status == AuditStatus.TRAINING_REFEREEING:
        return [], []
    if audit.status == AuditStatus.TRAINING_ANSWERING:
        return [miner], [auditor]
    moved = [p for p, mid in ((miner, dispute.miner_mid), (auditor, dispute.auditor_mid)) if mid]
    return [p for p in (miner, auditor) if p not in moved], moved


def process_training_deadlines(state: StateDelta, ctx: BlockContext) -> None:
    """Start of every block: a party that did not move in its round loses the training dispute."""
    original = audits = state.get_audits()
    moves = Settlement()
    for audit in original.audits:
        if audit.status not in TRAINING_DISPUTES or ctx.height <= audit.deadline_height:
            continue
        losers, winners = compute_silent_losers(audit)
        audits, decided = compute_training_slash(audits, audit, losers, winners, ctx.height, ctx.params.audit, moves)
        audits = with_audit(audits, decided)
        state.emit(compute_audit_event(decided, ""))
    if audits is not original:
        apply_moves(state, moves)
        state.set_audits(audits)


def get_awaited(audit: Audit) -> list[str]:
    """Who must move next in a training audit (auditor, miner, the parties yet to reveal, the referee)."""
    dispute = audit.training
    if audit.status == AuditStatus.PENDING:
        return [audit.auditor]
    if audit.status == AuditStatus.TRAINING_ANSWERING:
        return [audit.job.miner]
    if audit.status == AuditStatus.TRAINING_BISECTING and dispute is not None:
        mids = ((audit.job.miner, dispute.miner_mid), (audit.auditor, dispute.auditor_mid))
        return [party for party, mid in mids if not mid]
    if audit.status == AuditStatus.TRAINING_REFEREEING:
        return list(audit.referees)
    return []
