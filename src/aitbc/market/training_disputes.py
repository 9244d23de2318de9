"""What a miner does next in a training audit, as pure decisions (the loop: ``aitbc.miner.training_auditor``).

A party of a training audit is the drawn auditor, the job's miner, or the drawn referee
(``aitbc.chain.training_audit``). Each decision names the steps to replay and, once their state hashes are
known, the tx fields to send; the shell fetches states, replays and sends.
"""

from __future__ import annotations

from dataclasses import dataclass

from aitbc.chain.audit_types import Audit, AuditStatus
from aitbc.chain.training_audit import draw_segment, get_awaited, get_midpoint
from aitbc.protocol.training import (
    TrainingCommitment,
    compute_commitment_hash,
    compute_step_proof,
    compute_steps_root,
    count_segments,
    get_segment_steps,
)


def get_training_role(audit: Audit, miner: str) -> str | None:
    """``auditor`` / ``referee`` when ``miner`` is to replay part of this training audit's job now (what the
    coordinator's audit input is released for); the job's own miner needs no input."""
    if miner not in get_awaited(audit) or miner == audit.job.miner:
        return None
    if audit.status == AuditStatus.TRAINING_REFEREEING:
        return "referee"
    return "auditor" if audit.status == AuditStatus.PENDING else None


@dataclass(frozen=True, slots=True)
class Replay:
    """Steps ``start_step + 1 … end_step`` to replay from the state whose hash is ``start_hash``."""

    role: str
    """``auditor``, ``miner`` or ``referee``."""
    start_step: int
    end_step: int
    start_hash: str


def plan_replay(audit: Audit, me: str, commitment: TrainingCommitment | None) -> Replay | None:
    """The replay ``me`` needs before its next move in this audit, or None when it has none to make (not its
    turn, not a training job, or a commitment that is not the receipt's)."""
    if me not in get_awaited(audit):
        return None
    dispute = audit.training
    if audit.status == AuditStatus.PENDING:
        if commitment is None or compute_commitment_hash(commitment) != audit.job.output_hash:
            return None
        segments = count_segments(commitment)
        if segments == 0:  # the chain slashes such a commitment: report it against any segment
            return Replay("auditor", 0, 0, "")
        segment = draw_segment(audit.seed, audit.job.job_id, segments)
        start, end = get_segment_steps(commitment, segment)
        return Replay("auditor", start, end, commitment.checkpoint_hashes[segment])
    if dispute is None:
        return None
    if audit.status == AuditStatus.TRAINING_REFEREEING:
        return Replay("referee", dispute.start_step + dispute.lo, dispute.start_step + dispute.hi, dispute.lo_hash)
    role = "miner" if me == audit.job.miner else "auditor"
    if commitment is not None and compute_commitment_hash(commitment) == audit.job.output_hash:
        start_hash = commitment.checkpoint_hashes[dispute.segment]
    else:
        start_hash = dispute.lo_hash if dispute.lo == 0 else ""
    return Replay(role, dispute.start_step, dispute.end_step, start_hash)


@dataclass(frozen=True, slots=True)
class Move:
    """The kind-specific fields of the tx to send (``submit_training_audit``, ``answer_training_audit`` or
    ``reveal_training_step``)."""

    kind: str
    fields: dict[str, object]


def plan_move(audit: Audit, me: str, commitment: TrainingCommitment | None, hashes: list[str]) -> Move | None:
    """The tx ``me`` sends given its state hashes over the replayed steps (the start included)."""
    job_id = audit.job.job_id
    dispute = audit.training
    if audit.status == AuditStatus.PENDING and commitment is not None and me == audit.auditor:
        end_hash = hashes[-1] if hashes else "00" * 32
        root = compute_steps_root(hashes) if hashes else "00" * 32
        fields = {"job_id": job_id, "commitment": commitment, "end_hash": end_hash, "steps_root": root}
        return Move("submit_training_audit", fields)
    if dispute is None or not hashes:
        return None
    if audit.status == AuditStatus.TRAINING_ANSWERING and me == audit.job.miner:
        return Move("answer_training_audit", {"job_id": job_id, "steps_root": compute_steps_root(hashes)})
    if audit.status == AuditStatus.TRAINING_BISECTING:
        mid = get_midpoint(dispute)
        proof = compute_step_proof(hashes, mid)
        return Move("reveal_training_step", {"job_id": job_id, "state_hash": hashes[mid], "proof": proof})
    if audit.status == AuditStatus.TRAINING_REFEREEING and me in audit.referees:
        return Move("reveal_training_step", {"job_id": job_id, "state_hash": hashes[-1]})
    return None
