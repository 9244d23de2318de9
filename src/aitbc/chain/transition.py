"""The state transition: one named rule per tx kind, and the block rules around them.

Each ``process_*`` is a run of ``# Verify`` checks that raise ``InvalidTx``
with a machine-readable reason, followed by the mutation; nothing is written
unless every check passed, so a refused tx leaves no trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from aitbc.chain.context import BlockContext, SignatureOracle
from aitbc.chain.deposits import (
    is_job_paid,
    process_deposit_withdrawals,
    process_expired_paid_jobs,
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
from aitbc.chain.params import REWARD_POOL_ADDRESS, ChainParams
from aitbc.chain.smt import SparseMerkleTree
from aitbc.chain.state import (
    Account,
    ChainEvent,
    ChainState,
    Escrow,
    EscrowState,
    MultisigAccount,
    StateDelta,
    compute_state_root,
)
from aitbc.chain.validators import (
    compute_rewards,
    get_active_powers,
    get_bonded,
    is_punished,
    process_bond,
    process_commit_signers,
    process_epoch,
    process_matured_unbondings,
    process_slash,
    process_unbond,
)
from aitbc.protocol.block import (
    Block,
    BlockHeader,
    block_hash,
    compute_tx_root,
    sign_header,
    verify_header_signature,
)
from aitbc.protocol.crypto import KeyPair, is_valid_signature_check
from aitbc.protocol.errors import InvalidBlock, InvalidSignature, InvalidTx, TxRejection
from aitbc.protocol.receipt import (
    InvalidReceipt,
    compute_receipt_hash,
    verify_coordinator_signature,
    verify_miner_signature,
    verify_receipt_accounting,
)
from aitbc.protocol.tx import (
    CreateMultisig,
    Delegate,
    MultisigTransfer,
    OpenDeposit,
    OpenEscrow,
    RefundEscrow,
    ReportEvidence,
    SettleJob,
    SettleJobZk,
    Stake,
    SettleBatch,
    TopUpDeposit,
    Transfer,
    Tx,
    Unstake,
    VerifiedTx,
    WithdrawDeposit,
    complete_tx_check,
    compute_multisig_address,
    prepare_tx_check,
)
from aitbc.protocol.types import MAX_U64
from aitbc.protocol.vote import (
    CommitCertificate,
    commit_vote,
    get_evidence_problem,
    is_valid_vote_signature,
)
from aitbc.protocol.zk import get_receipt_proof_problem


def check_tx_stateless(tx: Tx, chain_id: str, params: ChainParams) -> None:
    """Rules that need no state: chain id, fee floor, amounts and their sum."""
    # Verify the tx is for this chain
    if tx.chain_id != chain_id:
        raise InvalidTx(TxRejection.WRONG_CHAIN_ID, f"tx is for chain {tx.chain_id!r}, this is {chain_id!r}")
    # Verify the fee meets the floor
    if tx.fee < params.min_fee:
        raise InvalidTx(TxRejection.FEE_TOO_LOW, f"fee {tx.fee} is below the minimum {params.min_fee}")
    if isinstance(
        tx, Transfer | OpenEscrow | MultisigTransfer | Stake | Delegate | Unstake | OpenDeposit | TopUpDeposit
    ) or isinstance(tx, WithdrawDeposit):
        # Verify something is moved
        if tx.amount == 0:
            raise InvalidTx(TxRejection.ZERO_AMOUNT, "amount must be positive")
        # Verify amount + fee is representable
        if tx.amount + tx.fee > MAX_U64:
            raise InvalidTx(TxRejection.AMOUNT_OVERFLOW, "amount + fee overflows the maximum amount")
    if isinstance(tx, SettleJob | SettleJobZk) and tx.receipt.chain_id != chain_id:
        raise InvalidTx(TxRejection.WRONG_CHAIN_ID, "the receipt is for another chain")
    if isinstance(tx, OpenDeposit):
        verify_open_deposit_stateless(tx, chain_id)


def compute_tx_cost(tx: Tx) -> int:
    """What the sender's balance must cover for this tx."""
    if isinstance(tx, Transfer | OpenEscrow | MultisigTransfer | Stake | Delegate | OpenDeposit | TopUpDeposit):
        return tx.amount + tx.fee
    return tx.fee


