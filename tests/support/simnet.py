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

A block also carries its time and the signers of its parent's commit
(``last_commit``); an honest node finds it valid only if the time is after the
parent's and at most ``MAX_DRIFT_MS`` ahead of its clock, and the signers hold
more than 2/3 of the power that decided the parent (the real chain's rules,
issue 13 items 1 and 2). Byzantine behaviours (one per node, ``BEHAVIOURS``):
``silent``, ``double-vote``, ``double-propose``, ``equivocate`` (both),
``future-time`` (its blocks are dated ten years ahead), ``drop-votes`` (its
blocks' ``last_commit`` holds only its own vote), ``tamper`` (it relays every
proposal it sees at once, with the block altered), ``flood`` (every gossip tick,
forged and far-future votes). ``run_scenario(seed)`` draws one of them for one
node of four, an asynchronous lossy network until GST, and checks safety before
and after GST and progress after it; ``python tests/support/simnet.py 0 200``
runs seeds 0..199 and prints any failing seed (replay it with one seed).
"""

from __future__ import annotations

import heapq
import random
import sys
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
MAX_DRIFT_MS = 5_000
FUTURE_HEIGHTS = 2
"""Messages further ahead than this are not buffered (the node syncs instead)."""
FUTURE_PER_SENDER = 200
SYNC_RETRY_MS = 2_000
BEHAVIOURS = (
    "silent",
    "double-vote",
    "double-propose",
    "equivocate",
    "future-time",
    "drop-votes",
    "tamper",
    "flood",
)
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
    time_ms: int = 0
    last_commit: tuple[str, ...] = ()
    """Signers of the parent's commit the proposer included."""

    @property
    def hash(self) -> str:
        keys = ",".join(compute_evidence_key(e) for e in self.evidence)
        signers = ",".join(self.last_commit)
        fields = f"{self.height}/{self.round}/{self.proposer}/{self.variant}/{keys}/{self.time_ms}/{signers}"
        return sha256(fields.encode()).hex()


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
    """None (honest) or one of ``BEHAVIOURS``."""
    staking: StakingState = field(default_factory=StakingState)
    machine: ConsensusState | None = None
    decided: dict[int, str] = field(default_factory=dict)
    chain: list[tuple[SimBlock, CommitCertificate]] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)
    """Own messages of the current height (re-gossiped on timeouts)."""
    future: list[tuple[int | None, Message]] = field(default_factory=list)
    """(sender, message) of coming heights, verified, at most ``FUTURE_PER_SENDER`` per sender."""
    evidence_pool: dict[str, DuplicateVoteEvidence] = field(default_factory=dict)
    blocks: dict[str, SimBlock] = field(default_factory=dict)
    sync_asked: dict[tuple[int, int], int] = field(default_factory=dict)
    """(peer, our height) -> when we last asked that peer for blocks (asked again after ``SYNC_RETRY_MS``,
    as the real node does on every status it hears)."""
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
        self.refused = 0
        """Messages honest nodes refused (bad signature, altered block, too far ahead, over budget)."""
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
            self._schedule(self.now, dst, (src, msg))
            return
        if self.partition is not None and self.partition(self.now, src, dst):
            return
        if self.now < self.gst_ms:
            if self.rng.random() < self.drop_rate:
                return
            delay = self.rng.randint(1, self.async_delay_ms)
        else:
            delay = self.rng.randint(1, self.sync_delay_ms)
        self._schedule(self.now + delay, dst, (src, msg))

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
        for sender, msg in pending:
            self._receive(node, msg, sender)

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
        if node.byzantine in ("double-vote", "equivocate"):
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
            block = SimBlock(
                action.height,
                action.round,
                node.key.address,
                0,
                evidence,
                time_ms=self._block_time(node),
                last_commit=self._last_commit(node),
            )
        variants = [block]
        if node.byzantine in ("double-propose", "equivocate"):
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

    def _block_time(self, node: SimNode) -> int:
        parent = node.chain[-1][0].time_ms if node.chain else 0
        if node.byzantine == "future-time":
            return self.now + 10 * 365 * 24 * 3600 * 1000
        return max(self.now, parent + 1)

    def _last_commit(self, node: SimNode) -> tuple[str, ...]:
        if not node.chain:
            return ()
        if node.byzantine == "drop-votes":
            return (node.key.address,)
        return tuple(sorted(sig.validator for sig in node.chain[-1][1].signatures))

    def _is_valid_block(self, node: SimNode, block: SimBlock) -> bool:
        if not all(get_evidence_problem(evidence, CHAIN) is None for evidence in block.evidence):
            return False
        parent_time = node.chain[-1][0].time_ms if node.chain else 0
        if block.time_ms <= parent_time or block.time_ms > self.now + MAX_DRIFT_MS:
            return False  # item 1: strictly after the parent, not ahead of our clock
        if block.height > 1:  # item 2: the parent's commit, > 2/3 of the power that decided it
            deciding = node.powers_by_height.get(block.height - 1, {})
            signers = set(block.last_commit)
            if len(signers) != len(block.last_commit) or not signers <= set(deciding):
                return False
            if 3 * sum(deciding[v] for v in signers) <= 2 * sum(deciding.values()):
                return False
        return True

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

    def _receive(self, node: SimNode, msg: Message, sender: int | None = None) -> None:
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
        if node.byzantine == "tamper" and isinstance(msg, ProposalMsg) and msg.proposal.proposer != node.key.address:
            self._relay_tampered(node, msg)
        if height > node.height:
            self._buffer_future(node, msg, sender)
            signer = self._sender_index(msg)
            asked = node.sync_asked.get((signer, node.height)) if signer is not None else None
            if signer is not None and (asked is None or self.now - asked >= SYNC_RETRY_MS):
                node.sync_asked[(signer, node.height)] = self.now
                self._send(node.index, signer, SyncRequest(node.index, node.height))
            return
        if height < node.height:
            return
        if isinstance(msg, ProposalMsg):
            if not is_valid_proposal_signature(msg.proposal) or msg.block.hash != msg.proposal.block_hash:
                self.refused += 1  # an altered copy: never reaches the machine; the genuine one still counts
                return
            valid = self._is_valid_block(node, msg.block)
            if valid:
                node.blocks[msg.block.hash] = msg.block
            self._feed(node, ProposalReceived(msg.proposal, valid))
        else:
            if not is_valid_vote_signature(msg.vote):
                self.refused += 1
                return
            self._feed(node, VoteReceived(msg.vote))

    def _buffer_future(self, node: SimNode, msg: ProposalMsg | VoteMsg, sender: int | None) -> None:
        """Item 5: only verified messages, not too far ahead, bounded per sender."""
        height = msg.proposal.height if isinstance(msg, ProposalMsg) else msg.vote.height
        valid = (
            is_valid_proposal_signature(msg.proposal) and msg.block.hash == msg.proposal.block_hash
            if isinstance(msg, ProposalMsg)
            else is_valid_vote_signature(msg.vote)
        )
        held = sum(1 for s, _ in node.future if s == sender)
        if not valid or height > node.height + FUTURE_HEIGHTS or held >= FUTURE_PER_SENDER:
            self.refused += 1
            return
        node.future.append((sender, msg))

    def _relay_tampered(self, node: SimNode, msg: ProposalMsg) -> None:
        """Byzantine ``tamper``: forward the proposal at once with its block altered (arriving first)."""
        altered = ProposalMsg(msg.proposal, SimBlock(**{**msg.block.__dict__, "variant": msg.block.variant + 7}))
        for other in self.nodes:
            if other.index != node.index:
                self._schedule(self.now + 1, other.index, (node.index, altered))

    def _flood(self, node: SimNode) -> None:
        """Byzantine ``flood``: forged votes for this height and signed votes far ahead, every tick."""
        assert node.machine is not None
        for i in range(20):
            forged = Vote(
                chain_id=CHAIN,
                height=node.height,
                round=0,
                kind="prevote",
                block_hash=sha256(f"flood/{i}".encode()).hex(),
                validator=self.nodes[(node.index + 1) % len(self.nodes)].key.address,
                signature="11" * 64,
            )
            ahead = sign_vote(
                Vote(
                    chain_id=CHAIN,
                    height=node.height + 50 + i,
                    round=0,
                    kind="prevote",
                    block_hash=sha256(f"ahead/{i}".encode()).hex(),
                    validator=node.key.address,
                ),
                node.key,
            )
            for other in self.nodes:
                if other.index != node.index:
                    self._send(node.index, other.index, VoteMsg(forged))
                    self._send(node.index, other.index, VoteMsg(ahead))

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
        if node.byzantine == "flood":
            self._flood(node)
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
                sender, message = item
                self._receive(node, message, sender)
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


