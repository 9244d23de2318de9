"""``process_tx``: the steps every tx runs once, and the one table of tx kinds.

Every tx goes through the same pipeline, in this order; each step either
raises ``InvalidTx`` with a machine-readable reason or passes, and nothing is
written until every check has passed, so a refused tx leaves no trace:

1. ``check_tx_stateless``: chain id, fee floor, amount rules, the kind's own
   stateless checks;
2. the kind's ``verify`` (its ``# Verify`` checks against state); it returns
   whatever its ``process`` will write (the *plan*);
3. ``verify_sender``: the nonce is the sender's next one and the balance covers
   ``compute_tx_cost``;
4. for kinds that pay a recipient from the sender: the recipient's balance
   stays representable;
5. the sender is charged (cost, nonce + 1) and the fee paid (``process_fee``);
   the recipient, if any, is credited;
6. the kind's ``process`` writes its plan.

**Adding a tx kind**: define its struct in ``aitbc.protocol.tx`` (and add it to
the ``Tx`` union), write a rule module in ``aitbc.chain`` with its
``verify_<kind>`` and ``process_<kind>``, and add one ``TxKind`` entry to
``TX_KINDS`` below. Nothing else dispatches on tx kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aitbc.chain.audits import (
    process_audit_change,
    process_submit_audit,
    verify_bond_miner,
    verify_submit_audit,
    verify_unbond_miner,
)
from aitbc.chain.context import TxContext
from aitbc.chain.deposits import (
    process_open_deposit,
    process_settle_batch,
    process_top_up_deposit,
    process_withdraw_deposit,
    verify_open_deposit,
    verify_open_deposit_stateless,
    verify_settle_batch,
    verify_top_up_deposit,
    verify_withdraw_deposit,
)
from aitbc.chain.entries import Account
from aitbc.chain.escrow import (
    process_open_escrow,
    process_refund_escrow,
    process_settle_job,
    verify_open_escrow,
    verify_refund_escrow,
    verify_settle_job,
    verify_settle_job_stateless,
)
from aitbc.chain.evidence import process_report_evidence, verify_report_evidence
from aitbc.chain.governance import (
    process_governance_change,
    process_submit_proposal,
    verify_deposit_proposal,
    verify_submit_proposal,
    verify_vote,
)
from aitbc.chain.ledger import process_credit, process_fee
from aitbc.chain.multisig import process_create_multisig, verify_create_multisig, verify_multisig_transfer
from aitbc.chain.params import ChainParams
from aitbc.chain.staking import process_staking_change, verify_delegate, verify_stake, verify_unstake
from aitbc.chain.state import StateDelta
from aitbc.chain.training_audit import (
    process_training_audit,
    verify_answer_training_audit,
    verify_reveal_training_step,
    verify_submit_training_audit,
)
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.tx import (
    AnswerTrainingAudit,
    BondMiner,
    CreateMultisig,
    Delegate,
    DepositProposal,
    GovernanceVote,
    MultisigTransfer,
    OpenDeposit,
    OpenEscrow,
    RefundEscrow,
    ReportEvidence,
    RevealTrainingStep,
    SettleBatch,
    SettleJob,
    SettleJobZk,
    Stake,
    SubmitAudit,
    SubmitProposal,
    SubmitTrainingAudit,
    TopUpDeposit,
    Transfer,
    Tx,
    TxBase,
    UnbondMiner,
    Unstake,
    WithdrawDeposit,
)
from aitbc.protocol.types import MAX_U64

TxT = TypeVar("TxT", bound=TxBase)
PlanT = TypeVar("PlanT")


def verify_nothing(state: StateDelta, tx: TxBase, ctx: TxContext) -> None:
    """For kinds whose only rules are the shared steps (a plain transfer)."""


def process_nothing(state: StateDelta, tx: TxBase, ctx: TxContext, plan: None) -> None:
    """For kinds that write nothing beyond the shared steps."""


@dataclass(frozen=True, slots=True)
class TxKind(Generic[TxT, PlanT]):
    """How one tx kind is checked and applied, beyond the steps every tx shares."""

    verify: Callable[[StateDelta, TxT, TxContext], PlanT]
    """The kind's checks against state (before the sender step); returns the plan ``process`` writes."""
    process: Callable[[StateDelta, TxT, TxContext, PlanT], None]
    """The kind's writes; runs only after every check passed, and must not raise."""
    moves_amount: bool = False
    """The tx carries an ``amount`` that must be positive, with ``amount + fee`` representable."""
    spends_amount: bool = False
    """The sender pays ``amount`` on top of the fee (``compute_tx_cost``)."""
    pays_recipient: bool = False
    """The ``amount`` goes to the tx's ``recipient`` (checked to fit, then credited, by the shared steps)."""
    verify_stateless: Callable[[TxT, str], None] | None = None
    """Extra checks that need no state, given the chain id (run with the shared stateless checks)."""