def _verify_sender(state: StateDelta, tx: Tx) -> Account:
    """Nonce is the sender's next one, and the balance covers the tx's cost."""
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
    return sender


def _charge_sender(state: StateDelta, tx: Tx, sender: Account, proposer: str) -> None:
    state.set_account(tx.sender, Account(balance=sender.balance - compute_tx_cost(tx), nonce=sender.nonce + 1))
    process_fee(state, tx.fee, proposer)


def _credit(state: StateDelta, address: str, amount: int) -> None:
    if amount:
        account = state.get_account(address)
        state.set_account(address, Account(balance=account.balance + amount, nonce=account.nonce))


def process_transfer(state: StateDelta, tx: Transfer, proposer: str, chain_id: str, params: ChainParams) -> None:
    check_tx_stateless(tx, chain_id, params)
    sender = _verify_sender(state, tx)
    # Verify the recipient's balance stays representable
    recipient_balance = state.get_account(tx.recipient).balance - (
        compute_tx_cost(tx) if tx.recipient == tx.sender else 0
    )
    if recipient_balance + tx.amount > MAX_U64:
        raise InvalidTx(TxRejection.AMOUNT_OVERFLOW, "recipient balance would overflow")

    _charge_sender(state, tx, sender, proposer)
    _credit(state, tx.recipient, tx.amount)


def process_create_multisig(
    state: StateDelta, tx: CreateMultisig, proposer: str, chain_id: str, params: ChainParams, height: int
) -> None:
    check_tx_stateless(tx, chain_id, params)
    # Verify the policy: distinct members, 1 <= threshold <= members
    if len(set(tx.members)) != len(tx.members):
        raise InvalidTx(TxRejection.BAD_MULTISIG_POLICY, "multisig members must be distinct")
    if not 1 <= tx.threshold <= len(tx.members):
        raise InvalidTx(
            TxRejection.BAD_MULTISIG_POLICY, f"threshold {tx.threshold} must lie within 1..{len(tx.members)}"
        )
    # Verify the account does not exist yet (its address is derived from the creator's nonce)
    address = compute_multisig_address(tx.sender, tx.nonce)
    if state.get_multisig(address) is not None:  # pragma: no cover - a nonce is used once
        raise InvalidTx(TxRejection.MULTISIG_EXISTS, f"multisig account {address} already exists")
    sender = _verify_sender(state, tx)

    _charge_sender(state, tx, sender, proposer)
    state.set_multisig(
        MultisigAccount(
            address=address,
            members=sorted(tx.members),
            threshold=tx.threshold,
            creator=tx.sender,
            created_height=height,
        )
    )


def process_multisig_transfer(
    state: StateDelta, tx: MultisigTransfer, proposer: str, chain_id: str, params: ChainParams
) -> None:
    """A spend from an m-of-n account. The approvals' signatures were checked with every tx's
    signature (``prepare_tx_check``); here: are the signers members, and are there enough."""
    check_tx_stateless(tx, chain_id, params)
    # Verify the sender is a multisig account
    policy = state.get_multisig(tx.sender)
    if policy is None:
        raise InvalidTx(TxRejection.NOT_MULTISIG, f"{tx.sender} is not a multisig account")
    # Verify every approval is a member's, and at least threshold members approve
    members = set(policy.members)
    outsiders = [a.signer for a in tx.approvals if a.signer not in members]
    if outsiders:
        raise InvalidTx(TxRejection.NOT_MULTISIG_MEMBER, f"{outsiders[0]} is not a member of {tx.sender}")
    signers = {a.signer for a in tx.approvals}
    if len(signers) < policy.threshold:
        raise InvalidTx(
            TxRejection.MULTISIG_THRESHOLD_NOT_MET,
            f"{len(signers)} of {len(policy.members)} members approved; {policy.threshold} are needed",
        )
    sender = _verify_sender(state, tx)
    # Verify the recipient's balance stays representable
    recipient_balance = state.get_account(tx.recipient).balance - (
        compute_tx_cost(tx) if tx.recipient == tx.sender else 0
    )
    if recipient_balance + tx.amount > MAX_U64:
        raise InvalidTx(TxRejection.AMOUNT_OVERFLOW, "recipient balance would overflow")

    _charge_sender(state, tx, sender, proposer)
    _credit(state, tx.recipient, tx.amount)


