"""Audited jobs off chain (pure): which jobs may be audited, and what an auditor reports after its re-run.

The chain decides audits by comparing output hashes (``aitbc.chain.audits``); this module decides which
hash an auditor or referee puts in its ``submit_audit``:

* its re-run hashes to the receipt's ``output_hash``: the receipt stands, report that hash;
* an embedding job whose re-run differs only within ``EMBEDDING_TOLERANCE`` per component from the output
  the miner delivered (and that output hashes to the receipt's ``output_hash``): float arithmetic differs
  across CPUs, not the model — report the receipt's hash;
* otherwise report the re-run's own hash: a dispute opens (or, for a referee, a vote against the miner).

Only deterministic settings are audit-compatible (``check_audit_compatible``): greedy decoding
(``temperature_milli == 0``) or a stated seed; embeddings always; never a sealed (private) input, which the
coordinator cannot show an auditor (``docs/verification.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aitbc.chain.audit_types import Audit, AuditStatus
from aitbc.protocol.errors import InvalidInput
from aitbc.protocol.job import JobInput, JobOutput, unpack_vectors
from aitbc.protocol.zkml import compute_job_output_hash

EMBEDDING_TOLERANCE: Final = 1e-4
"""Largest difference per vector component between a re-run and the delivered embedding that still agrees
(unit-length vectors; the builtin MiniLM differs by < 1e-6 between runs on one CPU)."""


@dataclass(frozen=True, slots=True)
class AuditVerdict:
    output_hash: str
    """The hash to report in ``submit_audit``."""
    agrees: bool
    """Whether that is the receipt's ``output_hash`` (the re-run confirms the miner)."""
    reason: str


def get_audit_role(audit: Audit, miner: str) -> str | None:
    """``auditor`` / ``referee`` when ``miner`` is to report on this audit now (the chain would take its
    ``submit_audit``), else None."""
    if audit.status == AuditStatus.PENDING and audit.auditor == miner:
        return "auditor"
    voted = {r.referee for r in audit.reports}
    if audit.status == AuditStatus.DISPUTED and miner in audit.referees and miner not in voted:
        return "referee"
    return None


def check_audit_compatible(job: JobInput) -> None:
    """Refuse (``InvalidInput``) a job that asks for an audit but whose output an honest re-run may not
    reproduce: sampling without a seed. (zk-inference jobs carry their own proof and are not audited.)"""
    if job.type == "zk-inference":
        raise InvalidInput("zk-inference jobs carry a proof of their output; they are not audited")
    if job.type == "inference" and job.params.temperature_milli > 0 and job.params.seed is None:
        raise InvalidInput("an audited job must be deterministic: temperature 0 or a stated seed")


def get_max_difference(a: JobOutput, b: JobOutput) -> float | None:
    """The largest component difference of two embedding outputs; None when their shapes differ."""
    if a.dimensions != b.dimensions or len(a.vectors_f32) != len(b.vectors_f32):
        return None
    left, right = unpack_vectors(a.dimensions, a.vectors_f32), unpack_vectors(b.dimensions, b.vectors_f32)
    return max((abs(x - y) for u, v in zip(left, right, strict=True) for x, y in zip(u, v, strict=True)), default=0.0)


def decide_audit_report(
    job_type: str,
    receipt_output_hash: str,
    rerun: JobOutput,
    delivered: JobOutput | None = None,
    tolerance: float = EMBEDDING_TOLERANCE,
) -> AuditVerdict:
    """What an auditor reports after re-running a job (module docstring). ``delivered``: the output the
    miner delivered, as the coordinator kept it (needed only for the embedding tolerance)."""
    own = compute_job_output_hash(job_type, rerun)
    if own == receipt_output_hash:
        return AuditVerdict(own, True, "the re-run reproduces the receipt's output exactly")
    if job_type == "embedding" and delivered is not None:
        if compute_job_output_hash(job_type, delivered) != receipt_output_hash:
            return AuditVerdict(own, False, "the delivered output does not match the receipt")
        difference = get_max_difference(rerun, delivered)
        if difference is not None and difference <= tolerance:
            return AuditVerdict(receipt_output_hash, True, f"embeddings agree within {difference:.2e}")
        shown = "different shapes" if difference is None else f"differ by {difference:.2e} > {tolerance:.0e}"
        return AuditVerdict(own, False, f"embeddings {shown}")
    return AuditVerdict(own, False, "the re-run's output differs from the receipt's")