TX_KINDS: Mapping[type[TxBase], TxKind[Any, Any]] = {
    Transfer: TxKind(verify_nothing, process_nothing, moves_amount=True, spends_amount=True, pays_recipient=True),
    OpenEscrow: TxKind(verify_open_escrow, process_open_escrow, moves_amount=True, spends_amount=True),
    SettleJob: TxKind(verify_settle_job, process_settle_job, verify_stateless=verify_settle_job_stateless),
    SettleJobZk: TxKind(verify_settle_job, process_settle_job, verify_stateless=verify_settle_job_stateless),
    RefundEscrow: TxKind(verify_refund_escrow, process_refund_escrow),
    CreateMultisig: TxKind(verify_create_multisig, process_create_multisig),
    MultisigTransfer: TxKind(
        verify_multisig_transfer, process_nothing, moves_amount=True, spends_amount=True, pays_recipient=True
    ),
    Stake: TxKind(verify_stake, process_staking_change, moves_amount=True, spends_amount=True),
    Delegate: TxKind(verify_delegate, process_staking_change, moves_amount=True, spends_amount=True),
    Unstake: TxKind(verify_unstake, process_staking_change, moves_amount=True),
    ReportEvidence: TxKind(verify_report_evidence, process_report_evidence),
    SubmitProposal: TxKind(verify_submit_proposal, process_submit_proposal),
    DepositProposal: TxKind(verify_deposit_proposal, process_governance_change, moves_amount=True, spends_amount=True),
    GovernanceVote: TxKind(verify_vote, process_governance_change),
    OpenDeposit: TxKind(
        verify_open_deposit,
        process_open_deposit,
        moves_amount=True,
        spends_amount=True,
        verify_stateless=verify_open_deposit_stateless,
    ),
    TopUpDeposit: TxKind(verify_top_up_deposit, process_top_up_deposit, moves_amount=True, spends_amount=True),
    WithdrawDeposit: TxKind(verify_withdraw_deposit, process_withdraw_deposit, moves_amount=True),
    SettleBatch: TxKind(verify_settle_batch, process_settle_batch),
    BondMiner: TxKind(verify_bond_miner, process_audit_change, moves_amount=True, spends_amount=True),
    UnbondMiner: TxKind(verify_unbond_miner, process_audit_change, moves_amount=True),
    SubmitAudit: TxKind(verify_submit_audit, process_submit_audit),
    SubmitTrainingAudit: TxKind(verify_submit_training_audit, process_training_audit),
    AnswerTrainingAudit: TxKind(verify_answer_training_audit, process_training_audit),
    RevealTrainingStep: TxKind(verify_reveal_training_step, process_training_audit),
}
"""Every tx kind the chain executes, by struct type. A kind missing here is refused (``unknown_tx_type``)."""


def get_tx_kind(tx: TxBase) -> TxKind[Any, Any]:
    kind = TX_KINDS.get(type(tx))
    if kind is None:
        raise InvalidTx(TxRejection.UNKNOWN_TX_TYPE, f"unknown tx kind {type(tx).__name__}")
    return kind


