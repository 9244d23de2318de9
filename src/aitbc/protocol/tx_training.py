"""The tx kinds of verifiable training audits (``aitbc.chain.training_audit``; docs/verification.md).
Members of the ``Tx`` union in ``aitbc.protocol.tx``."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta

from aitbc.protocol.job import JobId
from aitbc.protocol.training import TrainingCommitment
from aitbc.protocol.tx_base import TxBase
from aitbc.protocol.types import Hash32, SignatureHex

MAX_PROOF_NODES: Final = 64


class SubmitTrainingAudit(TxBase, frozen=True, kw_only=True, tag="submit_training_audit"):
    """The auditor's re-execution of a training job's drawn segment: the job's commitment (its hash is the
    receipt's output hash), the auditor's state hash at the segment's end, and the Merkle root of its state
    hashes at every step of the segment (``aitbc.protocol.training.compute_steps_root``)."""

    job_id: JobId
    commitment: TrainingCommitment
    end_hash: Hash32
    steps_root: Hash32
    signature: SignatureHex = ""


class AnswerTrainingAudit(TxBase, frozen=True, kw_only=True, tag="answer_training_audit"):
    """The miner's answer to a disputed segment: the Merkle root of its own state hashes at every step."""

    job_id: JobId
    steps_root: Hash32
    signature: SignatureHex = ""


class RevealTrainingStep(TxBase, frozen=True, kw_only=True, tag="reveal_training_step"):
    """One bisection move: the miner's or the auditor's state hash at the dispute's midpoint with its Merkle
    proof against that party's root; or the referee's recomputation of the one disputed step (no proof)."""

    job_id: JobId
    state_hash: Hash32
    proof: Annotated[list[Hash32], Meta(max_length=MAX_PROOF_NODES)] = msgspec.field(default_factory=list)
    signature: SignatureHex = ""


TRAINING_AUDIT_TX_TYPES: Final[tuple[type[TxBase], ...]] = (
    SubmitTrainingAudit,
    AnswerTrainingAudit,
    RevealTrainingStep,
)
