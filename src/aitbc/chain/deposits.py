"""Deposits and batched settlement: fund once, draw per job (``aitbc.protocol.deposit``).

Tx kinds ``open_deposit``, ``top_up_deposit``, ``withdraw_deposit`` and
``settle_batch``, each a ``verify_*`` returning what its ``process_*`` writes
(the shared sender, nonce and fee steps run in ``process_tx``), plus two
begin-block steps: pay out withdrawals whose delay has passed, and forget paid
job ids whose expiry has passed.

A ``settle_batch`` is not all-or-nothing: ``verify_settle_batch`` judges each
entry (``get_entry_problem`` for the rules one entry can break on its own, then
the deposit's balance and cap in order), and the tx applies the valid entries
and reports every refused one with its reason as a ``settle_rejected`` event.
The tx itself is refused only for what is wrong with the tx (sender, nonce,
fee, size), so a coordinator's batch never blocks its later ones.

A job id is paid at most once across both payment paths: an entry is refused
if the job has a per-job escrow (in any state) or was paid from a deposit and
is still remembered; ``open_escrow`` is refused for a remembered paid job id;
an entry can only be settled up to the expiry height its job id carries
(``dj-<height>-…``, under the miner's signature), which is when the chain
forgets it; such ids never get a per-job escrow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import msgspec

from aitbc.chain.audit_types import AuditCandidate, compute_audit_candidate
from aitbc.chain.context import BlockContext, SignatureOracle, TxContext
from aitbc.chain.entries import ChainEvent, Deposit, PaidJob
from aitbc.chain.escrow import compute_escrow_amount
from aitbc.chain.ledger import process_credit
from aitbc.chain.params import REWARD_POOL_ADDRESS, ChainParams
from aitbc.chain.state import ChainState, StateDelta
from aitbc.protocol.crypto import SignatureCheck, is_valid_signature_check
from aitbc.protocol.deposit import (
    SettlementEntry,
    client_signature_check,
    compute_deposit_id,
    get_job_expiry,
    miner_signature_check,
)
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.receipt import InvalidReceipt, compute_receipt_hash, verify_receipt_accounting
from aitbc.protocol.tx import OpenDeposit, SettleBatch, TopUpDeposit, WithdrawDeposit
from aitbc.protocol.types import MAX_U64


class EntryRejection(StrEnum):
    """Why one entry of a ``settle_batch`` was not paid (the ``reason`` of its ``settle_rejected`` event)."""

    NO_DEPOSIT = "no_deposit"
    NOT_COORDINATOR = "not_coordinator"
    WRONG_CHAIN = "wrong_chain"
    WRONG_CLIENT = "wrong_client"
    BAD_EXPIRY = "bad_expiry"
    EXPIRED = "expired"
    ALREADY_PAID = "already_paid"
    BAD_RECEIPT = "bad_receipt"
    MISSING_CLIENT_SIGNATURE = "missing_client_signature"
    BAD_CLIENT_SIGNATURE = "bad_client_signature"
    PRICE_ABOVE_MAX = "price_above_max"
    BAD_MINER_SIGNATURE = "bad_miner_signature"
    INSUFFICIENT_DEPOSIT = "insufficient_deposit"
    CAP_EXCEEDED = "cap_exceeded"


# -- arithmetic ------------------------------------------------------------------------------------------
def compute_job_charge(total_price: int, params: ChainParams) -> int:
    """What one settled job takes from a deposit: the receipt's total and the protocol fee on it (the
    same sum an escrow for that price must lock)."""
    return compute_escrow_amount(total_price, params)


def compute_period(height: int, deposit: Deposit) -> int:
    return height // deposit.period_blocks if deposit.period_blocks else 0


def get_spent_in_period(deposit: Deposit, height: int) -> int:
    """What the deposit has paid in the period ``height`` falls in (0 once a new period starts)."""
    return deposit.spent_in_period if deposit.period == compute_period(height, deposit) else 0


def get_cap_room(deposit: Deposit, height: int) -> int | None:
    """How much more the deposit may pay in the current period; None without a cap."""
    if deposit.cap_per_period == 0:
        return None
    return max(deposit.cap_per_period - get_spent_in_period(deposit, height), 0)


def _event(kind: str, deposit: Deposit, tx_hash: str, amount: int) -> ChainEvent:
    return ChainEvent(
        kind=kind,
        job_id="",
        client=deposit.owner,
        coordinator=deposit.coordinator,
        amount=amount,
        tx_hash=tx_hash,
        deposit_id=deposit.id,
    )


# -- open_deposit ----------------------------------------------------------------------------------------
def verify_open_deposit_stateless(tx: OpenDeposit, chain_id: str) -> None:
    """Terms that need no state: a delegated deposit has a cap, a cap has a period."""
    # Verify a delegated deposit limits what its coordinator may spend
    if tx.mode == "delegated" and tx.cap_per_period == 0:
        raise InvalidTx(TxRejection.BAD_DEPOSIT_TERMS, "a delegated deposit needs a spending cap per period")
    # Verify a cap comes with its period (and a period with a cap)
    if (tx.cap_per_period == 0) != (tx.period_blocks == 0):
        raise InvalidTx(TxRejection.BAD_DEPOSIT_TERMS, "cap_per_period and period_blocks are set together")
    # Verify the coordinator is someone else
    if tx.coordinator == tx.sender:
        raise InvalidTx(TxRejection.BAD_DEPOSIT_TERMS, "a client cannot be its own deposit's coordinator")


def verify_open_deposit(state: StateDelta, tx: OpenDeposit, ctx: TxContext) -> Deposit:
    deposit_id = compute_deposit_id(tx.sender, tx.nonce)
    # Verify the id is new (it is derived from the sender's nonce, used once)
    if state.get_deposit(deposit_id) is not None:  # pragma: no cover - a nonce is used once
        raise InvalidTx(TxRejection.BAD_DEPOSIT_TERMS, f"deposit {deposit_id} already exists")
    return Deposit(
        id=deposit_id,
        owner=tx.sender,
        coordinator=tx.coordinator,
        mode=tx.mode,
        balance=tx.amount,
        cap_per_period=tx.cap_per_period,
        period_blocks=tx.period_blocks,
        opened_height=ctx.height,
        period=tx.period_blocks and ctx.height // tx.period_blocks,
    )


def process_open_deposit(state: StateDelta, tx: OpenDeposit, ctx: TxContext, deposit: Deposit) -> None:
    state.set_deposit(deposit)
    state.emit(_event("deposit_opened", deposit, ctx.tx_hash, tx.amount))


# -- top_up_deposit --------------------------------------------------------------------------------------
def _verify_deposit(state: StateDelta, deposit_id: str) -> Deposit:
    deposit = state.get_deposit(deposit_id)
    if deposit is None:
        raise InvalidTx(TxRejection.NO_DEPOSIT, f"deposit {deposit_id} does not exist")
    return deposit


def verify_top_up_deposit(state: StateDelta, tx: TopUpDeposit, ctx: TxContext) -> Deposit:
    # Verify the deposit exists and its balance stays representable
    deposit = _verify_deposit(state, tx.deposit_id)
    if deposit.balance + tx.amount > MAX_U64:
        raise InvalidTx(TxRejection.AMOUNT_OVERFLOW, "the deposit's balance would overflow")
    return msgspec.structs.replace(deposit, balance=deposit.balance + tx.amount)


def process_top_up_deposit(state: StateDelta, tx: TopUpDeposit, ctx: TxContext, deposit: Deposit) -> None:
    state.set_deposit(deposit)
    state.emit(_event("deposit_topped_up", deposit, ctx.tx_hash, tx.amount))


# -- withdraw_deposit ------------------------------------------------------------------------------------
def verify_withdraw_deposit(state: StateDelta, tx: WithdrawDeposit, ctx: TxContext) -> Deposit:
    # Verify the owner asks, for no more than the deposit holds, with no other withdrawal pending
    deposit = _verify_deposit(state, tx.deposit_id)
    if tx.sender != deposit.owner:
        raise InvalidTx(TxRejection.NOT_DEPOSIT_OWNER, "only the deposit's owner may withdraw from it")
    if deposit.withdrawal_amount:
        raise InvalidTx(
            TxRejection.WITHDRAWAL_PENDING,
            f"a withdrawal of {deposit.withdrawal_amount} is already pending until height {deposit.withdrawal_height}",
        )
    if tx.amount > deposit.balance:
        raise InvalidTx(
            TxRejection.INSUFFICIENT_BALANCE, f"the deposit holds {deposit.balance}; cannot withdraw {tx.amount}"
        )
    return msgspec.structs.replace(
        deposit, withdrawal_amount=tx.amount, withdrawal_height=ctx.height + ctx.params.deposit_withdrawal_delay
    )


def process_withdraw_deposit(state: StateDelta, tx: WithdrawDeposit, ctx: TxContext, deposit: Deposit) -> None:
    state.set_deposit(deposit)
    state.emit(_event("deposit_withdrawal_requested", deposit, ctx.tx_hash, tx.amount))


def process_deposit_withdrawals(state: StateDelta, base: ChainState, ctx: BlockContext) -> None:
    """Begin-block step: pay out every withdrawal whose delay has passed (what is left of it: jobs
    settled during the delay came first)."""
    height = ctx.height
    for deposit_id in base.get_due_withdrawals(height):
        deposit = state.get_deposit(deposit_id)
        if deposit is None or not deposit.withdrawal_amount or deposit.withdrawal_height > height:
            continue  # pragma: no cover - the index follows the committed deposits
        amount = min(deposit.withdrawal_amount, deposit.balance)
        updated = msgspec.structs.replace(
            deposit, balance=deposit.balance - amount, withdrawal_amount=0, withdrawal_height=0
        )
        state.set_deposit(updated)
        process_credit(state, deposit.owner, amount)
        state.emit(_event("deposit_withdrawn", updated, "", amount))


def process_expired_paid_jobs(state: StateDelta, base: ChainState, ctx: BlockContext) -> None:
    """Begin-block step: forget paid job ids past their expiry (no entry for them can settle any more)."""
    for job_id in base.get_expired_paid(ctx.height):
        state.set_paid(job_id, None)


def is_job_paid(state: StateDelta, job_id: str) -> bool:
    """Whether any path already paid (or holds an escrow for) ``job_id``: its deposit record or an escrow."""
    return state.get_paid(job_id) is not None or state.get_escrow(job_id) is not None


# -- settle_batch ----------------------------------------------------------------------------------------
@dataclass(slots=True)
class BatchPlan:
    """What a ``settle_batch`` writes: the updated deposits, the paid records, and every event in entry order."""

    deposits: dict[str, Deposit] = field(default_factory=dict)
    paid: list[PaidJob] = field(default_factory=list)
    credits: dict[str, int] = field(default_factory=dict)
    events: list[ChainEvent] = field(default_factory=list)
    audit_candidates: list[AuditCandidate] = field(default_factory=list)


def get_entry_problem(
    entry: SettlementEntry, deposit: Deposit | None, coordinator: str, ctx: TxContext
) -> tuple[EntryRejection, str] | None:
    """The rules one entry can break on its own (no signatures, no balance): None when it passes."""
    receipt = entry.receipt
    # Verify the deposit exists and this coordinator may settle against it
    if deposit is None:
        return EntryRejection.NO_DEPOSIT, f"deposit {entry.deposit_id} does not exist"
    if deposit.coordinator != coordinator or receipt.coordinator != coordinator:
        return EntryRejection.NOT_COORDINATOR, "only the deposit's coordinator may settle against it"
    # Verify the receipt is for this chain and names the deposit's owner as client
    if receipt.chain_id != ctx.chain_id:
        return EntryRejection.WRONG_CHAIN, "the receipt is for another chain"
    if receipt.client != deposit.owner:
        return EntryRejection.WRONG_CLIENT, "the receipt names another client than the deposit's owner"
    # Verify the entry has not expired and its expiry lies within the limit
    expires = get_job_expiry(receipt.job_id)
    if expires is None:
        return EntryRejection.BAD_EXPIRY, "a deposit job's id carries its expiry (dj-<height>-<random>)"
    if expires < ctx.height:
        return EntryRejection.EXPIRED, f"the job expired at height {expires}"
    if expires > ctx.height + ctx.params.max_receipt_blocks:
        return EntryRejection.BAD_EXPIRY, f"expiry must lie within {ctx.params.max_receipt_blocks} blocks"
    # Verify the receipt adds up
    try:
        verify_receipt_accounting(receipt)
    except InvalidReceipt as exc:
        return EntryRejection.BAD_RECEIPT, f"{exc.reason}: {exc.message}"
    # Verify a signed-mode job was asked for by the client, at no more than it agreed to pay
    if deposit.mode == "signed" and not entry.client_signature:
        return EntryRejection.MISSING_CLIENT_SIGNATURE, "a signed-mode deposit pays only jobs its owner signed"
    if (deposit.mode == "signed" or entry.max_price) and receipt.total_price > entry.max_price:
        return EntryRejection.PRICE_ABOVE_MAX, f"total {receipt.total_price} exceeds max price {entry.max_price}"
    return None


def get_entry_checks(entry: SettlementEntry, deposit: Deposit) -> tuple[SignatureCheck | None, SignatureCheck | None]:
    """The entry's (miner, client) signature checks; the client one only in signed mode."""
    client = client_signature_check(entry, deposit.owner) if deposit.mode == "signed" else None
    return miner_signature_check(entry.receipt), client