def process_fee(state: StateDelta, fee: int, proposer: str) -> None:
    """Fees go to the proposer of the block that includes the tx; in a BFT block they are collected and split
    among the proposer and the voters at its end (``process_end_block``)."""
    if state.voters is not None:
        state.fees += fee
        return
    _credit(state, proposer, fee)


def process_end_block(state: StateDelta, proposer: str, params: ChainParams) -> None:
    """End of a BFT block: the fees it collected go by the reward rule to the proposer and the voters."""
    if state.voters is None or state.fees == 0:
        return
    staking, authorities = state.get_staking(), state.get_authorities()
    credits = compute_rewards(staking, authorities, params.staking, proposer, state.fees, state.voters)
    state.fees = 0
    for address, amount in sorted(credits.items()):
        _credit(state, address, amount)


def process_open_escrow(
    state: StateDelta, tx: OpenEscrow, proposer: str, chain_id: str, params: ChainParams, height: int, tx_hash: str
) -> None:
    check_tx_stateless(tx, chain_id, params)
    # Verify the job has no escrow yet, and was not paid from a deposit
    if state.get_escrow(tx.job_id) is not None:
        raise InvalidTx(TxRejection.ESCROW_EXISTS, f"job {tx.job_id} already has an escrow")
    if is_job_paid(state, tx.job_id):
        raise InvalidTx(TxRejection.ALREADY_PAID, f"job {tx.job_id} was already paid from a deposit")
    # Verify the deadline lies ahead, within the limit
    if not height <= tx.deadline_height <= height + params.max_escrow_blocks:
        raise InvalidTx(
            TxRejection.BAD_DEADLINE,
            f"deadline height {tx.deadline_height} must lie within {height}..{height + params.max_escrow_blocks}",
        )
    sender = _verify_sender(state, tx)

    _charge_sender(state, tx, sender, proposer)
    _record(
        state,
        Escrow(
            job_id=tx.job_id,
            client=tx.sender,
            coordinator=tx.coordinator,
            amount=tx.amount,
            deadline_height=tx.deadline_height,
            opened_height=height,
        ),
        "escrow_opened",
        tx_hash,
    )


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


def _verify_escrow_open(escrow: Escrow | None, job_id: str) -> Escrow:
    if escrow is None:
        raise InvalidTx(TxRejection.NO_ESCROW, f"job {job_id} has no escrow")
    if escrow.state == EscrowState.SETTLED:
        raise InvalidTx(TxRejection.ALREADY_SETTLED, f"job {job_id} is already settled")
    if escrow.state == EscrowState.REFUNDED:
        raise InvalidTx(TxRejection.ALREADY_REFUNDED, f"job {job_id} was refunded")
    return escrow


