"""Job escrow: the client locks funds, the coordinator settles with a receipt or the chain refunds.

Tx kinds ``open_escrow``, ``settle_job`` / ``settle_job_zk`` and ``refund_escrow``
(each a ``verify_*`` returning what its ``process_*`` writes; the shared sender,
nonce and fee steps run in ``aitbc.chain.tx_rules.process_tx``), the begin-block
step that refunds expired escrows, and the price arithmetic clients and the
coordinator use to size an escrow.
"""

from __future__ import annotations

import msgspec

from aitbc.chain.audit_types import compute_audit_candidate
from aitbc.chain.context import BlockContext, TxContext
from aitbc.chain.entries import ChainEvent, Escrow, EscrowState
from aitbc.chain.ledger import process_credit
from aitbc.chain.params import REWARD_POOL_ADDRESS, ChainParams
from aitbc.chain.state import ChainState, StateDelta
from aitbc.protocol.deposit import get_job_expiry
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.receipt import (
    InvalidReceipt,
    compute_receipt_hash,
    verify_coordinator_signature,
    verify_miner_signature,
    verify_receipt_accounting,
)
from aitbc.protocol.tx import OpenEscrow, RefundEscrow, SettleJob, SettleJobZk
from aitbc.protocol.zk import get_receipt_proof_problem


def compute_protocol_fee(total: int, params: ChainParams) -> int:
    """The reward pool's share of a job, charged to the client on top of the receipt's total."""
    return total * params.protocol_fee_bps // 10_000


def compute_escrow_amount(max_price: int, params: ChainParams) -> int:
    """What a client must lock so that a receipt of up to ``max_price`` and its protocol fee fit."""
    return max_price + compute_protocol_fee(max_price, params)


def compute_max_price(escrow_amount: int, params: ChainParams) -> int:
    """The largest receipt total an escrow of ``escrow_amount`` can pay with its protocol fee."""
    price = escrow_amount * 10_000 // (10_000 + params.protocol_fee_bps)
    while compute_escrow_amount(price + 1, params) <= escrow_amount:
        price += 1
    while price > 0 and compute_escrow_amount(price, params) > escrow_amount:
        price -= 1
    return price


def _record(state: StateDelta, escrow: Escrow, kind: str, tx_hash: str) -> None:
    """Store the escrow's new state and emit the matching ``job_updates`` event (derived from it)."""
    state.set_escrow(escrow)
    state.emit(
        ChainEvent(
            kind=kind,
            job_id=escrow.job_id,
            client=escrow.client,
            coordinator=escrow.coordinator,
            amount=escrow.amount,
            tx_hash=tx_hash,
            miner=escrow.miner,
            paid_to_miner=escrow.paid_to_miner,
            protocol_fee=escrow.protocol_fee,
            refunded=escrow.refunded,
            receipt_hash=escrow.receipt_hash,
        )
    )


def _verify_escrow_open(escrow: Escrow | None, job_id: str) -> Escrow:
    if escrow is None:
        raise InvalidTx(TxRejection.NO_ESCROW, f"job {job_id} has no escrow")
    if escrow.state == EscrowState.SETTLED:
        raise InvalidTx(TxRejection.ALREADY_SETTLED, f"job {job_id} is already settled")
    if escrow.state == EscrowState.REFUNDED:
        raise InvalidTx(TxRejection.ALREADY_REFUNDED, f"job {job_id} was refunded")
    return escrow


# -- open_escrow ---------------------------------------------------------------------------
def verify_open_escrow(state: StateDelta, tx: OpenEscrow, ctx: TxContext) -> None:
    # Verify the job has no escrow yet, and was not paid from a deposit (a job is paid at most once)
    if state.get_escrow(tx.job_id) is not None:
        raise InvalidTx(TxRejection.ESCROW_EXISTS, f"job {tx.job_id} already has an escrow")
    if state.get_paid(tx.job_id) is not None or get_job_expiry(tx.job_id) is not None:
        raise InvalidTx(TxRejection.ALREADY_PAID, f"job {tx.job_id} is a deposit job (paid by settle_batch)")
    # Verify the deadline lies ahead, within the limit
    height, limit = ctx.height, ctx.params.max_escrow_blocks
    if not height <= tx.deadline_height <= height + limit:
        raise InvalidTx(
            TxRejection.BAD_DEADLINE,
            f"deadline height {tx.deadline_height} must lie within {height}..{height + limit}",
        )


def process_open_escrow(state: StateDelta, tx: OpenEscrow, ctx: TxContext, _: None) -> None:
    """The amount already left the sender (it is the tx's cost); here it becomes the job's escrow."""
    escrow = Escrow(
        job_id=tx.job_id,
        client=tx.sender,
        coordinator=tx.coordinator,
        amount=tx.amount,
        deadline_height=tx.deadline_height,
        opened_height=ctx.height,
    )
    _record(state, escrow, "escrow_opened", ctx.tx_hash)


# -- settle_job / settle_job_zk ------------------------------------------------------------
def verify_settle_job_stateless(tx: SettleJob | SettleJobZk, chain_id: str) -> None:
    # Verify the receipt is for this chain
    if tx.receipt.chain_id != chain_id:
        raise InvalidTx(TxRejection.WRONG_CHAIN_ID, "the receipt is for another chain")