def verify_settle_batch(state: StateDelta, tx: SettleBatch, ctx: TxContext) -> BatchPlan:
    """Judge every entry in order; the plan pays the valid ones and reports the rest.

    Signature checks the node already ran in bulk when it admitted the tx (``aitbc.node.verify``)
    come in as ``ctx.block.is_known_signature``; a check it does not vouch for is run here."""
    params = ctx.params
    is_known_valid = ctx.block.is_known_signature
    # Verify the batch is within the chain's limit
    if len(tx.entries) > params.max_batch_entries:
        raise InvalidTx(
            TxRejection.BATCH_TOO_LARGE, f"{len(tx.entries)} entries; a batch holds at most {params.max_batch_entries}"
        )
    plan = BatchPlan()
    seen: set[str] = set()
    for entry in tx.entries:
        receipt = entry.receipt
        deposit = plan.deposits.get(entry.deposit_id) or state.get_deposit(entry.deposit_id)
        problem = get_entry_problem(entry, deposit, tx.sender, ctx)
        if problem is None and (receipt.job_id in seen or is_job_paid(state, receipt.job_id)):
            problem = EntryRejection.ALREADY_PAID, f"job {receipt.job_id} was already paid or has an escrow"
        if problem is None:
            assert deposit is not None
            problem = _get_signature_problem(entry, deposit, is_known_valid)
        charge = compute_job_charge(receipt.total_price, params)
        if problem is None:
            assert deposit is not None
            problem = _get_funds_problem(deposit, charge, ctx.height)
        if problem is not None:
            reason, message = problem
            plan.events.append(
                ChainEvent(
                    kind="settle_rejected",
                    job_id=receipt.job_id,
                    client=receipt.client,
                    coordinator=tx.sender,
                    amount=0,
                    tx_hash=ctx.tx_hash,
                    miner=receipt.miner,
                    reason=f"{reason.value}: {message}",
                    deposit_id=entry.deposit_id,
                )
            )
            continue
        assert deposit is not None
        seen.add(receipt.job_id)
        fee = charge - receipt.total_price
        plan.deposits[deposit.id] = msgspec.structs.replace(
            deposit,
            balance=deposit.balance - charge,
            period=compute_period(ctx.height, deposit),
            spent_in_period=get_spent_in_period(deposit, ctx.height) + charge,
            spent_total=deposit.spent_total + charge,
            jobs_paid=deposit.jobs_paid + 1,
        )
        receipt_hash = compute_receipt_hash(receipt)
        plan.paid.append(
            PaidJob(
                job_id=receipt.job_id,
                deposit_id=deposit.id,
                miner=receipt.miner,
                paid_to_miner=receipt.total_price,
                protocol_fee=fee,
                receipt_hash=receipt_hash,
                height=ctx.height,
                expires_height=get_job_expiry(receipt.job_id) or 0,
            )
        )
        plan.credits[receipt.miner] = plan.credits.get(receipt.miner, 0) + receipt.total_price
        plan.credits[REWARD_POOL_ADDRESS] = plan.credits.get(REWARD_POOL_ADDRESS, 0) + fee
        plan.audit_candidates.append(compute_audit_candidate(receipt, deposit.owner, charge, fee, receipt_hash))
        plan.events.append(
            ChainEvent(
                kind="settled",
                job_id=receipt.job_id,
                client=deposit.owner,
                coordinator=tx.sender,
                amount=charge,
                tx_hash=ctx.tx_hash,
                miner=receipt.miner,
                paid_to_miner=receipt.total_price,
                protocol_fee=fee,
                receipt_hash=receipt_hash,
                deposit_id=deposit.id,
            )
        )
    # Verify no credit overflows a balance (amounts are bounded by deposits, so only a pathological state could)
    for address, amount in plan.credits.items():
        if state.get_account(address).balance + amount > MAX_U64:
            raise InvalidTx(TxRejection.AMOUNT_OVERFLOW, f"the balance of {address} would overflow")
    return plan


