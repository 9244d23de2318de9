"""The miner's part in training audits: follow the chain, replay segments and single steps, answer rounds.

A bonded miner polls the node (``get_audits`` naming its address) and, for each training audit awaiting it
(``aitbc.market.training_disputes``): as the drawn **auditor**, replays the drawn segment from the miner's
checkpoint and sends ``submit_training_audit``; as the job's **miner**, answers a dispute with the root of
its own per-step hashes and reveals its hash at every round's midpoint; as the **referee**, recomputes the
one step left from the agreed state and reveals the result. The replays go through a ``SegmentRunner``: the
training runtime (``aitbc.training``) with the job's spec and dataset, and the parties' checkpoint stores for
start states (each state checked against its hash before use). Inference audits are the other loop's
(``aitbc.miner.auditor``): an audit whose job has no training commitment is left alone here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final, Protocol

import msgspec

from aitbc.chain.audit_types import OPEN_AUDITS, Audit
from aitbc.chain.training_audit import get_awaited
from aitbc.client.node import NodeClient
from aitbc.market.training_disputes import Move, plan_move, plan_replay
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import AitbcError, RemoteError
from aitbc.protocol.training import TrainingCommitment
from aitbc.protocol.tx import AnswerTrainingAudit, RevealTrainingStep, SubmitTrainingAudit, TxBase, sign_tx

log = logging.getLogger("aitbc.miner.training_auditor")

POLL_S: Final = 0.5
RESEND_S: Final = 15.0
"""A move not yet reflected on chain after this long is sent again (its tx may have been dropped); a job not
found as a training job is looked up again after as long."""
TX_KINDS: Final[dict[str, type[TxBase]]] = {
    "submit_training_audit": SubmitTrainingAudit,
    "answer_training_audit": AnswerTrainingAudit,
    "reveal_training_step": RevealTrainingStep,
}


class SegmentRunner(Protocol):
    """What the loop needs of the training runtime and the checkpoint stores."""

    def commitment(self, job_id: str) -> TrainingCommitment | None:
        """The job's training commitment (None: not a training job this miner can replay)."""

    def replay(self, job_id: str, start_step: int, end_step: int, start_hash: str) -> list[str] | None:
        """State hashes after steps ``start_step … end_step`` (``start_hash`` first), replayed from the state
        with hash ``start_hash``; None when that state cannot be had (no store holds it)."""


class TrainingAuditor:
    def __init__(self, key: KeyPair, node_url: str, runner: SegmentRunner, poll_s: float = POLL_S) -> None:
        self.key = key
        self.node = NodeClient(node_url, timeout=10.0)
        self.runner = runner
        self.poll_s = poll_s
        self.sent: dict[tuple[Any, ...], float] = {}
        """Moves sent, by the audit phase they answer, with when (to resend after ``RESEND_S``)."""
        self.replays: dict[tuple[str, int, int, str], list[str]] = {}
        self.commitments: dict[str, TrainingCommitment] = {}
        self.moves = 0
        self._chain: tuple[str, int] | None = None

    async def run(self) -> None:
        """Poll and move until cancelled."""
        try:
            while True:
                try:
                    await asyncio.to_thread(self.poll_once)
                except (RemoteError, AitbcError, OSError) as exc:
                    log.warning("training audit poll failed", extra={"error": str(exc)})
                await asyncio.sleep(self.poll_s)
        finally:
            await asyncio.to_thread(self.node.close)

    def poll_once(self) -> int:
        """Make every move due from this miner now; returns how many txs were sent."""
        page = self.node.call("get_audits", None, self.key.address, 200)
        sent = 0
        for raw in page["audits"]:
            audit = msgspec.convert(raw, Audit)
            if audit.status in OPEN_AUDITS and self.move(audit):
                sent += 1
        return sent

    def move(self, audit: Audit) -> bool:
        job_id, dispute = audit.job.job_id, audit.training
        phase = (job_id, audit.status, *((dispute.rounds, dispute.lo, dispute.hi) if dispute else ()))
        if time.monotonic() - self.sent.get(phase, -RESEND_S) < RESEND_S:
            return False
        if self.key.address not in get_awaited(audit):
            return False
        commitment = self.commitments.get(job_id)
        if commitment is None:  # not found yet (another loop's job, or the coordinator was away): ask again later
            commitment = self.runner.commitment(job_id)
            if commitment is None:
                self.sent[phase] = time.monotonic()
            else:
                self.commitments[job_id] = commitment
        replay = plan_replay(audit, self.key.address, commitment)
        if replay is None:
            return False
        hashes: list[str] = []
        if replay.start_hash:
            cache = (job_id, replay.start_step, replay.end_step, replay.start_hash)
            replayed = self.replays.get(cache) or self.runner.replay(job_id, *cache[1:])
            if replayed is None:
                log.warning("no checkpoint to replay from", extra={"job_id": job_id, "hash": replay.start_hash})
                return False
            hashes = self.replays[cache] = replayed
        move = plan_move(audit, self.key.address, commitment, hashes)
        if move is None:
            return False
        tx_hash = self._send(move)
        self.sent[phase] = time.monotonic()
        self.moves += 1
        log.info("training audit move", extra={"job_id": job_id, "role": replay.role, "kind": move.kind, "tx": tx_hash})
        return True

    def _send(self, move: Move) -> str:
        if self._chain is None:
            info = self.node.get_chain_info()
            self._chain = (str(info["chain_id"]), int(info["params"]["min_fee"]))
        chain_id, fee = self._chain
        kind = TX_KINDS[move.kind]
        nonce = self.node.next_nonce(self.key.address)
        tx = kind(chain_id=chain_id, sender=self.key.address, nonce=nonce, fee=fee, **move.fields)
        return self.node.send_tx(sign_tx(tx, self.key))  # type: ignore[arg-type]