def process_settle_job(
    state: StateDelta,
    tx: SettleJob | SettleJobZk,
    proposer: str,
    chain_id: str,
    params: ChainParams,
    height: int,
    tx_hash: str,
) -> None:
    check_tx_stateless(tx, chain_id, params)
    receipt = tx.receipt
    # Verify the escrow is open and not past its deadline
    escrow = _verify_escrow_open(state.get_escrow(receipt.job_id), receipt.job_id)
    if height > escrow.deadline_height:
        raise InvalidTx(TxRejection.ESCROW_EXPIRED, f"the escrow expired at height {escrow.deadline_height}")
    # Verify the escrow's coordinator sends it, and the receipt names the same parties
    if tx.sender != escrow.coordinator or receipt.coordinator != escrow.coordinator:
        raise InvalidTx(TxRejection.NOT_COORDINATOR, "only the escrow's coordinator may settle the job")
    if receipt.client != escrow.client:
        raise InvalidTx(TxRejection.BAD_RECEIPT, "the receipt names another client")
    if receipt.expires_height:
        raise InvalidTx(TxRejection.BAD_RECEIPT, "a deposit job's receipt (it has an expiry) settles in a batch")
    # Verify the receipt: miner signed it, the coordinator countersigned (= assigned that miner), it adds up
    try:
        verify_miner_signature(receipt)
        verify_coordinator_signature(receipt)
        verify_receipt_accounting(receipt)
    except InvalidReceipt as exc:
        raise InvalidTx(TxRejection.BAD_RECEIPT, f"{exc.reason}: {exc.message}") from None
    # Verify the escrow covers the total and its protocol fee
    fee = compute_protocol_fee(receipt.total_price, params)
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
    sender = _verify_sender(state, tx)

    paid = receipt.total_price
    rest = escrow.amount - paid - fee
    receipt_hash = compute_receipt_hash(receipt)
    _charge_sender(state, tx, sender, proposer)
    _credit(state, receipt.miner, paid)
    _credit(state, REWARD_POOL_ADDRESS, fee)
    _credit(state, escrow.client, rest)
    _record(
        state,
        msgspec.structs.replace(
            escrow,
            state=EscrowState.SETTLED.value,
            miner=receipt.miner,
            paid_to_miner=paid,
            protocol_fee=fee,
            refunded=rest,
            receipt_hash=receipt_hash,
            closed_height=height,
        ),
        "settled",
        tx_hash,
    )


def _refund(state: StateDelta, escrow: Escrow, height: int, tx_hash: str) -> None:
    _credit(state, escrow.client, escrow.amount)
    _record(
        state,
        msgspec.structs.replace(escrow, state=EscrowState.REFUNDED.value, refunded=escrow.amount, closed_height=height),
        "refunded",
        tx_hash,
    )


def process_refund_escrow(
    state: StateDelta, tx: RefundEscrow, proposer: str, chain_id: str, params: ChainParams, height: int, tx_hash: str
) -> None:
    check_tx_stateless(tx, chain_id, params)
    # Verify the escrow is open, and its deadline has passed unless its coordinator gives up on the job
    escrow = _verify_escrow_open(state.get_escrow(tx.job_id), tx.job_id)
    if height <= escrow.deadline_height and tx.sender != escrow.coordinator:
        raise InvalidTx(
            TxRejection.DEADLINE_NOT_REACHED,
            f"the escrow can be settled until height {escrow.deadline_height}; only its coordinator may refund earlier",
        )
    sender = _verify_sender(state, tx)

    _charge_sender(state, tx, sender, proposer)
    _refund(state, escrow, height, tx_hash)


def process_expired_escrows(state: StateDelta, base: ChainState, height: int) -> None:
    """At the start of each block the chain refunds every open escrow whose deadline has passed."""
    for job_id in base.get_expired_escrows(height):
        escrow = state.get_escrow(job_id)
        if escrow is not None and escrow.state == EscrowState.OPEN:
            _refund(state, escrow, height, tx_hash="")


_DEPOSIT_RULES: dict[type, tuple[Any, Any]] = {
    OpenDeposit: (verify_open_deposit, process_open_deposit),
    TopUpDeposit: (verify_top_up_deposit, process_top_up_deposit),
    WithdrawDeposit: (verify_withdraw_deposit, process_withdraw_deposit),
    SettleBatch: (verify_settle_batch, process_settle_batch),
}


