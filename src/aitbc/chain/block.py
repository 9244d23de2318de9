"""Blocks: propose one (``build_block``), or check and run someone else's (``apply_block``).

As in CometBFT, checking a block is two separate stages:

* **validation** (``verify_block_header``, ``verify_block_body``,
  ``verify_last_commit``): does the block fit our head, is it the right
  proposer's, signed, and do the txs match the header; nothing is executed;
* **execution** (``execute_block``): begin-block steps, every tx through
  ``process_tx`` in order, end-block steps, then the state root.

``apply_block`` runs both and compares the root; ``build_block`` executes the
candidates it is given (dropping the ones that fail) and writes the header.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from aitbc.chain.block_steps import process_begin_block, process_end_block
from aitbc.chain.context import BlockContext, SignatureOracle
from aitbc.chain.governance import compute_enactment
from aitbc.chain.params import ChainParams
from aitbc.chain.smt import SparseMerkleTree
from aitbc.chain.state import ChainState, StateDelta, compute_state_root
from aitbc.chain.tx_rules import process_tx
from aitbc.chain.validators import get_commit_powers
from aitbc.protocol.block import (
    Block,
    BlockHeader,
    block_hash,
    compute_last_commit_hash,
    compute_tx_root,
    sign_header,
    verify_header_signature,
)
from aitbc.protocol.crypto import KeyPair, is_valid_signature_check
from aitbc.protocol.errors import InvalidBlock, InvalidSignature, InvalidTx
from aitbc.protocol.tx import VerifiedTx, complete_tx_check, prepare_tx_check
from aitbc.protocol.types import MAX_TIME_MS
from aitbc.protocol.vote import CommitCertificate, commit_vote, is_quorum, is_valid_vote_signature


@dataclass(slots=True)
class BlockOutcome:
    block: Block
    hash: str
    delta: StateDelta
    tree: SparseMerkleTree
    included: list[VerifiedTx] = field(default_factory=list)
    dropped: list[tuple[VerifiedTx, InvalidTx]] = field(default_factory=list)


def compute_block_time(prev_time_ms: int, now_ms: int) -> int:
    """Block times strictly increase even if the proposer's clock steps back."""
    return max(now_ms, prev_time_ms + 1)


def get_expected_proposer(authorities: Sequence[str], height: int) -> str:
    """Proof-of-Authority round robin over the genesis authorities."""
    return authorities[height % len(authorities)]


# -- validation ---------------------------------------------------------------------------
def verify_block_header(
    head: BlockHeader, block: Block, authorities: Sequence[str], expected_proposer: str | None = None
) -> None:
    """The header extends ``head`` on our chain, in time, by the proposer whose turn it is, who signed it."""
    header = block.header
    # Verify it extends our head on our chain
    if header.chain_id != head.chain_id:
        raise InvalidBlock(f"block is for chain {header.chain_id!r}")
    if header.height != head.height + 1:
        raise InvalidBlock(f"block height {header.height} does not follow head {head.height}")
    if header.prev_hash != block_hash(head):
        raise InvalidBlock("block does not build on our head (prev_hash mismatch)")
    if header.time_ms <= head.time_ms:
        raise InvalidBlock("block time does not increase")
    if header.time_ms > MAX_TIME_MS:
        raise InvalidBlock(f"block time {header.time_ms} is outside the codec's range")
    # Verify the proposer is the authority whose turn it is, and signed the header
    expected = expected_proposer or get_expected_proposer(authorities, header.height)
    if header.proposer != expected:
        raise InvalidBlock(f"proposer {header.proposer} is not the expected authority {expected}")
    try:
        verify_header_signature(header, block.proposer_signature)
    except (InvalidSignature, ValueError):
        raise InvalidBlock("bad proposer signature") from None


