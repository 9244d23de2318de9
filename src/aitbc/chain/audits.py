"""Audited inference: miner bonds, unpredictable audit selection, re-execution reports, disputes, slashing.

The rule (parameters in ``AuditParams``; ``docs/verification.md`` has the prose and the analysis):

* **Bond** (``bond_miner``): a miner locks at least ``min_miner_bond`` and declares the model digests it
  serves. ``unbond_miner`` starts returning part of it after ``unbonding_blocks``; unbonding amounts stay
  slashable, and nothing is released while the miner takes part in an open audit or dispute.
* **Selection**: every job a block settles becomes a candidate; at the start of the next block it is
  selected with probability ``probability_bps`` by ``is_selected_for_audit(parent hash, job id)`` — the
  hash of the block that settled it, which neither the miner (it ran the job before) nor the coordinator
  (it sent the settle tx before) could know. Anyone can recompute the draw.
* **Auditor**: drawn from the same seed among bonded miners (≥ ``min_miner_bond``) that declared the job's
  model digest, never the job's miner. It re-runs the job and reports the output hash (``submit_audit``)
  within ``audit_window_blocks``. A matching report closes the audit as **passed** and the reward pool pays
  the auditor ``audit_fee_bps`` of the job's protocol fee; a late auditor gets nothing (**expired**).
* **Dispute**: a differing report opens a dispute; two referees are drawn the same way (excluding the miner
  and the auditor) and report within ``dispute_window_blocks``. When both reported, or the window closed:
  more referees on the auditor's side → the **miner** is slashed; more on the miner's side → the
  **auditor** is slashed (a false accusation costs as much as fraud); otherwise **inconclusive**.
* **Slash**: ``fraud_slash_bps`` of the loser's bond (bonded first, then unbonding). Of it,
  ``reporter_reward_bps`` goes to the honest re-executors in equal shares; then, if the miner lost, the
  client is refunded what it paid for the job; the rest is **burned** (``AuditState.burned``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from aitbc.chain.audit_params import AuditParams
from aitbc.chain.audit_types import (
    MAX_CLOSED_AUDITS,
    OPEN_AUDITS,
    Audit,
    AuditState,
    AuditStatus,
    MinerBond,
    RefereeReport,
    Unbonding,
    get_audit,
    get_bond,
)
from aitbc.chain.context import BlockContext, TxContext
from aitbc.chain.entries import Account, ChainEvent
from aitbc.chain.ledger import process_credit
from aitbc.chain.params import REWARD_POOL_ADDRESS
from aitbc.chain.state import StateDelta
from aitbc.protocol.address import is_valid_address
from aitbc.protocol.crypto import sha256
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.tx import BondMiner, SubmitAudit, UnbondMiner

BPS = 10_000


# -- pure draws -------------------------------------------------------------------------------------------
def compute_draw(seed_hash: str, job_id: str, purpose: bytes) -> int:
    """A 64-bit draw from a block hash, a job id and a purpose (selection, auditor, referees)."""
    digest = sha256(bytes.fromhex(seed_hash) + b"aitbc-audit\x00" + purpose + b"\x00" + job_id.encode())
    return int.from_bytes(digest[:8], "big")


def is_selected_for_audit(parent_hash: str, job_id: str, probability_bps: int) -> bool:
    """Whether a job settled in the block ``parent_hash`` is audited: uniform over 2^64 draws, so the
    modulo bias is below 10^-15."""
    return compute_draw(parent_hash, job_id, b"select") % BPS < probability_bps


def get_eligible_auditors(audits: AuditState, model_digest: str, exclude: set[str], rules: AuditParams) -> list[str]:
    """Bonded miners (at the minimum) that declared ``model_digest``, sorted, without ``exclude``."""
    return [
        b.miner
        for b in audits.bonds
        if b.amount >= rules.min_miner_bond and model_digest in b.models and b.miner not in exclude
    ]


def choose(pool: list[str], seed_hash: str, job_id: str, purpose: bytes, count: int) -> list[str]:
    """``count`` distinct members of ``pool`` drawn from the seed (a deterministic partial shuffle)."""
    remaining = list(pool)
    chosen = []
    for i in range(min(count, len(remaining))):
        index = compute_draw(seed_hash, job_id, purpose + bytes([i])) % len(remaining)
        chosen.append(remaining.pop(index))
    return chosen


def with_bond(audits: AuditState, bond: MinerBond) -> AuditState:
    others = [b for b in audits.bonds if b.miner != bond.miner]
    kept = [*others, bond] if bond.slashable or bond.models else others
    return msgspec.structs.replace(audits, bonds=sorted(kept, key=lambda b: b.miner))


def with_audit(audits: AuditState, audit: Audit) -> AuditState:
    return msgspec.structs.replace(
        audits, audits=[audit if a.job.job_id == audit.job.job_id else a for a in audits.audits]
    )


# -- bond_miner / unbond_miner ------------------------------------------------------------------------------
def verify_bond_miner(state: StateDelta, tx: BondMiner, ctx: TxContext) -> AuditState:
    audits, rules = state.get_audits(), ctx.params.audit
    bond = get_bond(audits, tx.sender) or MinerBond(miner=tx.sender)
    # Verify the bond reaches the minimum and declares a bounded set of models
    if bond.amount + tx.amount < rules.min_miner_bond:
        raise InvalidTx(TxRejection.BOND_TOO_LOW, f"a miner bond must be at least {rules.min_miner_bond}")
    models = sorted(set(tx.models)) if tx.models else bond.models
    if len(models) > rules.max_bond_models:
        raise InvalidTx(TxRejection.MALFORMED, f"at most {rules.max_bond_models} model digests per bond")
    return with_bond(audits, msgspec.structs.replace(bond, amount=bond.amount + tx.amount, models=models))


def verify_unbond_miner(state: StateDelta, tx: UnbondMiner, ctx: TxContext) -> AuditState:
    audits = state.get_audits()
    bond = get_bond(audits, tx.sender)
    # Verify the miner has that much bonded
    if bond is None or bond.amount < tx.amount:
        raise InvalidTx(TxRejection.NO_BOND, f"bonded {0 if bond is None else bond.amount}, less than {tx.amount}")
    release = Unbonding(tx.amount, ctx.height + ctx.params.audit.unbonding_blocks)
    updated = msgspec.structs.replace(bond, amount=bond.amount - tx.amount, unbonding=[*bond.unbonding, release])
    return with_bond(audits, updated)


def process_audit_change(state: StateDelta, tx: BondMiner | UnbondMiner, ctx: TxContext, audits: AuditState) -> None:
    """Store the audit state the kind's ``verify_*`` computed (the shared steps moved the amount)."""
    state.set_audits(audits)


