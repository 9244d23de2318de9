"""The miner as auditor: follow the chain's audits, re-run the jobs it is drawn for, report on chain.

A bonded miner started with ``--node`` polls the node (``get_audits`` naming its address) every
``POLL_S``. For each audit it is to report on now (``aitbc.market.auditing.get_audit_role``: the drawn
auditor of a pending audit, or a referee of a dispute that has not voted), it fetches the job's input from
its coordinator (signed ``GET /api/v1/audits/{job_id}/input``; the coordinator checks the draw on chain),
checks that input against the receipt's ``input_hash`` (and that it is deterministic: a sampled job without
a seed is left to expire, as no honest re-run would reproduce it), re-runs it on its own backend with the same model,
parameters and seed, and sends ``submit_audit`` with the hash ``decide_audit_report`` picks. Re-runs go
one at a time, beside the miner's paid jobs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

import msgspec

from aitbc.chain.audit_types import Audit
from aitbc.client.node import NodeClient
from aitbc.market.auditing import check_audit_compatible, decide_audit_report, get_audit_role
from aitbc.miner.link import CoordinatorLink, error_reason
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import AitbcError, InvalidInput, RemoteError
from aitbc.protocol.job import JobInput, JobOutput, compute_input_hash
from aitbc.protocol.tx import SubmitAudit, sign_tx

log = logging.getLogger("aitbc.miner.auditor")

POLL_S: Final = 0.5
AUDITS_PAGE: Final = 200
RETRY_STATUSES: Final = frozenset({0, 502, 503, 504})
"""Answers after which the same audit is tried again at the next poll (the coordinator or node was away)."""


class Auditor:
    def __init__(
        self,
        key: KeyPair,
        link: CoordinatorLink | None,
        node_url: str,
        execute: Callable[[JobInput, Any], tuple[JobOutput, Any]],
        poll_s: float = POLL_S,
    ) -> None:
        assert link is not None, "the miner audits once it has registered with its coordinator"
        self.key = key
        self.link = link
        self.node = NodeClient(node_url, timeout=10.0)
        self.execute = execute
        """Run a job on the miner's backend: ``MinerDaemon._execute`` (blocking; called in a worker thread)."""
        self.poll_s = poll_s
        self.handled: set[tuple[str, str]] = set()
        """(job id, role) already reported on, or given up."""
        self.reported = 0
        self.disagreed = 0
        self._chain: tuple[str, int] | None = None

    async def run(self) -> None:
        """Poll and audit until cancelled."""
        try:
            while True:
                try:
                    await self.poll_once()
                except (RemoteError, OSError) as exc:
                    log.warning("audit poll failed", extra={"error": str(exc)})
                await asyncio.sleep(self.poll_s)
        finally:
            await asyncio.to_thread(self.node.close)

    async def poll_once(self) -> int:
        """Report on every audit due from this miner now; returns how many were reported."""
        page = await asyncio.to_thread(self.node.call, "get_audits", None, self.key.address, AUDITS_PAGE)
        done = 0
        for raw in page["audits"]:
            audit = msgspec.convert(raw, Audit)
            role = get_audit_role(audit, self.key.address)
            if role is None or (audit.job.job_id, role) in self.handled:
                continue
            if await self.audit(audit, role):
                done += 1
        return done

    async def audit(self, audit: Audit, role: str) -> bool:
        job_id = audit.job.job_id
        status, data = await self._fetch_input(job_id)
        if status != 200:
            if status not in RETRY_STATUSES:
                self.handled.add((job_id, role))
            log.warning("audit input refused", extra={"job_id": job_id, "status": status, "reason": error_reason(data)})
            return False
        self.handled.add((job_id, role))
        try:
            job_input = msgspec.convert(data["input"], JobInput)
            delivered = None if data.get("output") is None else msgspec.convert(data["output"], JobOutput)
        except (msgspec.ValidationError, KeyError, TypeError) as exc:
            log.error("the coordinator sent an audit input this miner cannot read", extra={"error": str(exc)})
            return False
        if job_input.type == "training":
            return False  # a segment check and bisection, not a re-run: aitbc.miner.training_auditor's
        if compute_input_hash(job_input) != data.get("receipt", {}).get("input_hash"):
            log.error("the audit input does not hash to the receipt's input_hash", extra={"job_id": job_id})
            return False
        try:  # a sampled job no honest re-run reproduces: let the audit expire rather than open a dispute
            check_audit_compatible(job_input)
        except InvalidInput as exc:
            log.info("job not audit-compatible; not reported", extra={"job_id": job_id, "why": exc.message})
            return False
        try:
            rerun, _units = await asyncio.to_thread(self.execute, job_input, None)
        except Exception:
            log.exception("audit re-run failed", extra={"job_id": job_id})
            return False
        verdict = decide_audit_report(job_input.type, audit.job.output_hash, rerun, delivered)
        try:
            tx_hash = await asyncio.to_thread(self._submit, job_id, verdict.output_hash)
        except (AitbcError, OSError):
            self.handled.discard((job_id, role))  # the node refused or was away: re-run at the next poll
            raise
        self.reported += 1
        self.disagreed += not verdict.agrees
        log.info(
            "audit reported",
            extra={"job_id": job_id, "role": role, "agrees": verdict.agrees, "why": verdict.reason, "tx": tx_hash},
        )
        return True

    async def _fetch_input(self, job_id: str) -> tuple[int, Any]:
        try:
            return await self.link.get(f"/api/v1/audits/{job_id}/input")
        except (AitbcError, OSError) as exc:
            return 0, {"error": {"reason": "unreachable", "message": str(exc)}}

    def _submit(self, job_id: str, output_hash: str) -> str:
        if self._chain is None:
            info = self.node.get_chain_info()
            self._chain = (str(info["chain_id"]), int(info["params"]["min_fee"]))
        chain_id, fee = self._chain
        tx = SubmitAudit(
            chain_id=chain_id,
            sender=self.key.address,
            nonce=self.node.next_nonce(self.key.address),
            fee=fee,
            job_id=job_id,
            output_hash=output_hash,
        )
        return self.node.send_tx(sign_tx(tx, self.key))