def verify_block_body(
    block: Block, params: ChainParams, is_known_valid: Callable[[str], bool] | None = None
) -> list[VerifiedTx]:
    """The txs are well formed and signed, within the block limits, and hash to the header's tx root.

    ``is_known_valid(tx_hash)``: the tx's signature was already checked (it is in our mempool); only its
    Ed25519 check is skipped."""
    header = block.header
    # Verify the body matches the header
    if header.tx_count != len(block.txs) or header.tx_count > params.max_block_txs:
        raise InvalidBlock("tx count does not match the header or exceeds the block limit")
    verified: list[VerifiedTx] = []
    for tx in block.txs:
        try:
            prepared = prepare_tx_check(tx)
            if is_known_valid is not None and is_known_valid(prepared.verified.hash):
                verified.append(prepared.verified)
            else:
                verified.append(complete_tx_check(prepared, is_valid_signature_check(prepared.check)))
        except InvalidTx as exc:
            raise InvalidBlock(f"block carries an invalid tx: {exc.message}") from None
    size = sum(v.size for v in verified)
    if size > params.max_block_bytes:
        raise InvalidBlock(f"block txs take {size} bytes; the limit is {params.max_block_bytes}")
    if compute_tx_root([bytes.fromhex(v.hash) for v in verified]) != header.tx_root:
        raise InvalidBlock("tx root does not match the txs")
    if compute_last_commit_hash(block.last_commit) != header.last_commit_hash:
        raise InvalidBlock("last_commit does not match the header's last_commit_hash")
    return verified


def verify_last_commit(cert: CommitCertificate, head: BlockHeader, state: ChainState, params: ChainParams) -> None:
    """The precommits a block carries for its parent: for the parent, distinct, each signed by a member of
    the set that decided the parent, together more than 2/3 of its power (a proposer cannot leave out
    enough votes to make a commit it never saw, nor mark honest validators absent at will)."""
    if cert.chain_id != head.chain_id or cert.height != head.height or cert.block_hash != block_hash(head):
        raise InvalidBlock("last_commit is not for the previous block")
    powers = get_commit_powers(state.staking, state.authorities, params.staking)
    seen: set[str] = set()
    for sig in cert.signatures:
        if sig.validator in seen or sig.validator not in powers:
            raise InvalidBlock(f"last_commit names {sig.validator} twice or outside the validator set")
        if not is_valid_vote_signature(commit_vote(cert, sig)):
            raise InvalidBlock(f"last_commit carries a bad signature of {sig.validator}")
        seen.add(sig.validator)
    signed, total = sum(powers[v] for v in seen), sum(powers.values())
    if not is_quorum(signed, total):
        raise InvalidBlock(f"last_commit carries {signed} of {total} voting power; needs more than 2/3")


def verify_block_time(header: BlockHeader, now_ms: int, max_drift_ms: int) -> None:
    """A proposal may not be dated more than ``max_drift_ms`` after
    the checking validator's own clock: a proposer cannot push the chain's clock (and with it the wait for
    every following height) into the future. Past times are bounded by "strictly after the parent". A synced
    block is not checked: its commit certificate shows > 2/3 of the power accepted its time."""
    if header.time_ms > now_ms + max_drift_ms:
        raise InvalidBlock(
            f"block time {header.time_ms} is {header.time_ms - now_ms} ms ahead of our clock (limit {max_drift_ms})"
        )


# -- execution ----------------------------------------------------------------------------
def execute_block(
    state: ChainState,
    ctx: BlockContext,
    txs: Iterable[VerifiedTx],
    on_invalid: Callable[[VerifiedTx, InvalidTx], None],
) -> tuple[StateDelta, list[VerifiedTx]]:
    """Begin block, the txs in order, end block; returns the writes and the txs that applied.

    A tx that fails goes to ``on_invalid`` (a proposer drops it; a validator refuses the block by
    raising there). Stops before a tx that would break ``max_block_txs`` / ``max_block_bytes``."""
    delta = StateDelta(base=state)
    process_begin_block(delta, state, ctx)
    params = ctx.params
    included: list[VerifiedTx] = []
    size = 0
    for vtx in txs:
        if len(included) >= params.max_block_txs or size + vtx.size > params.max_block_bytes:
            break
        try:
            process_tx(delta, vtx.tx, ctx.tx(vtx.hash, len(included)))
        except InvalidTx as exc:
            on_invalid(vtx, exc)
            continue
        included.append(vtx)
        size += vtx.size
    process_end_block(delta, ctx)
    return delta, included


