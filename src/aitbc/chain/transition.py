"""The state transition: one named rule per tx kind, and the block rules around them.

Each ``process_*`` is a run of ``# Verify`` checks that raise ``InvalidTx``
with a machine-readable reason, followed by the mutation; nothing is written
unless every check passed, so a refused tx leaves no trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aitbc.chain.params import ChainParams
from aitbc.chain.smt import SparseMerkleTree
from aitbc.chain.state import Account, ChainState, StateDelta, compute_state_root
from aitbc.protocol.block import (
    Block,
    BlockHeader,
    block_hash,
    compute_tx_root,
    sign_header,
    verify_header_signature,
)
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import InvalidBlock, InvalidSignature, InvalidTx, TxRejection
from aitbc.protocol.tx import Transfer, Tx, VerifiedTx, verify_tx
from aitbc.protocol.types import MAX_U64


def check_tx_stateless(tx: Tx, chain_id: str, params: ChainParams) -> None:
    """Rules that need no state: chain id, fee floor, amounts and their sum."""
    # Verify the tx is for this chain
    if tx.chain_id != chain_id:
        raise InvalidTx(TxRejection.WRONG_CHAIN_ID, f"tx is for chain {tx.chain_id!r}, this is {chain_id!r}")
    # Verify the fee meets the floor
    if tx.fee < params.min_fee:
        raise InvalidTx(TxRejection.FEE_TOO_LOW, f"fee {tx.fee} is below the minimum {params.min_fee}")
    if isinstance(tx, Transfer):
        # Verify something is moved
        if tx.amount == 0:
            raise InvalidTx(TxRejection.ZERO_AMOUNT, "transfer amount must be positive")
        # Verify amount + fee is representable
        if tx.amount + tx.fee > MAX_U64:
            raise InvalidTx(TxRejection.AMOUNT_OVERFLOW, "amount + fee overflows the maximum amount")


def compute_tx_cost(tx: Tx) -> int:
    """What the sender's balance must cover for this tx."""
    return tx.amount + tx.fee


def process_transfer(state: StateDelta, tx: Transfer, proposer: str, chain_id: str, params: ChainParams) -> None:
    check_tx_stateless(tx, chain_id, params)
    sender = state.get_account(tx.sender)
    # Verify the nonce is the sender's next one (no replay, no gap)
    if tx.nonce < sender.nonce:
        raise InvalidTx(TxRejection.NONCE_TOO_LOW, f"nonce {tx.nonce} already used; next is {sender.nonce}")
    if tx.nonce > sender.nonce:
        raise InvalidTx(TxRejection.NONCE_TOO_HIGH, f"nonce {tx.nonce} skips ahead; next is {sender.nonce}")
    # Verify the sender can pay amount + fee
    cost = compute_tx_cost(tx)
    if sender.balance < cost:
        raise InvalidTx(
            TxRejection.INSUFFICIENT_BALANCE, f"balance {sender.balance} does not cover amount + fee = {cost}"
        )
    # Verify the recipient's balance stays representable
    recipient_balance = state.get_account(tx.recipient).balance - (cost if tx.recipient == tx.sender else 0)
    if recipient_balance + tx.amount > MAX_U64:
        raise InvalidTx(TxRejection.AMOUNT_OVERFLOW, "recipient balance would overflow")

    state.set_account(tx.sender, Account(balance=sender.balance - cost, nonce=sender.nonce + 1))
    recipient = state.get_account(tx.recipient)
    state.set_account(tx.recipient, Account(balance=recipient.balance + tx.amount, nonce=recipient.nonce))
    process_fee(state, tx.fee, proposer)


def process_fee(state: StateDelta, fee: int, proposer: str) -> None:
    """Fees go to the proposer of the block that includes the tx."""
    if fee:
        account = state.get_account(proposer)
        state.set_account(proposer, Account(balance=account.balance + fee, nonce=account.nonce))