# -- slashing -----------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Settlement:
    """The token moves a decided audit makes: credits, and what leaves the supply."""

    credits: dict[str, int] = field(default_factory=dict)
    burned: int = 0
    pool_debit: int = 0

    def credit(self, address: str, amount: int) -> None:
        if amount:
            self.credits[address] = self.credits.get(address, 0) + amount


def compute_slash(bond: MinerBond, bps: int) -> tuple[MinerBond, int]:
    """Take ``bps`` of the bond's slashable total, bonded amount first, then the unbondings in order."""
    take = bond.slashable * bps // BPS
    from_bond = min(take, bond.amount)
    rest = take - from_bond
    unbonding = []
    for entry in bond.unbonding:
        cut = min(rest, entry.amount)
        rest -= cut
        if entry.amount - cut:
            unbonding.append(Unbonding(entry.amount - cut, entry.release_height))
    return msgspec.structs.replace(bond, amount=bond.amount - from_bond, unbonding=unbonding), take


def resolve_dispute(
    audits: AuditState, audit: Audit, height: int, rules: AuditParams, moves: Settlement
) -> tuple[AuditState, Audit]:
    """Decide a dispute from the referees' reports (module docstring); record the token moves."""
    for_auditor = [r.referee for r in audit.reports if r.output_hash == audit.auditor_output]
    for_miner = [r.referee for r in audit.reports if r.output_hash == audit.job.output_hash]
    if len(for_auditor) == len(for_miner):
        return audits, msgspec.structs.replace(audit, status=AuditStatus.INCONCLUSIVE.value, closed_height=height)
    miner_lost = len(for_auditor) > len(for_miner)
    loser = audit.job.miner if miner_lost else audit.auditor
    winners = [audit.auditor, *for_auditor] if miner_lost else [audit.job.miner, *for_miner]
    bond = get_bond(audits, loser) or MinerBond(miner=loser)
    slashed_bond, slashed = compute_slash(bond, rules.fraud_slash_bps)
    reward = slashed * rules.reporter_reward_bps // BPS
    share, leftover = divmod(reward, len(winners))
    for i, winner in enumerate(winners):
        moves.credit(winner, share + (leftover if i == 0 else 0))
    refund = 0
    if miner_lost and is_valid_address(audit.job.client):
        refund = min(audit.job.charged, slashed - reward)
        moves.credit(audit.job.client, refund)
    burned = slashed - reward - refund
    moves.burned += burned
    audits = msgspec.structs.replace(with_bond(audits, slashed_bond), burned=audits.burned + burned)
    status = AuditStatus.MINER_SLASHED if miner_lost else AuditStatus.AUDITOR_SLASHED
    decided = msgspec.structs.replace(
        audit, status=status.value, slashed=slashed, refunded=refund, closed_height=height
    )
    return audits, decided


