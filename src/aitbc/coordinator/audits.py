"""The coordinator's side of audited inference (``docs/verification.md``; the rules: ``aitbc.chain.audits``).

* **Who may run an audited job.** A client opts in (``constraints.audited``); such a job goes only to a
  miner whose bond on chain reaches ``min_miner_bond``. ``AuditDesk.refresh_bonds`` reads the live miners'
  bonds from the node every ``BOND_REFRESH_S`` (one batched RPC) into ``LiveMiner.bond``; the matching
  policy (local or the pool hub) sees the bond as the miner's stake.
* **The audit input.** The drawn auditor (or a dispute referee) fetches the job's input with a signed
  ``GET /api/v1/audits/{job_id}/input``; ``AuditDesk.audit_input`` releases it only after the node confirms
  that this miner is to report on that job now.
* **Outcomes.** ``AuditDesk.follow_audits`` reads the newest audits every ``FOLLOW_S``; each change of an
  audit of a job this coordinator ran is an ``audit`` event on the job's ``job_updates`` stream, and a passed
  audit (a success) or a slash (a heavy failure) goes into the matching policy's scores.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any, Final

import msgspec

from aitbc.chain.audit_types import Audit
from aitbc.coordinator.db.records import StoredConstraints
from aitbc.coordinator.db.repo import CoordinatorRepo
from aitbc.coordinator.db.writer import DbWriter
from aitbc.coordinator.dispatch import MinerDispatcher
from aitbc.coordinator.events import JobEventBroker
from aitbc.coordinator.matching import MatchPolicy
from aitbc.coordinator.payments import ChainLink
from aitbc.market.auditing import check_audit_compatible, get_audit_role
from aitbc.market.scoring import Outcome
from aitbc.market.training_disputes import get_training_role
from aitbc.protocol.errors import Conflict, Forbidden, InvalidInput, NotFound, RemoteError
from aitbc.protocol.job import JobInput
from aitbc.protocol.job_messages import JobConstraints

log = logging.getLogger("aitbc.coordinator.audits")

BOND_REFRESH_S: Final = 5.0
FOLLOW_S: Final = 1.0
AUDITS_PAGE: Final = 200
MAX_REMEMBERED: Final = 10_000
RPC_NOT_FOUND: Final = -32004
OUTCOMES: Final = {"passed": Outcome.AUDIT_PASSED, "miner_slashed": Outcome.SLASHED}


def stored_constraints(c: JobConstraints, job_input: JobInput, sealed: bool, paid: bool) -> StoredConstraints:
    """A request's constraints as kept; an audited job must be deterministic, public and paid on chain. A
    training job on a sealed dataset runs only on the miner it is sealed to; audited, its client re-seals the
    dataset to the drawn auditor and referees (``POST /api/v1/jobs/{id}/sealed-datasets``)."""
    spec = job_input.training
    sealed_to = None if spec is None or spec.sealed_dataset is None else spec.sealed_dataset.miner
    if c.audited:
        if sealed:
            raise InvalidInput("a sealed (private) job cannot be audited: the auditor could not read its input")
        if not paid:
            raise InvalidInput("this coordinator runs jobs unpaid (no node): there are no audits")
        check_audit_compatible(job_input)
    return StoredConstraints(
        min_vram_gb=c.min_vram_gb,
        gpu=c.gpu,
        region=c.region,
        zk_proof_required=c.zk_proof_required,
        audited=c.audited,
        miner=sealed_to,
    )


class AuditDesk:
    def __init__(
        self,
        chain: ChainLink,
        dispatcher: MinerDispatcher,
        match_policy: MatchPolicy,
        events: JobEventBroker,
        db: DbWriter,
        repo: CoordinatorRepo,
    ) -> None:
        self.chain = chain
        self.dispatcher = dispatcher
        self.match_policy = match_policy
        self.events = events
        self.db = db
        self.repo = repo
        self.statuses: OrderedDict[str, str] = OrderedDict()
        """job id → the audit status last acted on."""

    async def run(self) -> None:
        next_bonds = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() >= next_bonds:
                    await self.refresh_bonds()
                    next_bonds = loop.time() + BOND_REFRESH_S
                await self.follow_audits()
            except RemoteError as exc:
                log.warning("audit state not read from the node", extra={"error": exc.message})
            await asyncio.sleep(FOLLOW_S)

    async def refresh_bonds(self) -> None:
        live = self.dispatcher.live_miners()
        if not live:
            return
        calls = [("get_miner_bond", [m.offer.miner]) for m in live]
        results = await self.chain.call(self.chain.node.batch, calls)
        changed = False
        for miner, result in zip(live, results, strict=True):
            if isinstance(result, RemoteError):
                continue
            self.dispatcher.min_bond = int(result["min_miner_bond"])
            bond = int(result["bond"]["amount"]) if result["bond"] else 0
            if bond != miner.bond:
                miner.bond, changed = bond, True
                if miner.registration is not None:
                    self.match_policy.on_register(miner.offer, miner.registration, miner.max_concurrency, bond)
        if changed:
            self.dispatcher.miners_changed()
            self.dispatcher.notify_work()

    async def follow_audits(self) -> None:
        page = await self.chain.call(self.chain.node.call, "get_audits", None, None, AUDITS_PAGE)
        for audit in reversed(page["audits"]):  # oldest first
            job_id, status = audit["job"]["job_id"], audit["status"]
            if self.statuses.get(job_id) == status:
                continue
            self.statuses[job_id] = status
            self.statuses.move_to_end(job_id)
            while len(self.statuses) > MAX_REMEMBERED:
                self.statuses.popitem(last=False)
            job = await self.db.get_job(job_id)
            if job is None:
                continue  # another coordinator's job
            # every replica's desk follows the chain itself: not relayed to the others
            self.events.publish(job_id, "audit", audit_event(audit), owner=job.api_key_id, share=False)
            detail = f"audit {status} at block {audit['closed_height'] or audit['selected_height']}"
            if status in OUTCOMES:
                self.match_policy.on_outcome(audit["job"]["miner"], job_id, 1, OUTCOMES[status], detail=detail)
            elif status == "auditor_slashed":
                self.match_policy.on_outcome(audit["auditor"], job_id, 1, Outcome.SLASHED, detail=detail)

    async def _audit(self, job_id: str) -> Audit | None:
        """The job's audit on chain (None: it is not being audited)."""
        try:
            found = await self.chain.call(self.chain.node.call, "get_audit", job_id)
        except RemoteError as exc:
            if exc.code == RPC_NOT_FOUND:
                return None
            raise
        return msgspec.convert(found["audit"], Audit)

    async def get_role(self, miner: str, job_id: str) -> str | None:
        """What ``miner`` is to do in the audit of ``job_id`` now (auditor, referee…), or None."""
        audit = await self._audit(job_id)
        return None if audit is None else get_audit_role(audit, miner) or get_training_role(audit, miner)

    async def audit_input(self, miner: str, job_id: str) -> dict[str, Any]:
        """The job's input (and the output the miner delivered, with its receipt) for its auditor or referee."""
        audit = await self._audit(job_id)
        if audit is None:
            raise NotFound(f"job {job_id} is not being audited")
        role = get_audit_role(audit, miner) or get_training_role(audit, miner)
        if role is None:
            raise Forbidden(f"{miner} is not to report on the audit of {job_id} (status {audit.status})")
        job = await self.db.get_job(job_id)
        receipt = await self.db.read(self.repo.get_receipt, job_id)
        if job is None or receipt is None:
            raise NotFound(f"this coordinator did not run job {job_id}")
        if job.sealed is not None:
            raise Conflict("the job's input is sealed to its miner; it cannot be shown to an auditor")
        return {
            "job_id": job_id,
            "role": role,
            "deadline_height": audit.deadline_height,
            "input": msgspec.to_builtins(job.input),
            "output": None if job.result is None else msgspec.to_builtins(job.result),
            "receipt": receipt.receipt,
            "receipt_hash": receipt.receipt_hash,
        }


def audit_event(audit: dict[str, Any]) -> dict[str, Any]:
    """What a ``job_updates`` subscriber sees of an audit."""
    return {
        "status": audit["status"],
        "auditor": audit["auditor"],
        "referees": audit["referees"],
        "selected_height": audit["selected_height"],
        "deadline_height": audit["deadline_height"],
        "closed_height": audit["closed_height"],
        "slashed": audit["slashed"],
        "refunded": audit["refunded"],
    }
