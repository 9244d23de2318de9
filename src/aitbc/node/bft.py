"""The shell around ``aitbc.consensus``: feeds it p2p messages and timers, carries out its actions.

Multi-validator chains (more than one genesis authority) run this instead of
the PoA block clock. Per height: wait until ``block_time`` after the head,
start the machine; proposals are checked with ``apply_block`` (the block's
validity is the machine's ``valid``), own votes and proposals are signed
through the ``SignGuard`` (persisted first), a decision is committed with its
commit certificate, then the next height starts. Every node announces its
height twice a second; a peer that is behind gets the committed blocks with
their certificates (block sync), one at the same height gets our votes again
(catch-up after a reconnect). A double vote seen by the machine becomes a
``report_evidence`` tx from this validator.

The node's key need not be a genesis authority: the machine of each height is
built from the active set in force, so a node outside it follows as a full
node (syncs, verifies commits, decides on the precommits it sees) and starts
proposing and voting at the epoch its stake puts it into the set.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from typing import Final

import msgspec

from aitbc.chain.block import BlockOutcome, apply_block, build_block, verify_block_time
from aitbc.chain.validators import get_commit_powers
from aitbc.consensus.machine import (
    CastVote,
    ConsensusState,
    Decide,
    Event,
    ProposalReceived,
    Propose,
    ReportEvidence,
    ScheduleTimeout,
    Start,
    TimeoutConfig,
    TimeoutFired,
    VoteReceived,
    new_height,
    step,
)
from aitbc.consensus.signing import get_resume_round
from aitbc.node.blocksync import (
    BAD_SYNC_BLOCK_PENALTY,
    SYNC_BACKLOG,
    SYNC_BATCH,
    commit_synced_blocks,
    get_sync_batch,
)
from aitbc.node.byzantine import Byzantine
from aitbc.node.config import NodeSettings
from aitbc.node.p2p import P2PNode, Peer, PeerMisbehaved
from aitbc.node.p2p_messages import (
    Message,
    ProposalGossip,
    Status,
    SyncBlocks,
    SyncRequest,
    TxGossip,
    VoteGossip,
    encode_message,
    get_message_height,
    get_message_kind,
    message_key,
)
from aitbc.node.peerbook import P2PLimits
from aitbc.node.service import NodeService
from aitbc.node.signguard import DoubleSignRefused, SignGuard
from aitbc.node.txrelay import TxRelay
from aitbc.protocol.block import block_hash, get_block_tamper_problem
from aitbc.protocol.errors import InvalidBlock
from aitbc.protocol.vote import (
    CommitCertificate,
    Proposal,
    is_valid_proposal_signature,
    is_valid_vote_signature,
)

log = logging.getLogger("aitbc.node.bft")

BAD_SIGNATURE_PENALTY: Final = 50
TAMPERED_PENALTY: Final = 50
INVALID_PROPOSAL_PENALTY: Final = 20
STATUS_SECONDS: Final = 0.5
INBOX: Final = 10_000
"""Consensus messages waiting for the consensus task; more are dropped (gossip repeats what matters)."""


class BftDriver:
    def __init__(self, node: NodeService, settings: NodeSettings) -> None:
        self.node = node
        self.key = node.key
        self.guard = SignGuard(settings.sign_state_path, node.key)
        self.byzantine = Byzantine(settings.byzantine_path if settings.test_byzantine else None, node.key)
        self.max_block_txs = settings.bft_max_block_txs
        self.max_clock_drift_ms = settings.max_clock_drift_ms
        self.timeouts = TimeoutConfig(
            propose_ms=settings.timeout_propose_ms,
            prevote_ms=settings.timeout_vote_ms,
            precommit_ms=settings.timeout_vote_ms,
            delta_ms=settings.timeout_delta_ms,
        )
        self.p2p = P2PNode(
            chain_id=node.chain_id,
            genesis_hash=node.genesis_hash,
            key=node.key,
            host=settings.host,
            port=settings.p2p_port,
            peers=settings.peers,
            handler=self.on_message,
            on_connect=self._on_connect,
            block_path=settings.p2p_block_path,
            metrics=node.metrics,
            limits=settings.p2p_limits,
            protect=lambda address: address in self.machine.powers,
        )
        self.limits: P2PLimits = self.p2p.limits
        self.metrics = node.metrics
        self.height_started = time.monotonic()
        """When the current height's consensus started (commit latency)."""
        self.machine: ConsensusState = self._fresh_machine()
        self.outcomes: dict[str, BlockOutcome] = {}
        self.own: list[Message] = []
        """Our signed proposal and votes of the current height (sent again to peers that missed them)."""
        self.future: list[tuple[Peer, Message, int]] = []
        """Verified proposals and votes of coming heights, with their size (bounded per peer and in total)."""
        self.future_bytes: dict[str, int] = {}
        self.events: deque[Event] = deque()
        self.lock = asyncio.Lock()
        self.timers: list[asyncio.TimerHandle] = []
        self._sync_asked: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.inbox: asyncio.Queue[tuple[Peer, Message]] = asyncio.Queue(INBOX)
        self.inbox_dropped = 0
        self.txs = TxRelay(node, self.p2p)

    def _fresh_machine(self) -> ConsensusState:
        powers = self.node.get_validator_powers()
        me = self.key.address if self.key.address in powers else None
        height = self.node.head.height + 1
        last = self.guard.last
        lock = (last.locked_hash, last.locked_round) if last is not None and last.height == height else None
        return new_height(
            self.node.chain_id,
            height,
            powers,
            me,
            self.timeouts,
            start_round=get_resume_round(last, height),
            lock=lock,
        )

    # -- lifecycle ----------------------------------------------------------
    async def start(self, sock: socket.socket | None = None) -> None:
        await self.p2p.start(sock)
        self._tasks = [
            asyncio.create_task(self._status_loop()),
            asyncio.create_task(self.txs.flush_loop()),
            asyncio.create_task(self._inbox_loop()),
        ]
        self._enter_height()

    async def stop(self) -> None:
        for timer in self.timers:
            timer.cancel()
        async with self.lock:  # let a commit in flight finish, then stop the tasks
            for task in self._tasks:
                task.cancel()
        await self.p2p.stop()

    def _enter_height(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers = []
        self.machine = self._fresh_machine()
        self._observe_machine()
        self.outcomes = {}
        self.own = []
        head = self.node.head
        block_time = self.node.params.block_time_ms
        # never longer than one block time, whatever the head claims its time is
        wait_ms = min(block_time, max(0, head.time_ms + block_time - int(time.time() * 1000)))
        if head.height == 0:
            wait_ms = 0
        self._later(wait_ms, Start())
        pending, self.future, self.future_bytes = self.future, [], {}
        for peer, message, size in pending:
            height = get_message_height(message)
            if height < self.machine.height or peer.closed:
                continue
            if height > self.machine.height:
                self._keep_future(peer, message, size)
                continue
            try:
                self._accept(peer, message)
            except PeerMisbehaved as exc:
                self.p2p.penalize(peer, exc.penalty, str(exc))
        self.metrics.p2p_future_bytes.set(sum(self.future_bytes.values()))

    def _later(self, delay_ms: int, event: Event) -> None:
        loop = asyncio.get_running_loop()
        self.timers.append(loop.call_later(delay_ms / 1000, lambda: loop.create_task(self._feed_now(event))))

    async def _feed_now(self, event: Event) -> None:
        async with self.lock:
            self.events.append(event)
            await self._drain()

    # -- the machine ------------------------------------------------------------
    async def _drain(self) -> None:
        """Run queued events through the machine and carry out the actions (lock held)."""
        while self.events:
            event = self.events.popleft()
            if isinstance(event, Start):
                self.height_started = time.monotonic()
            self.machine, actions = step(self.machine, event)
            self._observe_machine()
            for action in actions:
                if isinstance(action, Decide):
                    await self._commit(action)
                    break
                if isinstance(action, CastVote):
                    self._cast(action)
                elif isinstance(action, Propose):
                    self._propose(action)
                elif isinstance(action, ScheduleTimeout):
                    self._later(action.duration_ms, TimeoutFired(action.height, action.round, action.step))
                elif isinstance(action, ReportEvidence):
                    await self._report(action)

    def _observe_machine(self) -> None:
        machine, metrics = self.machine, self.metrics
        metrics.consensus_height.set(machine.height)
        metrics.consensus_round.set(machine.round)
        metrics.consensus_step.set(int(machine.step))
        metrics.consensus_is_validator.set(1 if machine.me is not None else 0)

    def _cast(self, action: CastVote) -> None:
        try:
            vote = self.guard.sign_vote(action.vote)
        except DoubleSignRefused as exc:
            log.error("refused to double-sign", extra={"error": exc.message})
            return
        message = VoteGossip(vote)
        self.p2p.is_new(message_key(message))
        self.own.append(message)
        self.p2p.broadcast(message)
        twin = self.byzantine.twin_vote(vote)
        if twin is not None:
            self.p2p.broadcast(twin)
        self.events.append(VoteReceived(vote))

    def _propose(self, action: Propose) -> None:
        node = self.node
        outcome = self.outcomes.get(action.reuse_hash or "")
        if outcome is None:
            max_txs = min(node.params.max_block_txs, self.max_block_txs)
            candidates = node.mempool.reap(max_txs, node.params.max_block_bytes)
            outcome = build_block(
                node.state,
                node.head,
                candidates,
                self.key,
                self.byzantine.block_time(int(time.time() * 1000)),
                node.genesis.params,
                last_commit=self.byzantine.last_commit(self._last_commit()),
                is_known_signature=node.known_signatures,
            )
            self.outcomes[outcome.hash] = outcome
        unsigned = Proposal(
            chain_id=node.chain_id,
            height=action.height,
            round=action.round,
            block_hash=outcome.hash,
            pol_round=action.pol_round,
            proposer=self.key.address,
        )
        try:
            proposal = self.guard.sign_proposal(unsigned)
        except DoubleSignRefused as exc:
            log.error("refused to sign a second proposal", extra={"error": exc.message})
            return
        message = ProposalGossip(proposal, outcome.block)
        self.p2p.is_new(message_key(message))
        self.own.append(message)
        self.p2p.broadcast(message)
        self.events.append(ProposalReceived(proposal, True))

    def _last_commit(self) -> CommitCertificate | None:
        """The precommits we hold for our head (every one: the proposer bonus grows with the power included),
        limited to the set that decided the head."""
        cert = self.node.view.commit_by_height(self.node.head.height)
        if cert is None:
            return None
        node = self.node
        powers = get_commit_powers(node.state.staking, node.genesis.authorities, node.params.staking)
        return msgspec.structs.replace(cert, signatures=[s for s in cert.signatures if s.validator in powers])

    async def _commit(self, decide: Decide) -> None:
        outcome = self.outcomes[decide.block_hash]
        await self.node.commit_outcome(outcome, decide.certificate)
        self.metrics.consensus_rounds.observe(decide.round + 1)
        self.metrics.consensus_commit_latency.observe(time.monotonic() - self.height_started)
        log.info(
            "committed block",
            extra={"height": decide.height, "round": decide.round, "txs": len(outcome.included)},
        )
        self.events.clear()
        self._enter_height()

    async def _report(self, action: ReportEvidence) -> None:
        self.metrics.consensus_evidence.inc()
        result = await self.node.submit_evidence(action.evidence)
        log.warning(
            "double vote seen; evidence submitted",
            extra={"offender": action.evidence.vote_a.validator, "error": result.error and result.error.reason},
        )

    # -- p2p --------------------------------------------------------------------
    def _on_connect(self, peer: Peer) -> None:
        self.p2p.send(peer, Status(self.machine.height, self.machine.round))

    async def on_message(self, peer: Peer, message: Message) -> None:
        """Called from a peer's read loop: txs are admitted here, consensus messages are queued for the one
        consensus task (a read loop is cancelled when its connection closes; a commit must never be)."""
        if isinstance(message, TxGossip):
            await self.txs.on_txs(peer, message.txs)
            return
        if isinstance(message, Status):
            await self._on_status(peer, message)
            return
        if isinstance(message, SyncRequest):
            self._serve_sync(peer, message.from_height)
            return
        try:
            self.inbox.put_nowait((peer, message))
        except asyncio.QueueFull:
            self.inbox_dropped += 1
            self.metrics.p2p_dropped.labels(get_message_kind(message), "inbox_full").inc()

    async def _inbox_loop(self) -> None:
        while True:
            peer, message = await self.inbox.get()
            try:
                await self._handle(peer, message)
            except PeerMisbehaved as exc:
                self.p2p.penalize(peer, exc.penalty, str(exc))
            except Exception:
                log.exception("consensus message handling failed", extra={"peer": peer.address})

    async def _handle(self, peer: Peer, message: Message) -> None:
        async with self.lock:
            if isinstance(message, SyncBlocks):
                await self._on_sync(peer, message)
            elif isinstance(message, ProposalGossip | VoteGossip):
                if not self.p2p.is_new(message_key(message)):
                    self.metrics.p2p_dropped.labels(get_message_kind(message), "duplicate").inc()
                    return
                height = get_message_height(message)
                if height > self.machine.height:
                    self._buffer_future(peer, message)
                    self._ask_sync(peer)
                    return
                if height < self.machine.height:
                    return
                self._accept(peer, message)
            await self._drain()

    def _buffer_future(self, peer: Peer, message: Message) -> None:
        """Keep a message of a coming height for when we get there: only if it verifies as far as it can
        now (signatures, the block its proposal names), is not too far ahead, and fits the byte budgets."""
        if get_message_height(message) > self.machine.height + self.limits.future_heights:
            self.metrics.p2p_dropped.labels(get_message_kind(message), "future_too_far").inc()
            return
        if isinstance(message, VoteGossip):
            if not is_valid_vote_signature(message.vote):
                raise PeerMisbehaved(BAD_SIGNATURE_PENALTY, "future vote signature does not verify")
            signer = message.vote.validator
        elif isinstance(message, ProposalGossip):
            tampered_copy = self.byzantine.tampered(message)
            if tampered_copy is not None:
                self.p2p.broadcast(tampered_copy, exclude=peer)
            self._check_proposal_copy(message)
            signer = message.proposal.proposer
        else:
            return
        if signer not in self.machine.powers:  # the set rarely changes; its own node sends it again
            self.metrics.p2p_dropped.labels(get_message_kind(message), "future_unknown_signer").inc()
            return
        self._keep_future(peer, message, len(encode_message(message)))
        self.metrics.p2p_future_bytes.set(sum(self.future_bytes.values()))

    def _keep_future(self, peer: Peer, message: Message, size: int) -> None:
        held = self.future_bytes.get(peer.address, 0)
        total = sum(self.future_bytes.values())
        if held + size > self.limits.future_bytes_per_peer or total + size > self.limits.future_bytes_total:
            self.metrics.p2p_dropped.labels(get_message_kind(message), "future_budget").inc()
            return
        self.future_bytes[peer.address] = held + size
        self.future.append((peer, message, size))

    def _check_proposal_copy(self, message: ProposalGossip) -> None:
        """The proposal is signed by its proposer and names the block it carries (else the sender is at fault)."""
        if not is_valid_proposal_signature(message.proposal):
            raise PeerMisbehaved(BAD_SIGNATURE_PENALTY, "proposal signature does not verify")
        if block_hash(message.block.header) != message.proposal.block_hash:
            raise PeerMisbehaved(TAMPERED_PENALTY, "proposal names another block than it carries")

    def _accept(self, peer: Peer | None, message: Message) -> None:
        """Check a proposal or vote of the current height, queue it for the machine, relay it if it verified."""
        if isinstance(message, VoteGossip):
            if not is_valid_vote_signature(message.vote):
                raise PeerMisbehaved(BAD_SIGNATURE_PENALTY, "vote signature does not verify")
            self.p2p.broadcast(message, exclude=peer)
            self.events.append(VoteReceived(message.vote))
        elif isinstance(message, ProposalGossip):
            self._check_proposal_copy(message)
            problem = self._check_block(message)
            if problem is None:
                self.p2p.broadcast(message, exclude=peer)
                self.events.append(ProposalReceived(message.proposal, True))
                return
            tampered = get_block_tamper_problem(message.block)
            if tampered is not None:
                # an altered copy: the relay is to blame and the genuine proposal may still come
                raise PeerMisbehaved(TAMPERED_PENALTY, f"tampered proposal: {tampered}")
            self.events.append(ProposalReceived(message.proposal, False))
            raise PeerMisbehaved(INVALID_PROPOSAL_PENALTY, f"invalid proposal: {problem}")

    def _check_block(self, message: ProposalGossip) -> str | None:
        """Why the proposed block breaks the chain's rules on our head, or None (valid; outcome kept)."""
        node, proposal = self.node, message.proposal
        if proposal.block_hash in self.outcomes:
            return None
        try:
            verify_block_time(message.block.header, int(time.time() * 1000), self.max_clock_drift_ms)
            outcome = apply_block(
                node.state,
                node.head,
                message.block,
                node.genesis.authorities,
                node.genesis.params,
                expected_proposer=proposal.proposer,
                is_known_valid=node.mempool.__contains__,
                is_known_signature=node.known_signatures,
            )
        except InvalidBlock as exc:
            log.warning("invalid proposal", extra={"proposer": proposal.proposer, "error": exc.message})
            return exc.message
        self.outcomes[outcome.hash] = outcome
        return None

    async def _on_status(self, peer: Peer, status: Status) -> None:
        if status.height < self.machine.height:
            self._serve_sync(peer, status.height)
        elif status.height > self.machine.height:
            self._ask_sync(peer)
        else:
            for message in self.own:
                self.p2p.send(peer, message)

    def _ask_sync(self, peer: Peer) -> None:
        now = time.monotonic()
        if self._sync_asked.get(peer.address, 0) > now:
            return
        self._sync_asked[peer.address] = now + 0.5
        self.p2p.send(peer, SyncRequest(self.machine.height))

    def _serve_sync(self, peer: Peer, from_height: int) -> None:
        if peer.backlog > SYNC_BACKLOG:  # it has not read what we sent; more would only fill its queue
            self.metrics.p2p_dropped.labels("sync_blocks", "peer_backlog").inc()
            return
        blocks = get_sync_batch(self.node, from_height)
        if blocks:
            self.p2p.send(peer, SyncBlocks(blocks))

    async def _on_sync(self, peer: Peer, message: SyncBlocks) -> None:
        applied, problem = await commit_synced_blocks(self.node, message, self.outcomes)
        if applied:
            self.outcomes = {}
            log.info("synced blocks", extra={"from": peer.address, "count": applied, "height": self.node.head.height})
            self.events.clear()
            self._enter_height()
            if len(message.blocks) >= SYNC_BATCH:
                self._sync_asked.pop(peer.address, None)
                self._ask_sync(peer)
        if problem is not None:
            raise PeerMisbehaved(BAD_SYNC_BLOCK_PENALTY, problem)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_SECONDS)
            self.p2p.broadcast(Status(self.machine.height, self.machine.round))
