"""A deterministic simulated network of consensus machines (virtual clock, seeded randomness).

Before ``gst_ms`` (global stabilization time) messages are delayed by up to
``async_delay_ms``, dropped with probability ``drop_rate`` and so reordered;
from then on every message arrives within ``sync_delay_ms``. Nodes gossip
again on every timeout (their own messages of the current height), and a node
that hears of a higher height syncs the decided blocks from that peer,
checking each commit certificate against the validator set of its height
(``verify_commit``), as the real node does. The "application" is the
staking ledger: decided blocks carry double-vote evidence, and committing it
slashes and jails the offender, which leaves the next height's validator set.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aitbc.chain.validators import (
    Bond,
    StakingParams,
    StakingState,
    compute_active_set,
    get_active_powers,
    is_punished,
    process_slash,
)
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
from aitbc.protocol.crypto import KeyPair, sha256
from aitbc.protocol.vote import (
    CommitCertificate,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    compute_evidence_key,
    get_evidence_problem,
    is_valid_proposal_signature,
    is_valid_vote_signature,
    sign_proposal,
    sign_vote,
    verify_commit,
)

CHAIN = "aitbc-sim"
STAKE_PER_POWER = 1_000
RULES = StakingParams(
    stake_per_power=STAKE_PER_POWER, min_self_stake=1, max_stakers=100, epoch_blocks=1_000_000, jail_blocks=1_000
)


@dataclass(frozen=True)
class SimBlock:
    height: int
    round: int
    proposer: str
    variant: int
    evidence: tuple[DuplicateVoteEvidence, ...]

    @property
    def hash(self) -> str:
        keys = ",".join(compute_evidence_key(e) for e in self.evidence)
        return sha256(f"{self.height}/{self.round}/{self.proposer}/{self.variant}/{keys}".encode()).hex()


@dataclass(frozen=True)
class ProposalMsg:
    proposal: Proposal
    block: SimBlock


@dataclass(frozen=True)
class VoteMsg:
    vote: Vote


@dataclass(frozen=True)
class SyncRequest:
    sender: int
    from_height: int


@dataclass(frozen=True)
class SyncResponse:
    blocks: tuple[tuple[SimBlock, CommitCertificate], ...]


Message = ProposalMsg | VoteMsg | SyncRequest | SyncResponse


@dataclass(frozen=True)
class GossipTick:
    """The gossip layer's periodic catch-up: resend this node's messages of its current height."""


@dataclass
class SimNode:
    index: int
    key: KeyPair
    byzantine: str | None = None
    """None (honest), "double-vote", "double-propose" or "silent"."""
    staking: StakingState = field(default_factory=StakingState)
    machine: ConsensusState | None = None
    decided: dict[int, str] = field(default_factory=dict)
    chain: list[tuple[SimBlock, CommitCertificate]] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)
    """Own messages of the current height (re-gossiped on timeouts)."""
    future: list[Message] = field(default_factory=list)
    evidence_pool: dict[str, DuplicateVoteEvidence] = field(default_factory=dict)
    blocks: dict[str, SimBlock] = field(default_factory=dict)
    sync_asked: set[tuple[int, int]] = field(default_factory=set)
    powers_by_height: dict[int, dict[str, int]] = field(default_factory=dict)

    @property
    def height(self) -> int:
        assert self.machine is not None
        return self.machine.height


class SimNetwork:
    def __init__(
        self,
        powers: list[int],
        *,
        seed: int,
        byzantine: dict[int, str] | None = None,
        gst_ms: int = 0,
        async_delay_ms: int = 3_000,
        drop_rate: float = 0.0,
        sync_delay_ms: int = 100,
        timeouts: TimeoutConfig | None = None,
        partition: Callable[[int, int, int], bool] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.now = 0
        self.gst_ms = gst_ms
        self.async_delay_ms = async_delay_ms
        self.drop_rate = drop_rate
        self.sync_delay_ms = sync_delay_ms
        self.partition = partition
        self.timeouts = timeouts or TimeoutConfig(propose_ms=1_000, prevote_ms=500, precommit_ms=500, delta_ms=500)
        self.queue: list[tuple[int, int, int, Any]] = []
        self.seq = 0
        self.delivered = 0
        keys = [KeyPair.from_seed(sha256(f"sim-{seed}-{i}".encode())) for i in range(len(powers))]
        bonds = sorted(
            (Bond(k.address, k.address, p * STAKE_PER_POWER) for k, p in zip(keys, powers, strict=True)),
            key=lambda b: (b.validator, b.delegator),
        )
        staking = StakingState(bonds=bonds)
        staking = StakingState(bonds=bonds, active=compute_active_set(staking, [], RULES, 0))
        byzantine = byzantine or {}
        self.nodes = [SimNode(i, k, byzantine.get(i), staking) for i, k in enumerate(keys)]
        self.gossip_ms = 1_000
        for node in self.nodes:
            self._enter_height(node, 1)
            self._schedule(self.gossip_ms, node.index, GossipTick())

    # -- plumbing ---------------------------------------------------------
    def honest(self) -> list[SimNode]:
        return [n for n in self.nodes if n.byzantine is None]

    def _schedule(self, at: int, dst: int, item: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, dst, item))

    def _send(self, src: int, dst: int, msg: Message) -> None:
        if src == dst:
            self._schedule(self.now, dst, msg)
            return
        if self.partition is not None and self.partition(self.now, src, dst):
            return
        if self.now < self.gst_ms:
            if self.rng.random() < self.drop_rate:
                return
            delay = self.rng.randint(1, self.async_delay_ms)
        else:
            delay = self.rng.randint(1, self.sync_delay_ms)
        self._schedule(self.now + delay, dst, msg)

    def _broadcast(self, node: SimNode, msg: Message, remember: bool = True) -> None:
        if remember:
            node.sent.append(msg)
        for other in self.nodes:
            self._send(node.index, other.index, msg)

    def _powers(self, node: SimNode) -> dict[str, int]:
        return get_active_powers(node.staking, [], RULES)

    def _enter_height(self, node: SimNode, height: int) -> None:
        powers = self._powers(node)
        node.powers_by_height[height] = powers
        me = node.key.address if node.key.address in powers else None
        node.machine = new_height(CHAIN, height, powers, me, self.timeouts)
        node.sent = []
        self._feed(node, Start())
        pending, node.future = node.future, []
        for msg in pending:
            self._receive(node, msg)

    # -- node behaviour -----------------------------------------------------
    def _feed(self, node: SimNode, event: Event) -> None:
        assert node.machine is not None
        node.machine, actions = step(node.machine, event)
        for action in actions:
            if isinstance(action, CastVote):
                self._cast(node, action.vote)
            elif isinstance(action, Propose):
                self._propose(node, action)
            elif isinstance(action, ScheduleTimeout):
                self._schedule(
                    self.now + action.duration_ms,
                    node.index,
                    TimeoutFired(action.height, action.round, action.step),
                )
            elif isinstance(action, Decide):
                self._commit(node, action)
                return  # the machine of the next height took over
            elif isinstance(action, ReportEvidence):
                node.evidence_pool[compute_evidence_key(action.evidence)] = action.evidence

    def _cast(self, node: SimNode, vote: Vote) -> None:
        if node.byzantine == "silent":
            return
        signed = sign_vote(vote, node.key)
        if node.byzantine == "double-vote":
            other_hash = sha256(f"fake/{vote.height}/{vote.round}".encode()).hex()
            twin = sign_vote(Vote(**{**_fields(vote), "block_hash": other_hash}), node.key)
            for other in self.nodes:
                self._send(node.index, other.index, VoteMsg(signed if other.index % 2 == 0 else twin))
            node.sent.extend([VoteMsg(signed), VoteMsg(twin)])
            return
        self._broadcast(node, VoteMsg(signed))

    def _propose(self, node: SimNode, action: Propose) -> None:
        if node.byzantine == "silent":
            return
        assert node.machine is not None
        if action.reuse_hash is not None and action.reuse_hash in node.blocks:
            block = node.blocks[action.reuse_hash]
        else:
            evidence = tuple(
                e
                for _, e in sorted(node.evidence_pool.items())
                if not is_punished(node.staking, e.vote_a.validator, e.vote_a.height)
            )
            block = SimBlock(action.height, action.round, node.key.address, 0, evidence)
        variants = [block]
        if node.byzantine == "double-propose":
            variants.append(SimBlock(block.height, block.round, block.proposer, 1, block.evidence))
        for i, variant in enumerate(variants):
            proposal = sign_proposal(
                Proposal(
                    chain_id=CHAIN,
                    height=action.height,
                    round=action.round,
                    block_hash=variant.hash,
                    pol_round=action.pol_round,
                    proposer=node.key.address,
                ),
                node.key,
            )
            msg = ProposalMsg(proposal, variant)
            node.sent.append(msg)
            for other in self.nodes:
                if len(variants) == 1 or other.index % 2 == i:
                    self._send(node.index, other.index, msg)

    def _is_valid_block(self, node: SimNode, block: SimBlock) -> bool:
        return all(get_evidence_problem(evidence, CHAIN) is None for evidence in block.evidence)

    def _apply(self, node: SimNode, block: SimBlock, cert: CommitCertificate) -> None:
        for evidence in block.evidence:
            offender = evidence.vote_a.validator
            if not is_punished(node.staking, offender, evidence.vote_a.height):
                node.staking, _ = process_slash(node.staking, offender, block.height, [], RULES)
        node.decided[block.height] = block.hash
        node.chain.append((block, cert))

    def _commit(self, node: SimNode, decide: Decide) -> None:
        block = node.blocks[decide.block_hash]
        self._apply(node, block, decide.certificate)
        self._enter_height(node, decide.height + 1)

    def _receive(self, node: SimNode, msg: Message) -> None:
        assert node.machine is not None
        if isinstance(msg, SyncRequest):
            blocks = tuple(node.chain[msg.from_height - 1 :])
            if blocks:
                self._send(node.index, msg.sender, SyncResponse(blocks))
            return
        if isinstance(msg, SyncResponse):
            for block, cert in msg.blocks:
                if block.height != node.height:
                    continue
                verify_commit(cert, CHAIN, block.height, block.hash, node.machine.powers)  # raises if forged
                node.blocks[block.hash] = block
                self._apply(node, block, cert)
                self._enter_height(node, block.height + 1)
            return
        height = msg.proposal.height if isinstance(msg, ProposalMsg) else msg.vote.height
        if height > node.height:
            if len(node.future) < 1_000:
                node.future.append(msg)
            sender = self._sender_index(msg)
            if sender is not None and (sender, node.height) not in node.sync_asked and height > node.height + 0:
                node.sync_asked.add((sender, node.height))
                self._send(node.index, sender, SyncRequest(node.index, node.height))
            return
        if height < node.height:
            return
        if isinstance(msg, ProposalMsg):
            if not is_valid_proposal_signature(msg.proposal) or msg.block.hash != msg.proposal.block_hash:
                return
            valid = self._is_valid_block(node, msg.block)
            if valid:
                node.blocks[msg.block.hash] = msg.block
            self._feed(node, ProposalReceived(msg.proposal, valid))
        else:
            if not is_valid_vote_signature(msg.vote):
                return
            self._feed(node, VoteReceived(msg.vote))

    def _sender_index(self, msg: Message) -> int | None:
        address = msg.proposal.proposer if isinstance(msg, ProposalMsg) else msg.vote.validator  # type: ignore[union-attr]
        for node in self.nodes:
            if node.key.address == address:
                return node.index
        return None

    def _on_gossip(self, node: SimNode) -> None:
        """Resend own messages and relay every vote held for the current height (Tendermint's gossip
        does the same), so what was lost before GST gets through."""
        assert node.machine is not None
        relayed: list[Message] = [m for m in node.sent if isinstance(m, ProposalMsg)]
        relayed += [VoteMsg(v) for cast in node.machine.votes.values() for votes in cast.values() for v in votes]
        for msg in relayed:
            for other in self.nodes:
                if other.index != node.index:
                    self._send(node.index, other.index, msg)
        if self.queue:  # stop ticking once nothing else is left to do
            self._schedule(self.now + self.gossip_ms, node.index, GossipTick())

    # -- driving ------------------------------------------------------------
    def run(self, until_ms: int, until_height: int | None = None) -> None:
        while self.queue and self.queue[0][0] <= until_ms:
            at, _, dst, item = heapq.heappop(self.queue)
            self.now = at
            node = self.nodes[dst]
            if isinstance(item, TimeoutFired):
                if item.height == node.height:
                    self._feed(node, item)
            elif isinstance(item, GossipTick):
                self._on_gossip(node)
            else:
                self.delivered += 1
                self._receive(node, item)
            if until_height is not None and all(n.height > until_height for n in self.honest()):
                return

    def assert_safety(self) -> None:
        """No two honest nodes decided different blocks at any height."""
        by_height: dict[int, set[str]] = {}
        for node in self.honest():
            for height, block_hash in node.decided.items():
                by_height.setdefault(height, set()).add(block_hash)
        forks = {h: hashes for h, hashes in by_height.items() if len(hashes) > 1}
        assert not forks, f"fork at heights {sorted(forks)}"

    def min_height(self) -> int:
        return min(n.height for n in self.honest())


def _fields(vote: Vote) -> dict[str, Any]:
    return {f: getattr(vote, f) for f in vote.__struct_fields__ if f != "signature"}