# -- submit_audit -------------------------------------------------------------------------------------------
@dataclass(slots=True)
class AuditPlan:
    audits: AuditState
    audit: Audit
    moves: Settlement


def verify_submit_audit(state: StateDelta, tx: SubmitAudit, ctx: TxContext) -> AuditPlan:
    audits, rules = state.get_audits(), ctx.params.audit
    audit = get_audit(audits, tx.job_id)
    moves = Settlement()
    # Verify the job is under an open audit
    if audit is None:
        raise InvalidTx(TxRejection.NO_AUDIT, f"job {tx.job_id} is not being audited")
    if audit.status not in OPEN_AUDITS or ctx.height > audit.deadline_height:
        raise InvalidTx(TxRejection.AUDIT_CLOSED, f"the audit of {tx.job_id} is {audit.status}")
    if audit.status == AuditStatus.PENDING:
        # Verify the sender is the drawn auditor
        if tx.sender != audit.auditor:
            raise InvalidTx(TxRejection.NOT_AUDITOR, f"{tx.sender} is not the auditor of {tx.job_id}")
        if tx.output_hash == audit.job.output_hash:
            fee = audit.job.protocol_fee * rules.audit_fee_bps // BPS
            fee = min(fee, state.get_account(REWARD_POOL_ADDRESS).balance)
            moves.pool_debit = fee
            moves.credit(tx.sender, fee)
            passed = msgspec.structs.replace(audit, status=AuditStatus.PASSED.value, closed_height=ctx.height)
            return AuditPlan(with_audit(audits, passed), passed, moves)
        exclude = {audit.job.miner, audit.auditor}
        pool = get_eligible_auditors(audits, audit.job.model_digest, exclude, rules)
        referees = choose(pool, ctx.block.prev_hash, tx.job_id, b"referees", 2)
        disputed = msgspec.structs.replace(
            audit,
            status=AuditStatus.DISPUTED.value,
            auditor_output=tx.output_hash,
            referees=referees,
            deadline_height=ctx.height + rules.dispute_window_blocks,
        )
        return AuditPlan(with_audit(audits, disputed), disputed, moves)
    # Verify the sender is a referee that has not reported yet
    reported = {r.referee for r in audit.reports}
    if tx.sender not in audit.referees or tx.sender in reported:
        raise InvalidTx(TxRejection.NOT_AUDITOR, f"{tx.sender} is not a pending referee of {tx.job_id}")
    audit = msgspec.structs.replace(audit, reports=[*audit.reports, RefereeReport(tx.sender, tx.output_hash)])
    if len(audit.reports) == len(audit.referees):
        audits, audit = resolve_dispute(audits, audit, ctx.height, rules, moves)
    return AuditPlan(with_audit(audits, audit), audit, moves)


def apply_moves(state: StateDelta, moves: Settlement) -> None:
    if moves.pool_debit:
        pool = state.get_account(REWARD_POOL_ADDRESS)
        state.set_account(REWARD_POOL_ADDRESS, Account(balance=pool.balance - moves.pool_debit, nonce=pool.nonce))
    for address, amount in sorted(moves.credits.items()):
        process_credit(state, address, amount)


def compute_audit_event(audit: Audit, tx_hash: str) -> ChainEvent:
    kind = "audit_selected" if audit.status == AuditStatus.PENDING else f"audit_{audit.status}"
    return ChainEvent(
        kind=kind,
        job_id=audit.job.job_id,
        client=audit.job.client,
        coordinator="",
        amount=audit.slashed,
        tx_hash=tx_hash,
        miner=audit.job.miner,
        refunded=audit.refunded,
        receipt_hash=audit.job.receipt_hash,
    )