def verify_settle_job(state: StateDelta, tx: SettleJob | SettleJobZk, ctx: TxContext) -> tuple[Escrow, int]:
    """The receipt may settle the escrow; returns (the escrow, the protocol fee)."""
    receipt = tx.receipt
    # Verify the escrow is open and not past its deadline
    escrow = _verify_escrow_open(state.get_escrow(receipt.job_id), receipt.job_id)
    if ctx.height > escrow.deadline_height:
        raise InvalidTx(TxRejection.ESCROW_EXPIRED, f"the escrow expired at height {escrow.deadline_height}")
    # Verify the escrow's coordinator sends it, and the receipt names the same parties
    if tx.sender != escrow.coordinator or receipt.coordinator != escrow.coordinator:
        raise InvalidTx(TxRejection.NOT_COORDINATOR, "only the escrow's coordinator may settle the job")
    if receipt.client != escrow.client:
        raise InvalidTx(TxRejection.BAD_RECEIPT, "the receipt names another client")
    # Verify the receipt: miner signed it, the coordinator countersigned (= assigned that miner), it adds up
    try:
        verify_miner_signature(receipt)
        verify_coordinator_signature(receipt)
        verify_receipt_accounting(receipt)
    except InvalidReceipt as exc:
        raise InvalidTx(TxRejection.BAD_RECEIPT, f"{exc.reason}: {exc.message}") from None
    # Verify the escrow covers the total and its protocol fee
    fee = compute_protocol_fee(receipt.total_price, ctx.params)
    if receipt.total_price + fee > escrow.amount:
        raise InvalidTx(
            TxRejection.TOTAL_ABOVE_ESCROW,
            f"receipt total {receipt.total_price} + protocol fee {fee} exceeds the escrow's {escrow.amount}",
        )
    # Verify the zero-knowledge receipt proof, when the settle carries one (pinned key: aitbc.protocol.zk)
    if isinstance(tx, SettleJobZk):
        problem = get_receipt_proof_problem(tx.proof, receipt, escrow.amount)
        if problem is not None:
            raise InvalidTx(TxRejection.BAD_ZK_PROOF, problem)
    return escrow, fee


def process_settle_job(
    state: StateDelta, tx: SettleJob | SettleJobZk, ctx: TxContext, checked: tuple[Escrow, int]
) -> None:
    """Pay the miner the receipt's total, the reward pool its fee, and return the rest to the client."""
    escrow, fee = checked
    receipt = tx.receipt
    paid = receipt.total_price
    rest = escrow.amount - paid - fee
    process_credit(state, receipt.miner, paid)
    process_credit(state, REWARD_POOL_ADDRESS, fee)
    process_credit(state, escrow.client, rest)
    receipt_hash = compute_receipt_hash(receipt)
    settled = msgspec.structs.replace(
        escrow,
        state=EscrowState.SETTLED.value,
        miner=receipt.miner,
        paid_to_miner=paid,
        protocol_fee=fee,
        refunded=rest,
        receipt_hash=receipt_hash,
        closed_height=ctx.height,
    )
    _record(state, settled, "settled", ctx.tx_hash)
    state.audit_candidates.append(compute_audit_candidate(receipt, escrow.client, paid + fee, fee, receipt_hash))


# -- refund_escrow and expiry --------------------------------------------------------------
def _refund(state: StateDelta, escrow: Escrow, height: int, tx_hash: str) -> None:
    process_credit(state, escrow.client, escrow.amount)
    refunded = msgspec.structs.replace(
        escrow, state=EscrowState.REFUNDED.value, refunded=escrow.amount, closed_height=height
    )
    _record(state, refunded, "refunded", tx_hash)


def verify_refund_escrow(state: StateDelta, tx: RefundEscrow, ctx: TxContext) -> Escrow:
    # Verify the escrow is open, and its deadline has passed unless its coordinator gives up on the job
    escrow = _verify_escrow_open(state.get_escrow(tx.job_id), tx.job_id)
    if ctx.height <= escrow.deadline_height and tx.sender != escrow.coordinator:
        raise InvalidTx(
            TxRejection.DEADLINE_NOT_REACHED,
            f"the escrow can be settled until height {escrow.deadline_height}; only its coordinator may refund earlier",
        )
    return escrow


def process_refund_escrow(state: StateDelta, tx: RefundEscrow, ctx: TxContext, escrow: Escrow) -> None:
    _refund(state, escrow, ctx.height, ctx.tx_hash)


def process_expired_escrows(state: StateDelta, base: ChainState, ctx: BlockContext) -> None:
    """At the start of each block the chain refunds every open escrow whose deadline has passed
    (the ``refunded`` event names no tx: the block did it). ``base``: the committed state, which
    indexes escrows by deadline."""
    for job_id in base.get_expired_escrows(ctx.height):
        escrow = state.get_escrow(job_id)
        if escrow is not None and escrow.state == EscrowState.OPEN:
            _refund(state, escrow, ctx.height, tx_hash="")
