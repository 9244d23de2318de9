"""Audited inference state: miner bonds, the jobs settled in the last block, audits and their disputes.

One ``AuditState`` lives under one key of the state root (``aitbc.chain.entries`` module entries), so a
light client checks any bond, audit or dispute with one Merkle proof. Closed audits are kept up to
``MAX_CLOSED_AUDITS`` (the newest), which bounds what every audit tx rewrites.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from aitbc.protocol.receipt import Receipt
from aitbc.protocol.types import U64, Address, Amount, Hash32, Height, Wire

Text = Annotated[str, Wire.STR]
MAX_CLOSED_AUDITS: Final = 1_000


class Unbonding(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    amount: Amount
    release_height: Height


class MinerBond(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    miner: Address
    amount: Amount = 0
    models: list[Text] = msgspec.field(default_factory=list)
    """The model digests (``sha256:…``) the miner serves: it may be chosen to audit jobs of these."""
    unbonding: list[Unbonding] = msgspec.field(default_factory=list)

    @property
    def slashable(self) -> int:
        return self.amount + sum(u.amount for u in self.unbonding)


class AuditCandidate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A job settled in the last block: whether it is audited is drawn from the next block's parent hash."""

    job_id: Text
    miner: Address
    client: Text
    model_digest: Text
    output_hash: Text
    receipt_hash: Text
    charged: Amount
    """What the client paid for it (receipt total + protocol fee): the refund if the miner cheated."""
    protocol_fee: Amount


def compute_audit_candidate(receipt: Receipt, client: str, charged: int, fee: int, receipt_hash: str) -> AuditCandidate:
    """What the audit draw needs to know of a job its block settled."""
    return AuditCandidate(
        job_id=receipt.job_id,
        miner=receipt.miner,
        client=client,
        model_digest=receipt.model_digest,
        output_hash=receipt.output_hash,
        receipt_hash=receipt_hash,
        charged=charged,
        protocol_fee=fee,
    )


class AuditStatus(StrEnum):
    PENDING = "pending"
    """Selected; the auditor re-executes and reports."""
    PASSED = "passed"
    DISPUTED = "disputed"
    """The auditor's output differs; two referees re-execute."""
    MINER_SLASHED = "miner_slashed"
    AUDITOR_SLASHED = "auditor_slashed"
    INCONCLUSIVE = "inconclusive"
    """The referees did not side with either (or did not report): nobody is slashed."""
    EXPIRED = "expired"
    """The auditor did not report in time (it is not paid; the job stands)."""
    TRAINING_ANSWERING = "training_answering"
    """A training segment differs: the miner answers with the root of its per-step hashes."""
    TRAINING_BISECTING = "training_bisecting"
    """Both parties reveal their state hash at the midpoint of the steps still in dispute."""
    TRAINING_REFEREEING = "training_refereeing"
    """One step is left: a drawn referee recomputes it from the agreed state."""
    BOTH_SLASHED = "both_slashed"
    """Neither party's hash matched the referee's step (or neither moved in time)."""


TRAINING_DISPUTES: Final = frozenset(
    {AuditStatus.TRAINING_ANSWERING.value, AuditStatus.TRAINING_BISECTING.value, AuditStatus.TRAINING_REFEREEING.value}
)
OPEN_AUDITS: Final = frozenset({AuditStatus.PENDING.value, AuditStatus.DISPUTED.value, *TRAINING_DISPUTES})


class RefereeReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    referee: Address
    output_hash: Text


class TrainingDispute(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The bisection of a disputed training segment (``aitbc.chain.training_audit``). Offsets count steps
    from ``start_step``: both parties agree on the state at ``lo`` and disagree at ``hi``."""

    segment: U64
    start_step: U64
    end_step: U64
    auditor_root: Hash32
    miner_root: Text = ""
    lo: U64 = 0
    lo_hash: Hash32
    hi: U64
    miner_hash: Hash32
    """The miner's state hash at ``hi``."""
    auditor_hash: Hash32
    miner_mid: Text = ""
    """The miner's reveal at the midpoint of ``lo`` and ``hi`` this round ("" until it moved)."""
    auditor_mid: Text = ""
    rounds: U64 = 0
    """Bisection rounds decided."""
    referee_hash: Text = ""


class Audit(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    job: AuditCandidate
    auditor: Address
    selected_height: Height
    deadline_height: Height
    status: Annotated[str, Meta(pattern=r"^[a-z_]+$"), Wire.STR] = AuditStatus.PENDING.value
    auditor_output: Text = ""
    referees: list[Address] = msgspec.field(default_factory=list)
    reports: list[RefereeReport] = msgspec.field(default_factory=list)
    slashed: Amount = 0
    refunded: Amount = 0
    closed_height: Height = 0
    seed: Text = ""
    """The hash of the block that settled the job (the draw's seed; a training audit draws its segment and
    referee from it too)."""
    training: TrainingDispute | None = None


class AuditState(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    bonds: list[MinerBond] = msgspec.field(default_factory=list)
    """Sorted by miner."""
    candidates: list[AuditCandidate] = msgspec.field(default_factory=list)
    audits: list[Audit] = msgspec.field(default_factory=list)
    """Open audits and the newest closed ones, in selection order."""
    burned: Amount = 0


EMPTY_AUDITS: Final = AuditState()


def get_bond(audits: AuditState, miner: str) -> MinerBond | None:
    return next((b for b in audits.bonds if b.miner == miner), None)


def get_audit(audits: AuditState, job_id: str) -> Audit | None:
    return next((a for a in audits.audits if a.job.job_id == job_id), None)


def get_bonded_total(audits: AuditState) -> int:
    """Tokens the audit module holds (bonds and unbondings): part of the supply."""
    return sum(b.slashable for b in audits.bonds)