def _amount(tx: TxBase) -> int:
    amount: int = getattr(tx, "amount")  # noqa: B009 - present on every kind flagged moves_amount
    return amount


def check_tx_stateless(tx: Tx, chain_id: str, params: ChainParams) -> None:
    """Rules that need no state: chain id, fee floor, amounts and their sum, the kind's own."""
    # Verify the tx is for this chain
    if tx.chain_id != chain_id:
        raise InvalidTx(TxRejection.WRONG_CHAIN_ID, f"tx is for chain {tx.chain_id!r}, this is {chain_id!r}")
    # Verify the fee meets the floor
    if tx.fee < params.min_fee:
        raise InvalidTx(TxRejection.FEE_TOO_LOW, f"fee {tx.fee} is below the minimum {params.min_fee}")
    kind = TX_KINDS.get(type(tx))
    if kind is None:
        return
    if kind.moves_amount:
        amount = _amount(tx)
        # Verify something is moved
        if amount == 0:
            raise InvalidTx(TxRejection.ZERO_AMOUNT, "amount must be positive")
        # Verify amount + fee is representable
        if amount + tx.fee > MAX_U64:
            raise InvalidTx(TxRejection.AMOUNT_OVERFLOW, "amount + fee overflows the maximum amount")
    if kind.verify_stateless is not None:
        kind.verify_stateless(tx, chain_id)


def _cost(tx: TxBase, kind: TxKind[Any, Any] | None) -> int:
    return _amount(tx) + tx.fee if kind is not None and kind.spends_amount else tx.fee


def compute_tx_cost(tx: Tx) -> int:
    """What the sender's balance must cover for this tx."""
    return _cost(tx, TX_KINDS.get(type(tx)))


def verify_sender(state: StateDelta, tx: Tx, cost: int) -> Account:
    """Nonce is the sender's next one, and the balance covers the tx's ``cost``; returns the sender's account."""
    sender = state.get_account(tx.sender)
    # Verify the nonce is the sender's next one (no replay, no gap)
    if tx.nonce < sender.nonce:
        raise InvalidTx(TxRejection.NONCE_TOO_LOW, f"nonce {tx.nonce} already used; next is {sender.nonce}")
    if tx.nonce > sender.nonce:
        raise InvalidTx(TxRejection.NONCE_TOO_HIGH, f"nonce {tx.nonce} skips ahead; next is {sender.nonce}")
    # Verify the sender can pay amount + fee
    if sender.balance < cost:
        raise InvalidTx(
            TxRejection.INSUFFICIENT_BALANCE, f"balance {sender.balance} does not cover amount + fee = {cost}"
        )
    return sender


def _verify_recipient_fits(state: StateDelta, tx: TxBase, recipient: str, cost: int) -> None:
    # Verify the recipient's balance stays representable (a self-payment first pays the cost)
    balance = state.get_account(recipient).balance - (cost if recipient == tx.sender else 0)
    if balance + _amount(tx) > MAX_U64:
        raise InvalidTx(TxRejection.AMOUNT_OVERFLOW, "recipient balance would overflow")


def process_tx(state: StateDelta, tx: Tx, ctx: TxContext) -> None:
    """Run ``tx`` against ``state`` in the block and position ``ctx`` names (module docstring)."""
    kind = get_tx_kind(tx)
    check_tx_stateless(tx, ctx.chain_id, ctx.params)
    plan = kind.verify(state, tx, ctx)
    cost = _cost(tx, kind)
    sender = verify_sender(state, tx, cost)
    recipient: str | None = getattr(tx, "recipient", None) if kind.pays_recipient else None
    if recipient is not None:
        _verify_recipient_fits(state, tx, recipient, cost)

    state.set_account(tx.sender, Account(balance=sender.balance - cost, nonce=sender.nonce + 1))
    process_fee(state, tx.fee, ctx.proposer)
    if recipient is not None:
        process_credit(state, recipient, _amount(tx))
    kind.process(state, tx, ctx, plan)