def process_tx(
    state: StateDelta,
    tx: Tx,
    proposer: str,
    chain_id: str,
    params: ChainParams,
    height: int = 0,
    tx_hash: str = "",
    is_known_signature: SignatureOracle | None = None,
) -> None:
    rules = _DEPOSIT_RULES.get(type(tx))
    if rules is not None:
        check_tx_stateless(tx, chain_id, params)
        ctx = BlockContext(chain_id, height, 0, proposer, params, "", None, is_known_signature).tx(tx_hash, 0)
        plan = rules[0](state, tx, ctx)
        sender = _verify_sender(state, tx)
        _charge_sender(state, tx, sender, proposer)
        rules[1](state, tx, ctx, plan)
        return
    if isinstance(tx, Transfer):
        process_transfer(state, tx, proposer, chain_id, params)
    elif isinstance(tx, OpenEscrow):
        process_open_escrow(state, tx, proposer, chain_id, params, height, tx_hash)
    elif isinstance(tx, SettleJob | SettleJobZk):
        process_settle_job(state, tx, proposer, chain_id, params, height, tx_hash)
    elif isinstance(tx, RefundEscrow):
        process_refund_escrow(state, tx, proposer, chain_id, params, height, tx_hash)
    elif isinstance(tx, CreateMultisig):
        process_create_multisig(state, tx, proposer, chain_id, params, height)
    elif isinstance(tx, MultisigTransfer):
        process_multisig_transfer(state, tx, proposer, chain_id, params)
    elif isinstance(tx, Stake | Delegate | Unstake | ReportEvidence):
        process_staking_tx(state, tx, proposer, chain_id, params, height)
    else:  # pragma: no cover - the Tx union is closed
        raise InvalidTx(TxRejection.UNKNOWN_TX_TYPE, f"unknown tx kind {type(tx).__name__}")


def _verify_last_commit(cert: CommitCertificate, head: BlockHeader, state: ChainState, params: ChainParams) -> None:
    """The precommits a block carries for its parent: for the parent, distinct, each signed by a validator."""
    if cert.chain_id != head.chain_id or cert.height != head.height or cert.block_hash != block_hash(head):
        raise InvalidBlock("last_commit is not for the previous block")
    powers = get_active_powers(state.staking, state.authorities, params.staking)
    seen: set[str] = set()
    for sig in cert.signatures:
        if sig.validator in seen or sig.validator not in powers:
            raise InvalidBlock(f"last_commit names {sig.validator} twice or outside the validator set")
        if not is_valid_vote_signature(commit_vote(cert, sig)):
            raise InvalidBlock(f"last_commit carries a bad signature of {sig.validator}")
        seen.add(sig.validator)


# -- staking (rules in aitbc.chain.validators) ----------------------------------
def process_staking_tx(
    state: StateDelta,
    tx: Stake | Delegate | Unstake | ReportEvidence,
    proposer: str,
    chain_id: str,
    params: ChainParams,
    height: int,
) -> None:
    """``stake`` / ``delegate`` bond tokens, ``unstake`` starts unbonding, ``report_evidence`` slashes."""
    check_tx_stateless(tx, chain_id, params)
    staking, authorities, rules = state.get_staking(), state.get_authorities(), params.staking
    if isinstance(tx, ReportEvidence):
        evidence = tx.evidence
        offender = evidence.vote_a.validator
        # Verify the votes prove a double vote, recent enough, by a validator, not punished yet
        problem = get_evidence_problem(evidence, chain_id)
        if problem is not None:
            raise InvalidTx(TxRejection.BAD_EVIDENCE, problem)
        if evidence.vote_a.height > height or height - evidence.vote_a.height > rules.max_evidence_age:
            raise InvalidTx(TxRejection.EVIDENCE_TOO_OLD, f"evidence must be within {rules.max_evidence_age} blocks")
        known = offender in authorities or offender in get_active_powers(staking, authorities, rules)
        if not known and get_bonded(staking, offender) == 0:
            raise InvalidTx(TxRejection.NOT_A_VALIDATOR, f"{offender} is not a validator")
        if is_punished(staking, offender, evidence.vote_a.height):
            raise InvalidTx(TxRejection.ALREADY_PUNISHED, "this offence was already punished")
        updated, _ = process_slash(staking, offender, height, authorities, rules)
    elif isinstance(tx, Unstake):
        updated = process_unbond(staking, tx.validator, tx.sender, tx.amount, height, rules)
    else:
        validator = tx.sender if isinstance(tx, Stake) else tx.validator
        updated = process_bond(staking, validator, tx.sender, tx.amount, authorities, rules)
    sender = _verify_sender(state, tx)

    _charge_sender(state, tx, sender, proposer)
    state.set_staking(updated)