def _get_signature_problem(
    entry: SettlementEntry, deposit: Deposit, is_known_valid: SignatureOracle | None
) -> tuple[EntryRejection, str] | None:
    miner_check, client_check = get_entry_checks(entry, deposit)
    # Verify the client signed the job request (signed mode)
    if deposit.mode == "signed" and (client_check is None or not _holds(client_check, is_known_valid)):
        return EntryRejection.BAD_CLIENT_SIGNATURE, "the client's signature over the job request does not verify"
    # Verify the miner signed the receipt
    if miner_check is None or not _holds(miner_check, is_known_valid):
        return EntryRejection.BAD_MINER_SIGNATURE, "the miner's signature over the receipt does not verify"
    return None


def _holds(check: SignatureCheck, is_known_valid: SignatureOracle | None) -> bool:
    return (is_known_valid is not None and is_known_valid(check)) or is_valid_signature_check(check)


def _get_funds_problem(deposit: Deposit, charge: int, height: int) -> tuple[EntryRejection, str] | None:
    # Verify the deposit covers the total and its protocol fee, within the cap of this period
    if charge > deposit.balance:
        return EntryRejection.INSUFFICIENT_DEPOSIT, f"the deposit holds {deposit.balance}; the job costs {charge}"
    room = get_cap_room(deposit, height)
    if room is not None and charge > room:
        return EntryRejection.CAP_EXCEEDED, f"{room} left under the cap this period; the job costs {charge}"
    return None


def process_settle_batch(state: StateDelta, tx: SettleBatch, ctx: TxContext, plan: BatchPlan) -> None:
    for deposit in plan.deposits.values():
        state.set_deposit(deposit)
    for record in plan.paid:
        state.set_paid(record.job_id, record)
    for address, amount in sorted(plan.credits.items()):
        process_credit(state, address, amount)
    for event in plan.events:
        state.emit(event)
    state.audit_candidates.extend(plan.audit_candidates)