def run_scenario(seed: int) -> str | None:
    """One seeded scenario, one byzantine validator of four: what went wrong, or None."""
    rng = random.Random(seed)
    behaviour = BEHAVIOURS[seed % len(BEHAVIOURS)]
    byzantine = (seed // len(BEHAVIOURS)) % 4
    gst = rng.randint(3_000, 15_000)
    net = SimNetwork(
        [10, 10, 10, 10],
        seed=seed,
        byzantine={byzantine: behaviour},
        gst_ms=gst,
        async_delay_ms=rng.randint(500, 3_000),
        drop_rate=rng.choice([0.0, 0.1, 0.3]),
    )
    try:
        net.run(until_ms=gst)
        net.assert_safety()
        reached = net.min_height()
        net.run(until_ms=gst + 400_000, until_height=reached + 4)
        net.assert_safety()
    except AssertionError as exc:
        return f"seed {seed} ({behaviour} at node {byzantine}): {exc}"
    if net.min_height() <= reached + 4:
        return f"seed {seed} ({behaviour} at node {byzantine}): no progress after GST (stuck at {net.min_height()})"
    return None


def main(argv: list[str]) -> int:
    start, count = (int(argv[1]), int(argv[2])) if len(argv) == 3 else (0, 200)
    failures = [f for seed in range(start, start + count) if (f := run_scenario(seed)) is not None]
    for failure in failures:
        print("FAILED", failure)
    print(f"{count - len(failures)} of {count} scenarios safe and live (seeds {start}..{start + count - 1})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