def process_submit_audit(state: StateDelta, tx: SubmitAudit, ctx: TxContext, plan: AuditPlan) -> None:
    apply_moves(state, plan.moves)
    state.set_audits(plan.audits)
    state.emit(compute_audit_event(plan.audit, ctx.tx_hash))


# -- the block steps ---------------------------------------------------------------------------------------
def process_audit_selection(state: StateDelta, audits: AuditState, ctx: BlockContext) -> AuditState:
    """Draw audits among the jobs the parent block settled (its hash is ``ctx.prev_hash``)."""
    rules = ctx.params.audit
    opened = []
    for job in audits.candidates:
        if not is_selected_for_audit(ctx.prev_hash, job.job_id, rules.probability_bps):
            continue
        if get_audit(audits, job.job_id) is not None:
            continue
        pool = get_eligible_auditors(audits, job.model_digest, {job.miner}, rules)
        if not pool:
            continue  # nobody else serves the model: the job cannot be audited (docs/verification.md)
        (auditor,) = choose(pool, ctx.prev_hash, job.job_id, b"auditor", 1)
        audit = Audit(job=job, auditor=auditor, selected_height=ctx.height,
                      deadline_height=ctx.height + rules.audit_window_blocks, seed=ctx.prev_hash)  # fmt: skip
        opened.append(audit)
        state.emit(compute_audit_event(audit, ""))
    if not audits.candidates:
        return audits
    return msgspec.structs.replace(audits, candidates=[], audits=[*audits.audits, *opened])


def process_audit_deadlines(state: StateDelta, audits: AuditState, ctx: BlockContext) -> AuditState:
    """Expire audits nobody reported on in time; decide disputes whose window closed (training disputes:
    ``aitbc.chain.training_audit``)."""
    moves = Settlement()
    for audit in audits.audits:
        if audit.status not in (AuditStatus.PENDING, AuditStatus.DISPUTED) or ctx.height <= audit.deadline_height:
            continue
        if audit.status == AuditStatus.PENDING:
            closed = msgspec.structs.replace(audit, status=AuditStatus.EXPIRED.value, closed_height=ctx.height)
        else:
            audits, closed = resolve_dispute(audits, audit, ctx.height, ctx.params.audit, moves)
        audits = with_audit(audits, closed)
        state.emit(compute_audit_event(closed, ""))
    apply_moves(state, moves)
    return audits


def get_involved(audits: AuditState) -> set[str]:
    """Miners, auditors and referees of every open audit: their bonds are not released."""
    involved: set[str] = set()
    for audit in audits.audits:
        if audit.status in OPEN_AUDITS:
            involved.update((audit.job.miner, audit.auditor, *audit.referees))
    return involved


def process_miner_unbondings(state: StateDelta, audits: AuditState, ctx: BlockContext) -> AuditState:
    """Return matured unbondings, except to miners involved in an open audit (they stay slashable)."""
    involved = get_involved(audits)
    for bond in audits.bonds:
        due = [u for u in bond.unbonding if u.release_height <= ctx.height]
        if not due or bond.miner in involved:
            continue
        process_credit(state, bond.miner, sum(u.amount for u in due))
        kept = [u for u in bond.unbonding if u.release_height > ctx.height]
        audits = with_bond(audits, msgspec.structs.replace(bond, unbonding=kept))
    return audits


def process_audit_block(state: StateDelta, ctx: BlockContext) -> None:
    """Start of every block: draw audits, deadlines, unbondings; keep the newest closed audits."""
    original = audits = state.get_audits()
    if not (audits.candidates or audits.audits or any(b.unbonding for b in audits.bonds)):
        return
    audits = process_audit_selection(state, audits, ctx)
    audits = process_audit_deadlines(state, audits, ctx)
    audits = process_miner_unbondings(state, audits, ctx)
    closed = [a for a in audits.audits if a.status not in OPEN_AUDITS]
    if len(closed) > MAX_CLOSED_AUDITS:
        dropped = {a.job.job_id for a in closed[: len(closed) - MAX_CLOSED_AUDITS]}
        audits = msgspec.structs.replace(audits, audits=[a for a in audits.audits if a.job.job_id not in dropped])
    if audits != original:
        state.set_audits(audits)


def process_audit_candidates(state: StateDelta) -> None:
    """End of every block: the jobs it settled wait for the next block's draw."""
    if state.audit_candidates:
        audits = state.get_audits()
        state.set_audits(msgspec.structs.replace(audits, candidates=[*audits.candidates, *state.audit_candidates]))
