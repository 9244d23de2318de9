"""The miners' moves in a training audit (``aitbc.market.training_disputes``): whose turn, which steps to
replay, and the tx each party sends from its own hashes."""

from __future__ import annotations

import msgspec

from aitbc.chain.audit_types import Audit, AuditCandidate, TrainingDispute
from aitbc.chain.training_audit import draw_segment
from aitbc.market.training_disputes import get_training_role, plan_move, plan_replay
from aitbc.protocol.crypto import KeyPair, sha256_hex
from aitbc.protocol.training import (
    TrainingCommitment,
    compute_commitment_hash,
    compute_steps_root,
    is_valid_step_proof,
)

MINER, AUDITOR, REFEREE, OTHER = (KeyPair.from_seed(bytes([i]) * 32).address for i in range(1, 5))
HASHES = [sha256_hex(bytes([i])) for i in range(41)]  # a party's state hashes after 0 … 40 steps
COMMITMENT = TrainingCommitment(
    spec_hash="aa" * 32, dataset_hash="bb" * 32, runtime_build="toy-1", steps=40, checkpoint_every=8,
    checkpoint_hashes=HASHES[::8],
)  # fmt: skip
JOB = AuditCandidate(
    job_id="train-1", miner=MINER, client=OTHER, model_digest="sha256:" + "ab" * 32,
    output_hash=compute_commitment_hash(COMMITMENT), receipt_hash="cc" * 32, charged=1_000, protocol_fee=20,
)  # fmt: skip
PENDING = Audit(job=JOB, auditor=AUDITOR, selected_height=5, deadline_height=10, seed="dd" * 32)


def disputed(status: str, **fields: object) -> Audit:
    segment = draw_segment(PENDING.seed, "train-1", 5)
    dispute = TrainingDispute(
        segment=segment, start_step=8 * segment, end_step=8 * segment + 8, auditor_root="ee" * 32,
        lo_hash=HASHES[8 * segment], hi=8, miner_hash=HASHES[8 * segment + 8], auditor_hash="ff" * 32,
    )  # fmt: skip
    return msgspec.structs.replace(
        PENDING, status=status, training=msgspec.structs.replace(dispute, **fields), referees=[REFEREE]
    )


def test_the_auditor_replays_the_drawn_segment_and_reports_its_end_and_root() -> None:
    segment = draw_segment(PENDING.seed, "train-1", 5)
    replay = plan_replay(PENDING, AUDITOR, COMMITMENT)
    assert replay is not None and replay.role == "auditor"
    assert (replay.start_step, replay.end_step, replay.start_hash) == (
        8 * segment,
        8 * segment + 8,
        HASHES[8 * segment],
    )
    mine = HASHES[replay.start_step : replay.end_step + 1]
    move = plan_move(PENDING, AUDITOR, COMMITMENT, mine)
    assert move is not None and move.kind == "submit_training_audit"
    assert move.fields["end_hash"] == mine[-1] and move.fields["steps_root"] == compute_steps_root(mine)


def test_nobody_moves_out_of_turn_and_a_foreign_commitment_is_not_audited_here() -> None:
    assert plan_replay(PENDING, MINER, COMMITMENT) is None
    assert plan_replay(PENDING, OTHER, COMMITMENT) is None
    assert plan_replay(PENDING, AUDITOR, None) is None  # an inference job: the other loop's
    other = msgspec.structs.replace(COMMITMENT, steps=41)
    assert plan_replay(PENDING, AUDITOR, other) is None
    answering = disputed("training_answering")
    assert plan_replay(answering, AUDITOR, COMMITMENT) is None
    assert plan_replay(answering, MINER, COMMITMENT) is not None
    bisecting = disputed("training_bisecting", miner_root="11" * 32, miner_mid=HASHES[4])
    assert plan_replay(bisecting, MINER, COMMITMENT) is None  # it revealed this round already
    assert plan_replay(bisecting, AUDITOR, COMMITMENT) is not None


def test_a_reveal_carries_a_proof_of_the_midpoint_and_the_referee_replays_one_step() -> None:
    bisecting = disputed("training_bisecting", miner_root="11" * 32, lo=2, hi=6)
    dispute = bisecting.training
    assert dispute is not None
    mine = HASHES[dispute.start_step : dispute.end_step + 1]
    move = plan_move(bisecting, MINER, COMMITMENT, mine)
    assert move is not None and move.kind == "reveal_training_step" and move.fields["state_hash"] == mine[4]
    assert is_valid_step_proof(compute_steps_root(mine), mine[4], 4, 9, list(move.fields["proof"]))
    refereeing = disputed("training_refereeing", lo=4, hi=5, lo_hash=mine[4])
    assert get_training_role(refereeing, REFEREE) == "referee" and get_training_role(refereeing, AUDITOR) is None
    assert get_training_role(PENDING, AUDITOR) == "auditor" and get_training_role(PENDING, MINER) is None
    assert get_training_role(bisecting, AUDITOR) is None  # the parties replay from their own stores
    replay = plan_replay(refereeing, REFEREE, None)
    assert replay is not None and replay.role == "referee"
    assert (replay.start_step, replay.end_step, replay.start_hash) == (
        dispute.start_step + 4,
        dispute.start_step + 5,
        mine[4],
    )
    move = plan_move(refereeing, REFEREE, None, mine[4:6])
    assert move is not None and move.fields == {"job_id": "train-1", "state_hash": mine[5]}