def compute_block_params(state: ChainState, genesis_params: ChainParams, height: int) -> ChainParams:
    """The parameters the block at ``height`` runs with: genesis's, with every governance change enacted up
    to and including ``height`` (``aitbc.chain.governance.compute_enactment``)."""
    governance = state.get_governance()
    if governance.params is None and not governance.scheduled:
        return genesis_params
    return compute_enactment(governance, genesis_params, height)[0]


def build_block(
    state: ChainState,
    head: BlockHeader,
    candidates: Iterable[VerifiedTx],
    key: KeyPair,
    now_ms: int,
    params: ChainParams,
    last_commit: CommitCertificate | None = None,
    is_known_signature: SignatureOracle | None = None,
) -> BlockOutcome:
    """Propose the next block: apply candidates in order, skipping (and reporting) any that fail.

    ``last_commit`` (BFT chains): the precommits we hold for ``head``; they go into the block.
    ``is_known_signature``: signature checks inside txs (settle-batch receipts) the node already ran."""
    prev_hash = block_hash(head)
    proposer = key.address  # (a property that re-encodes the key: once per block, not per tx)
    ctx = BlockContext(
        chain_id=head.chain_id,
        height=head.height + 1,
        time_ms=compute_block_time(head.time_ms, now_ms),
        proposer=proposer,
        params=compute_block_params(state, params, head.height + 1),
        prev_hash=prev_hash,
        last_commit=last_commit,
        genesis_params=params,
        is_known_signature=is_known_signature,
    )
    dropped: list[tuple[VerifiedTx, InvalidTx]] = []
    delta, included = execute_block(state, ctx, candidates, lambda vtx, exc: dropped.append((vtx, exc)))
    state_root, tree = compute_state_root(state, delta)
    header = BlockHeader(
        chain_id=ctx.chain_id,
        height=ctx.height,
        time_ms=ctx.time_ms,
        prev_hash=prev_hash,
        tx_root=compute_tx_root([bytes.fromhex(v.hash) for v in included]),
        tx_count=len(included),
        state_root=state_root,
        proposer=proposer,
        last_commit_hash=compute_last_commit_hash(last_commit),
    )
    block = Block(
        header=header,
        proposer_signature=sign_header(header, key),
        txs=[v.tx for v in included],
        last_commit=last_commit,
    )
    return BlockOutcome(block, block_hash(header), delta, tree, included, dropped)


def _refuse_block(vtx: VerifiedTx, exc: InvalidTx) -> None:
    raise InvalidBlock(f"tx {vtx.hash} fails: {exc.reason}: {exc.message}")


def apply_block(
    state: ChainState,
    head: BlockHeader,
    block: Block,
    authorities: Sequence[str],
    params: ChainParams,
    expected_proposer: str | None = None,
    is_known_valid: Callable[[str], bool] | None = None,
    is_known_signature: SignatureOracle | None = None,
) -> BlockOutcome:
    """Validate a block someone else proposed against our head and state, then execute it; raise
    ``InvalidBlock`` if either stage refuses it or the state root differs.

    ``params``: genesis's (the block runs with them plus every enacted governance change,
    ``compute_block_params``). ``expected_proposer``: the proposer the BFT rotation names for the block's
    round (multi-validator chains); without it the PoA round robin over ``authorities`` applies.
    ``is_known_valid``: see ``verify_block_body``."""
    header = block.header
    verify_block_header(head, block, authorities, expected_proposer)
    live = compute_block_params(state, params, header.height)
    verified = verify_block_body(block, live, is_known_valid)
    if block.last_commit is not None:
        verify_last_commit(block.last_commit, head, state, live)
    ctx = BlockContext(
        chain_id=header.chain_id,
        height=header.height,
        time_ms=header.time_ms,
        proposer=header.proposer,
        params=live,
        prev_hash=header.prev_hash,
        last_commit=block.last_commit,
        genesis_params=params,
        is_known_signature=is_known_signature,
    )
    delta, _ = execute_block(state, ctx, verified, _refuse_block)
    # Verify the resulting state root
    state_root, tree = compute_state_root(state, delta)
    if state_root != header.state_root:
        raise InvalidBlock("state root does not match the state after the txs")
    return BlockOutcome(block, block_hash(header), delta, tree, verified, [])