def process_begin_block(
    state: StateDelta, height: int, proposer: str, params: ChainParams, last_commit: CommitCertificate | None = None
) -> None:
    """Start of every block: downtime (from the previous block's precommits, BFT chains), release matured
    unbondings, the epoch rule, then the block reward."""
    original = staking = state.get_staking()
    authorities, rules = state.get_authorities(), params.staking
    if last_commit is not None:
        signers = frozenset(sig.validator for sig in last_commit.signatures)
        state.voters = signers
        staking = process_commit_signers(staking, signers, last_commit.height, authorities, rules)
    staking, released = process_matured_unbondings(staking, height)
    for delegator, amount in released:
        _credit(state, delegator, amount)
    staking = process_epoch(staking, authorities, rules, height)
    pool = state.get_account(REWARD_POOL_ADDRESS)
    from_pool = pool.balance * rules.reward_pool_payout_bps // 10_000
    reward = rules.block_reward + from_pool
    if reward:
        if from_pool:
            state.set_account(REWARD_POOL_ADDRESS, Account(balance=pool.balance - from_pool, nonce=pool.nonce))
        credits = compute_rewards(staking, authorities, rules, proposer, reward, state.voters)
        for address, amount in sorted(credits.items()):
            _credit(state, address, amount)
        staking = msgspec.structs.replace(staking, minted=staking.minted + rules.block_reward)
    if staking != original:
        state.set_staking(staking)


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
    last_commit: CommitCertificate | None = None,
    is_known_signature: SignatureOracle | None = None,
) -> BlockOutcome:
    """Propose the next block: apply candidates in order, skipping (and reporting) any that fail.

    ``last_commit`` (BFT chains): the precommits we hold for ``head``; they go into the block."""
    height = head.height + 1
    delta = StateDelta(base=state)
    process_expired_escrows(delta, state, height)
    process_deposit_withdrawals(delta, state, height)
    process_expired_paid_jobs(delta, state, height)
    process_begin_block(delta, height, key.address, params, last_commit)
    included: list[VerifiedTx] = []
    dropped: list[tuple[VerifiedTx, InvalidTx]] = []
    size = 0
    proposer = key.address  # (a property that re-encodes the key: once per block, not per tx)
    for vtx in candidates:
        if len(included) >= params.max_block_txs or size + vtx.size > params.max_block_bytes:
            break
        try:
            process_tx(delta, vtx.tx, proposer, head.chain_id, params, height, vtx.hash, is_known_signature)
        except InvalidTx as exc:
            dropped.append((vtx, exc))
            continue
        included.append(vtx)
        size += vtx.size
    process_end_block(delta, proposer, params)
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
    block = Block(
        header=header,
        proposer_signature=sign_header(header, key),
        txs=[v.tx for v in included],
        last_commit=last_commit,
    )
    return BlockOutcome(block, block_hash(header), delta, tree, included, dropped)


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
    """Validate a block someone else proposed against our head and state; raise ``InvalidBlock``.

    ``expected_proposer``: the proposer the BFT rotation names for the block's round (multi-validator
    chains); without it the PoA round robin over ``authorities`` applies. ``is_known_valid(tx_hash)``: the tx's
    signature was already checked (it is in our mempool); only its Ed25519 check is skipped."""
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
    expected = expected_proposer or get_expected_proposer(authorities, header.height)
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
    # Verify every tx applies, in order
    delta = StateDelta(base=state)
    process_expired_escrows(delta, state, header.height)
    process_deposit_withdrawals(delta, state, header.height)
    process_expired_paid_jobs(delta, state, header.height)
    if block.last_commit is not None:
        _verify_last_commit(block.last_commit, head, state, params)
    process_begin_block(delta, header.height, header.proposer, params, block.last_commit)
    for vtx in verified:
        try:
            process_tx(
                delta, vtx.tx, header.proposer, header.chain_id, params, header.height, vtx.hash, is_known_signature
            )
        except InvalidTx as exc:
            raise InvalidBlock(f"tx {vtx.hash} fails: {exc.reason}: {exc.message}") from None
    process_end_block(delta, header.proposer, params)
    # Verify the resulting state root
    state_root, tree = compute_state_root(state, delta)
    if state_root != header.state_root:
        raise InvalidBlock("state root does not match the state after the txs")
    return BlockOutcome(block, block_hash(header), delta, tree, verified, [])
