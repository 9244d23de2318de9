"""The node's shell around the pure core: admission, block production, commit, queries.

Everything here runs on the event loop thread except the Ed25519 checks of
submitted txs (worker processes, see ``aitbc.node.verify``) and the block
commit (one writer thread, so SQLite's fsync never stalls the RPC). The
committed state is swapped in only after the block is durable, so every read
sees exactly one committed height: the in-memory state and the head move
together in ``_apply_committed``, and stored blocks, txs and events are read
through a ``HeadView`` bounded by that head (the store's reader sees a block
as soon as the writer thread commits it, a moment earlier).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgspec

from aitbc.chain.block import BlockOutcome, build_block
from aitbc.chain.entries import Account
from aitbc.chain.genesis import Genesis, compute_genesis_hash, genesis_block, genesis_state
from aitbc.chain.gov_types import compute_live_params
from aitbc.chain.params import ChainParams
from aitbc.chain.state import ChainState, commit_delta
from aitbc.chain.validators import get_active_powers, get_bond, get_bonded, get_jailed_until, is_jailed
from aitbc.mempool import Mempool
from aitbc.node.gov_events import governance_events
from aitbc.node.json_views import job_event_json, proof_to_json
from aitbc.node.known_signatures import KnownSignatures, get_inner_checks
from aitbc.node.metrics import NodeMetrics
from aitbc.node.store import HeadView, NodeStore
from aitbc.node.verify import SignatureVerifier
from aitbc.protocol.block import Block, BlockHeader, block_hash
from aitbc.protocol.codec import struct_tag
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import InvalidTx, StorageError, TxRejection
from aitbc.protocol.tx import (
    ReportEvidence,
    Tx,
    TxSignatureCheck,
    VerifiedTx,
    complete_tx_check,
    get_tx_checks,
    prepare_tx_check,
    sign_tx,
    tx_from_json_obj,
    tx_to_json_obj,
)
from aitbc.protocol.vote import CommitCertificate, DuplicateVoteEvidence

log = logging.getLogger("aitbc.node")

EventListener = Callable[[str, dict[str, Any]], None]
TopicFilter = Callable[[str], bool]

_REJECTED_MEMORY = 100_000


@dataclass(frozen=True, slots=True)
class SubmitResult:
    tx_hash: str | None
    error: InvalidTx | None = None


def header_to_json(header: BlockHeader, hash_: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(header)
    body["hash"] = hash_ or block_hash(header)
    body["time"] = header.time_ms / 1000
    return body


class NodeService:
    def __init__(self, genesis: Genesis, store: NodeStore, key: KeyPair, metrics: NodeMetrics) -> None:
        if len(genesis.authorities) <= 1 and key.address not in genesis.authorities:
            # A PoA chain has no p2p to follow: its only node is the authority. A BFT node with another key
            # is a full node (syncs and follows) and votes once its stake puts it into the active set.
            raise StorageError(f"validator key {key.address} is not the genesis authority of this PoA chain")
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.genesis_hash = compute_genesis_hash(genesis)
        self.store = store
        self.key = key
        self.metrics = metrics
        self.state, self.head = self._load_or_init()
        self.head_hash = block_hash(self.head)
        self.view: HeadView = store.view(self.head.height)
        """Every client read of blocks, txs and events goes through this view of the head (``HeadView``)."""
        self.mempool = Mempool(self.chain_id, self.params)
        self._rejected: OrderedDict[str, str] = OrderedDict()
        self._listeners: list[tuple[EventListener, TopicFilter | None]] = []
        self.verifier = SignatureVerifier(workers=2)
        self.known_signatures = KnownSignatures()
        """Receipt signatures inside settle batches, checked in bulk at admission (``known_signatures``)."""
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
        self._last_block_monotonic: float | None = None
        self._event_seq = store.last_event_seq()
        self.on_admitted: Callable[[list[VerifiedTx]], None] | None = None
        """Called with the txs each submission admitted (the p2p layer gossips them)."""
        self.consensus = "bft" if len(genesis.authorities) > 1 else "poa"
        metrics.height.set(self.head.height)

    @property
    def params(self) -> ChainParams:
        """The parameters in force at the head: genesis's with every enacted governance change (never a
        copy taken at start-up; the mempool is handed the new set whenever a block changes it)."""
        return compute_live_params(self.state.governance, self.genesis.params)

    def _load_or_init(self) -> tuple[ChainState, BlockHeader]:
        if self.store.is_empty():
            state = genesis_state(self.genesis)
            block0 = genesis_block(self.genesis, state)
            self.store.initialize(
                self.genesis_hash, self.chain_id, block0, block_hash(block0.header), dict(state.accounts)
            )
            log.info("initialized chain from genesis", extra={"chain_id": self.chain_id})
            return state, block0.header
        self.store.check_identity(self.genesis_hash)
        head = self.store.head_header()
        state = ChainState.from_accounts(
            self.store.load_accounts(),
            self.store.load_escrows(),
            self.store.load_multisigs(),
            self.store.load_staking(),
            tuple(self.genesis.authorities),
            self.store.load_deposits(),
            self.store.load_paid_jobs(),
            self.store.load_governance(),
            self.store.load_audits(),
        )
        if state.state_root != head.state_root:
            raise StorageError(f"{self.store.path}: stored accounts do not match the state root of block {head.height}")
        log.info("resumed chain", extra={"height": head.height, "chain_id": self.chain_id})
        return state, head

    def close(self) -> None:
        self.verifier.close()
        self._writer.shutdown(wait=True)
        self.store.close()

    # -- events ----------------------------------------------------------
    def add_listener(self, listener: EventListener, wants: TopicFilter | None = None) -> None:
        """Call ``listener(topic, payload)`` on events; ``wants(topic)`` False skips building the payload."""
        self._listeners.append((listener, wants))

    def _wanted(self, topic: str) -> bool:
        return any(wants is None or wants(topic) for _, wants in self._listeners)

    def _emit(self, topic: str, payload: dict[str, Any]) -> None:
        for listener, wants in self._listeners:
            if wants is None or wants(topic):
                listener(topic, payload)

    # -- admission -------------------------------------------------------
    async def submit(self, raw_txs: Sequence[Any]) -> list[SubmitResult]:
        """Parse, verify (in parallel) and admit txs; one result per input, in order."""
        parsed: list[Tx | InvalidTx] = []
        for raw in raw_txs:
            try:
                parsed.append(tx_from_json_obj(raw))
            except InvalidTx as exc:
                parsed.append(exc)
        return await self.submit_txs(parsed)

    async def submit_txs(self, txs: Sequence[Tx | InvalidTx]) -> list[SubmitResult]:
        """Verify (in parallel) and admit parsed txs; an ``InvalidTx`` item (it did not parse) is
        answered as is. One result per item, in order."""
        results: list[SubmitResult | None] = [None] * len(txs)
        prepared: list[tuple[int, TxSignatureCheck]] = []
        for i, tx in enumerate(txs):
            if isinstance(tx, InvalidTx):
                results[i] = SubmitResult(None, tx)
                continue
            try:
                prepared.append((i, prepare_tx_check(tx)))
            except InvalidTx as exc:
                results[i] = SubmitResult(None, exc)
                self.metrics.rejected_txs.labels(exc.reason).inc()
        if any(p.extra for _, p in prepared):  # multisig spends: every approval must verify
            flags = await self.verifier.check([c for _, p in prepared for c in get_tx_checks(p)])
            valid, pos = [], 0
            for _, p in prepared:
                valid.append(all(flags[pos : pos + 1 + len(p.extra)]))
                pos += 1 + len(p.extra)
        else:
            valid = await self.verifier.check([p.check for _, p in prepared])
        inner = get_inner_checks([p.verified.tx for (_, p), ok in zip(prepared, valid, strict=True) if ok], self.state)
        if inner:  # settle batches: every receipt signature in one bulk run, remembered for the block
            self.known_signatures.remember(inner, await self.verifier.check(inner))
        admitted: list[VerifiedTx] = []
        state, mempool, rejected = self.state, self.mempool, self._rejected
        for (i, p), signature_valid in zip(prepared, valid, strict=True):
            try:
                vtx = complete_tx_check(p, signature_valid)
            except InvalidTx as exc:
                results[i] = SubmitResult(None, exc)
                self.metrics.rejected_txs.labels(exc.reason).inc()
                continue
            try:
                displaced = mempool.admit(vtx, state.get_account(vtx.tx.sender))
            except InvalidTx as exc:
                results[i] = SubmitResult(vtx.hash, exc)
                self.metrics.rejected_txs.labels(exc.reason).inc()
                continue
            for old in displaced:
                self._remember_rejected(old.hash, TxRejection.REPLACEMENT_UNDERPRICED.value)
            if rejected:
                rejected.pop(vtx.hash, None)
            admitted.append(vtx)
            results[i] = SubmitResult(vtx.hash)
        self.metrics.mempool_size.set(len(mempool))
        if admitted and self.on_admitted is not None:
            self.on_admitted(admitted)
        if admitted and self._wanted("new_txs"):
            self._emit("new_txs", {"txs": [_tx_summary(v) for v in admitted]})
        return [r for r in results if r is not None]

    async def submit_evidence(self, evidence: DuplicateVoteEvidence) -> SubmitResult:
        """Report a double vote this node saw: a ``report_evidence`` tx signed with the node's key, at its next
        nonce, paying the minimum fee, admitted like any submitted tx (and gossiped from there)."""
        account = self.state.get_account(self.key.address)
        unsigned = ReportEvidence(
            chain_id=self.chain_id,
            sender=self.key.address,
            nonce=self.mempool.pending_nonce(self.key.address, account.nonce),
            fee=self.params.min_fee,
            evidence=evidence,
        )
        return (await self.submit_txs([sign_tx(unsigned, self.key)]))[0]

    def _remember_rejected(self, tx_hash: str, reason: str) -> None:
        self._rejected[tx_hash] = reason
        if len(self._rejected) > _REJECTED_MEMORY:
            self._rejected.popitem(last=False)

    # -- block production -------------------------------------------------
    async def produce_block(self, now_ms: int | None = None) -> BlockOutcome:
        started = time.perf_counter()
        candidates = self.mempool.reap(self.params.max_block_txs, self.params.max_block_bytes)
        # Built here, not on the writer thread: measured, that gave the same throughput but slower
        # blocks (the writer thread gets the GIL only half the time while intake is busy); a
        # 5,000-tx block holds the loop ~50 ms. The SQLite commit (and its fsync) runs on the writer.
        outcome = build_block(
            self.state,
            self.head,
            candidates,
            self.key,
            now_ms or int(time.time() * 1000),
            self.genesis.params,
            is_known_signature=self.known_signatures,
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self.store.commit_block, outcome)
        self._apply_committed(outcome)
        self.metrics.block_build_seconds.observe(time.perf_counter() - started)
        return outcome

    async def commit_outcome(self, outcome: BlockOutcome, commit: CommitCertificate) -> None:
        """Make a block the BFT consensus decided (or block sync verified) durable, then the new head."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self.store.commit_block, outcome, commit)
        self._apply_committed(outcome)

    def get_validator_powers(self) -> dict[str, int]:
        """The active set in force for the next block (``aitbc.chain.validators``)."""
        return get_active_powers(self.state.staking, self.genesis.authorities, self.params.staking)

    def validators_json(self) -> dict[str, Any]:
        staking, authorities, rules = self.state.staking, self.genesis.authorities, self.params.staking
        powers = self.get_validator_powers()
        candidates = sorted(set(authorities) | self.state.bonds.get_validators() | set(powers))
        height = self.head.height
        return {
            "height": height,
            "consensus": self.consensus,
            "total_power": sum(powers.values()),
            "validators": [
                {
                    "address": v,
                    "authority": v in authorities,
                    "power": powers.get(v, 0),
                    "bonded": get_bonded(staking, v, self.state.bonds),
                    "self_stake": get_bond(staking, v, v, self.state.bonds),
                    "status": "jailed"
                    if is_jailed(staking, v, height + 1)
                    else ("active" if v in powers else "candidate"),
                    "jailed_until": get_jailed_until(staking, v),
                }
                for v in candidates
            ],
            "unbonding": [msgspec.to_builtins(u) for u in staking.unbonding],
            "minted": staking.minted,
            "burned": staking.burned,
            "params": msgspec.to_builtins(rules),
        }

    def _apply_committed(self, outcome: BlockOutcome) -> None:
        governance_before = self.state.governance
        commit_delta(self.state, outcome.delta, outcome.tree)
        if outcome.delta.governance is not None:
            self.mempool.params = self.params
        self.head = outcome.block.header
        self.head_hash = outcome.hash
        self.view = self.store.view(self.head.height)  # reads see the new block from now on, not before
        dropped = [vtx for vtx, _ in outcome.dropped]
        for vtx, exc in outcome.dropped:
            self._remember_rejected(vtx.hash, exc.reason)
        for vtx in self.mempool.update(outcome.included, dropped, self.state.get_account):
            self._remember_rejected(vtx.hash, TxRejection.NONCE_TOO_LOW.value)
        now = time.monotonic()
        interval = None if self._last_block_monotonic is None else now - self._last_block_monotonic
        self._last_block_monotonic = now
        self.metrics.on_block(self.head.height, len(outcome.included), interval, len(self.mempool))
        self._emit("new_blocks", header_to_json(self.head, self.head_hash))
        for event in outcome.delta.events:
            self._event_seq += 1
            self._emit("job_updates", job_event_json(self._event_seq, self.head.height, self.head_hash, event))
        if outcome.delta.governance is not None:
            for change in governance_events(governance_before, self.state.governance, self.head.height):
                self._emit("governance", change)

    # -- queries ---------------------------------------------------------
    def job_json(self, job_id: str) -> dict[str, Any] | None:
        """The escrow of a job and the txs that opened and closed it (None if it has none)."""
        escrow = self.state.get_escrow(job_id)
        if escrow is None:
            return None
        events = self.view.job_events(job_id)
        return {
            "job_id": job_id,
            "escrow": msgspec.to_builtins(escrow),
            "events": [job_event_json(seq, height, None, ev) for seq, height, ev in events],
            "height": self.head.height,
        }

    def deposit_json(self, deposit_id: str) -> dict[str, Any] | None:
        """A deposit with its Merkle proof against the head's state root (None if there is none)."""
        deposit = self.state.get_deposit(deposit_id)
        if deposit is None:
            return None
        return {
            "deposit": msgspec.to_builtins(deposit),
            "height": self.head.height,
            "block_hash": self.head_hash,
            "state_root": self.head.state_root,
            "proof": proof_to_json(self.state.prove_deposit(deposit_id)),
        }

    def paid_job_json(self, job_id: str) -> dict[str, Any]:
        """A deposit job's payment record (null once forgotten, or never paid), with its proof."""
        paid = self.state.get_paid(job_id)
        return {
            "job_id": job_id,
            "paid": None if paid is None else msgspec.to_builtins(paid),
            "height": self.head.height,
            "block_hash": self.head_hash,
            "state_root": self.head.state_root,
            "proof": proof_to_json(self.state.prove_paid(job_id)),
        }

    def job_proof_json(self, job_id: str) -> dict[str, Any]:
        escrow = self.state.get_escrow(job_id)
        proof = self.state.prove_escrow(job_id)
        return {
            "job_id": job_id,
            "escrow": None if escrow is None else msgspec.to_builtins(escrow),
            "height": self.head.height,
            "block_hash": self.head_hash,
            "state_root": self.head.state_root,
            "proof": proof_to_json(proof),
        }

    def job_events_after(self, after_seq: int, address: str | None, limit: int) -> dict[str, Any]:
        """A page of job events after ``after_seq`` (a follower's cursor), with the seq to ask from next."""
        events = self.view.job_events_after(after_seq, address, limit)
        return {
            "events": [job_event_json(seq, h, None, ev) for seq, h, ev in events],
            "next_seq": events[-1][0] if events else after_seq,
            "last_seq": self._event_seq,
            "height": self.head.height,
        }

    def job_events_since(self, height: int) -> list[dict[str, Any]]:
        return [job_event_json(seq, h, None, ev) for seq, h, ev in self.view.job_events_since(height)]

    def job_events_page(self, from_height: int, after_seq: int, limit: int) -> list[dict[str, Any]]:
        """Stored job events at ``from_height`` or later with ``seq > after_seq`` (a WebSocket resume)."""
        events = self.view.job_events_page(from_height, after_seq, limit)
        return [job_event_json(seq, h, None, ev) for seq, h, ev in events]

    def chain_info(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "genesis_hash": self.genesis_hash,
            "authorities": list(self.genesis.authorities),
            "height": self.head.height,
            "head_hash": self.head_hash,
            "block_time_ms": self.params.block_time_ms,
            "params": msgspec.to_builtins(self.params),
            "consensus": self.consensus,
        }

    def head_json(self) -> dict[str, Any]:
        return header_to_json(self.head, self.head_hash)

    def get_block(self, ref: int | str) -> Block | None:
        if isinstance(ref, int):
            return self.view.block_by_height(ref)
        return self.view.block_by_hash(ref)

    def block_json(self, block: Block, include_txs: bool = True) -> dict[str, Any]:
        body = header_to_json(block.header)
        body["proposer_signature"] = block.proposer_signature
        if self.consensus == "bft":
            commit = self.view.commit_by_height(block.header.height)
            body["commit"] = None if commit is None else msgspec.to_builtins(commit)
        if include_txs:
            body["txs"] = [tx_to_json_obj(tx) for tx in block.txs]
        return body

    def tx_status(self, tx_hash: str) -> dict[str, Any]:
        location = self.view.tx_location(tx_hash)
        if location is not None:
            height, index = location
            return {
                "tx_hash": tx_hash,
                "status": "committed",
                "height": height,
                "index": index,
                "confirmations": self.head.height - height + 1,
            }
        if tx_hash in self.mempool:
            return {"tx_hash": tx_hash, "status": "pending"}
        reason = self._rejected.get(tx_hash)
        if reason is not None:
            return {"tx_hash": tx_hash, "status": "rejected", "reason": reason}
        return {"tx_hash": tx_hash, "status": "unknown"}

    def get_tx(self, tx_hash: str) -> dict[str, Any] | None:
        found = self.view.tx_by_hash(tx_hash)
        if found is not None:
            tx, height, index = found
            return {
                "tx_hash": tx_hash,
                "tx": tx_to_json_obj(tx),
                "status": "committed",
                "height": height,
                "index": index,
            }
        pending = self.mempool.get(tx_hash)
        if pending is not None:
            return {"tx_hash": tx_hash, "tx": tx_to_json_obj(pending.tx), "status": "pending"}
        return None

    def account_json(self, address: str) -> dict[str, Any]:
        account = self.state.get_account(address)
        return {
            "address": address,
            "balance": account.balance,
            "nonce": account.nonce,
            "pending_nonce": self.mempool.pending_nonce(address, account.nonce),
            "height": self.head.height,
            **self._multisig_json(address),
        }

    def _multisig_json(self, address: str) -> dict[str, Any]:
        multisig = self.state.get_multisig(address)
        return {} if multisig is None else {"multisig": msgspec.to_builtins(multisig)}

    def account_proof_json(self, address: str) -> dict[str, Any]:
        account: Account | None = self.state.accounts.get(address)
        proof = self.state.prove_account(address)
        return {
            "address": address,
            "account": None if account is None else msgspec.to_builtins(account),
            "height": self.head.height,
            "block_hash": self.head_hash,
            "state_root": self.head.state_root,
            "proof": proof_to_json(proof),
        }


def _tx_summary(vtx: VerifiedTx) -> dict[str, Any]:
    tx = vtx.tx
    return {"hash": vtx.hash, "type": struct_tag(type(tx)), "sender": tx.sender, "nonce": tx.nonce, "fee": tx.fee}