def process_tx(state: StateDelta, tx: Tx, proposer: str, chain_id: str, params: ChainParams) -> None:
    if isinstance(tx, Transfer):
        process_transfer(state, tx, proposer, chain_id, params)
    else:  # pragma: no cover - the Tx union is closed
        raise InvalidTx(TxRejection.UNKNOWN_TX_TYPE, f"unknown tx kind {type(tx).__name__}")


def get_expected_proposer(authorities: Sequence[str], height: int) -> str:
    """Proof-of-Authority round robin over the genesis authorities."""
    return authorities[height % len(authorities)]


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


def build_block(
    state: ChainState,
    head: BlockHeader,
    candidates: Iterable[VerifiedTx],
    key: KeyPair,
    now_ms: int,
    params: ChainParams,
) -> BlockOutcome:
    """Propose the next block: apply candidates in order, skipping (and reporting) any that fail."""
    delta = StateDelta(base=state)
    included: list[VerifiedTx] = []
    dropped: list[tuple[VerifiedTx, InvalidTx]] = []
    size = 0
    proposer = key.address  # (a property that re-encodes the key: once per block, not per tx)
    for vtx in candidates:
        if len(included) >= params.max_block_txs or size + vtx.size > params.max_block_bytes:
            break
        try:
            process_tx(delta, vtx.tx, proposer, head.chain_id, params)
        except InvalidTx as exc:
            dropped.append((vtx, exc))
            continue
        included.append(vtx)
        size += vtx.size
    state_root, tree = compute_state_root(state, delta)
    header = BlockHeader(
        chain_id=head.chain_id,
        height=head.height + 1,
        time_ms=compute_block_time(head.time_ms, now_ms),
        prev_hash=block_hash(head),
        tx_root=compute_tx_root([bytes.fromhex(v.hash) for v in included]),
        tx_count=len(included),
        state_root=state_root,
        proposer=key.address,
    )
    block = Block(header=header, proposer_signature=sign_header(header, key), txs=[v.tx for v in included])
    return BlockOutcome(block, block_hash(header), delta, tree, included, dropped)


def apply_block(
    state: ChainState,
    head: BlockHeader,
    block: Block,
    authorities: Sequence[str],
    params: ChainParams,
) -> BlockOutcome:
    """Validate a block someone else proposed against our head and state; raise ``InvalidBlock``."""
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
    # Verify the proposer is the authority whose turn it is, and signed the header
    expected = get_expected_proposer(authorities, header.height)
    if header.proposer != expected:
        raise InvalidBlock(f"proposer {header.proposer} is not the expected authority {expected}")
    try:
        verify_header_signature(header, block.proposer_signature)
    except (InvalidSignature, ValueError):
        raise InvalidBlock("bad proposer signature") from None
    # Verify the body matches the header
    if header.tx_count != len(block.txs) or header.tx_count > params.max_block_txs:
        raise InvalidBlock("tx count does not match the header or exceeds the block limit")
    verified: list[VerifiedTx] = []
    for tx in block.txs:
        try:
            verified.append(verify_tx(tx))
        except InvalidTx as exc:
            raise InvalidBlock(f"block carries an invalid tx: {exc.message}") from None
    size = sum(v.size for v in verified)
    if size > params.max_block_bytes:
        raise InvalidBlock(f"block txs take {size} bytes; the limit is {params.max_block_bytes}")
    if compute_tx_root([bytes.fromhex(v.hash) for v in verified]) != header.tx_root:
        raise InvalidBlock("tx root does not match the txs")
    # Verify every tx applies, in order
    delta = StateDelta(base=state)
    for vtx in verified:
        try:
            process_tx(delta, vtx.tx, header.proposer, header.chain_id, params)
        except InvalidTx as exc:
            raise InvalidBlock(f"tx {vtx.hash} fails: {exc.reason}: {exc.message}") from None
    # Verify the resulting state root
    state_root, tree = compute_state_root(state, delta)
    if state_root != header.state_root:
        raise InvalidBlock("state root does not match the state after the txs")
    return BlockOutcome(block, block_hash(header), delta, tree, verified, [])
