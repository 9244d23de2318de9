"""Escrow, settlement and refund rules: each rejection, and money conservation (hypothesis)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aitbc.chain.block import build_block
from aitbc.chain.context import BlockContext, TxContext
from aitbc.chain.entries import EscrowState, is_valid_escrow_proof
from aitbc.chain.escrow import compute_escrow_amount, compute_max_price, compute_protocol_fee
from aitbc.chain.genesis import Genesis, GenesisBalance, genesis_block, genesis_state
from aitbc.chain.params import REWARD_POOL_ADDRESS, ChainParams
from aitbc.chain.state import ChainState, StateDelta, commit_delta
from aitbc.chain.tx_rules import process_tx
from aitbc.protocol.block import BlockHeader
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.receipt import Receipt, ReceiptUnits, countersign_receipt, sign_receipt_as_miner
from aitbc.protocol.tx import OpenEscrow, RefundEscrow, SettleJob, Transfer, Tx, sign_tx, verify_tx

CHAIN = "aitbc-test"
AUTHORITY = KeyPair.from_seed(b"\x01" * 32)
CLIENT = KeyPair.from_seed(b"\x02" * 32)
COORDINATOR = KeyPair.from_seed(b"\x03" * 32)
MINER = KeyPair.from_seed(b"\x04" * 32)
OTHER = KeyPair.from_seed(b"\x05" * 32)
PARAMS = ChainParams(protocol_fee_bps=200, max_escrow_blocks=100)
START = 10**9


def fresh() -> tuple[ChainState, BlockHeader]:
    genesis = Genesis(
        chain_id=CHAIN,
        genesis_time_ms=1,
        authorities=[AUTHORITY.address],
        balances=[GenesisBalance(k.address, START) for k in (CLIENT, COORDINATOR, OTHER)],
        params=PARAMS,
    )
    state = genesis_state(genesis)
    return state, genesis_block(genesis, state).header


def open_tx(
    nonce: int = 0, job_id: str = "job_1", amount: int = 10_000, deadline: int = 5, coordinator: KeyPair = COORDINATOR
) -> OpenEscrow:
    tx = OpenEscrow(
        chain_id=CHAIN,
        sender=CLIENT.address,
        nonce=nonce,
        fee=10,
        job_id=job_id,
        coordinator=coordinator.address,
        amount=amount,
        deadline_height=deadline,
    )
    return sign_tx(tx, CLIENT)


def receipt(
    job_id: str = "job_1",
    total_units: int = 300,
    unit_price: int = 10,
    miner: KeyPair = MINER,
    cosigner: KeyPair = COORDINATOR,
    client: str = CLIENT.address,
) -> Receipt:
    units = ReceiptUnits(prompt_tokens=100, completion_tokens=total_units - 100, compute_ms=1000)
    r = Receipt(
        chain_id=CHAIN,
        job_id=job_id,
        miner=miner.address,
        client=client,
        coordinator=cosigner.address,
        model="m",
        model_digest="sha256:aa",
        input_hash="00" * 32,
        output_hash="11" * 32,
        units=units,
        unit_price=unit_price,
        total_price=total_units * unit_price,
        started_at_ms=1_000,
        finished_at_ms=2_000,
    )
    return countersign_receipt(sign_receipt_as_miner(r, miner), cosigner)


def settle_tx(r: Receipt, nonce: int = 0, sender: KeyPair = COORDINATOR) -> SettleJob:
    return sign_tx(SettleJob(chain_id=CHAIN, sender=sender.address, nonce=nonce, fee=10, receipt=r), sender)


def refund_tx(job_id: str = "job_1", nonce: int = 0, sender: KeyPair = OTHER) -> RefundEscrow:
    return sign_tx(RefundEscrow(chain_id=CHAIN, sender=sender.address, nonce=nonce, fee=10, job_id=job_id), sender)


def at(height: int, tx_hash: str = "") -> TxContext:
    """The context of the first tx of a block at ``height`` that AUTHORITY proposes."""
    block = BlockContext(
        chain_id=CHAIN, height=height, time_ms=height * 1000, proposer=AUTHORITY.address, params=PARAMS, prev_hash=""
    )
    return block.tx(tx_hash, 0)


def with_open_escrow(height: int = 1, **kwargs: object) -> tuple[ChainState, StateDelta]:
    state, _ = fresh()
    delta = StateDelta(base=state)
    process_tx(delta, open_tx(**kwargs), at(height, "aa" * 32))  # type: ignore[arg-type]
    return state, delta


def rejection(fn: Callable[[StateDelta, Tx, TxContext], None], delta: StateDelta, tx: Tx, ctx: TxContext) -> str:
    with pytest.raises(InvalidTx) as info:
        fn(delta, tx, ctx)
    return info.value.reason


def test_process_open_escrow_locks_funds_and_emits_event() -> None:
    _, delta = with_open_escrow()
    escrow = delta.get_escrow("job_1")
    assert escrow is not None and escrow.state == EscrowState.OPEN and escrow.amount == 10_000
    assert delta.get_account(CLIENT.address).balance == START - 10_000 - 10
    assert [e.kind for e in delta.events] == ["escrow_opened"]


def test_open_escrow_rejections() -> None:
    _, delta = with_open_escrow()
    again = open_tx(nonce=1)
    assert rejection(process_tx, delta, again, at(1)) == "escrow_exists"
    state, _ = fresh()
    d = StateDelta(base=state)
    assert rejection(process_tx, d, open_tx(deadline=0), at(1)) == (TxRejection.BAD_DEADLINE)
    assert rejection(process_tx, d, open_tx(deadline=500), at(1)) == (TxRejection.BAD_DEADLINE)
    assert rejection(process_tx, d, open_tx(amount=0), at(1)) == (TxRejection.ZERO_AMOUNT)
    assert rejection(process_tx, d, open_tx(amount=START), at(1)) == (TxRejection.INSUFFICIENT_BALANCE)
    wrong_chain = sign_tx(msgspec.structs.replace(open_tx(), chain_id="other", signature=""), CLIENT)
    assert rejection(process_tx, d, wrong_chain, at(1)) == (TxRejection.WRONG_CHAIN_ID)
    assert not d.accounts and not d.escrows  # refused txs leave no trace


def test_process_settle_job_pays_miner_fee_pool_and_returns_rest() -> None:
    _, delta = with_open_escrow()
    r = receipt()
    process_tx(delta, settle_tx(r), at(2, "bb" * 32))
    fee = compute_protocol_fee(3_000, PARAMS)
    assert fee == 60
    assert delta.get_account(MINER.address).balance == 3_000  # the miner gets exactly the receipt's total
    assert delta.get_account(REWARD_POOL_ADDRESS).balance == fee
    assert delta.get_account(CLIENT.address).balance == START - 10 - 3_000 - fee  # tx fee + total + protocol fee
    escrow = delta.get_escrow("job_1")
    assert escrow is not None and escrow.state == EscrowState.SETTLED and escrow.receipt_hash
    assert [e.kind for e in delta.events] == ["escrow_opened", "settled"]


def test_settle_rejections() -> None:
    _, delta = with_open_escrow()
    ctx = at(2)
    assert rejection(process_tx, delta, settle_tx(receipt(job_id="job_9")), ctx) == TxRejection.NO_ESCROW
    assert rejection(process_tx, delta, settle_tx(receipt(), sender=OTHER), ctx) == (TxRejection.NOT_COORDINATOR)
    # A receipt from a miner the coordinator did not assign has no valid countersignature.
    forged = msgspec.structs.replace(receipt(), miner=OTHER.address)
    assert rejection(process_tx, delta, settle_tx(forged), ctx) == TxRejection.BAD_RECEIPT
    not_cosigned = msgspec.structs.replace(receipt(), coordinator_signature="")
    assert rejection(process_tx, delta, settle_tx(not_cosigned), ctx) == TxRejection.BAD_RECEIPT
    assert rejection(process_tx, delta, settle_tx(receipt(total_units=2_000)), ctx) == (TxRejection.TOTAL_ABOVE_ESCROW)
    assert rejection(process_tx, delta, settle_tx(receipt(client=OTHER.address)), ctx) == (TxRejection.BAD_RECEIPT)
    assert rejection(process_tx, delta, settle_tx(receipt()), at(6)) == TxRejection.ESCROW_EXPIRED
    process_tx(delta, settle_tx(receipt()), ctx)
    assert rejection(process_tx, delta, settle_tx(receipt(), nonce=1), ctx) == TxRejection.ALREADY_SETTLED
    assert rejection(process_tx, delta, refund_tx(), at(9)) == (TxRejection.ALREADY_SETTLED)


def test_settle_needs_room_for_the_protocol_fee() -> None:
    # 10_000 locked: a total of 9_804 plus its 196 fee fits exactly; 9_805 (+196) does not.
    assert compute_max_price(10_000, PARAMS) == 9_804
    assert compute_escrow_amount(9_804, PARAMS) == 10_000
    _, delta = with_open_escrow()
    ctx = at(2)
    over = receipt(total_units=9_805, unit_price=1)
    assert rejection(process_tx, delta, settle_tx(over), ctx) == TxRejection.TOTAL_ABOVE_ESCROW
    process_tx(delta, settle_tx(receipt(total_units=9_804, unit_price=1)), ctx)
    assert delta.get_account(CLIENT.address).balance == START - 10 - 10_000


@given(st.integers(0, 10**15), st.integers(0, 10_000))
def test_compute_max_price_is_the_largest_price_that_fits(amount: int, bps: int) -> None:
    params = ChainParams(protocol_fee_bps=bps, max_escrow_blocks=100)
    price = compute_max_price(amount, params)
    assert compute_escrow_amount(price, params) <= amount
    assert compute_escrow_amount(price + 1, params) > amount


def test_refund_rules() -> None:
    _, delta = with_open_escrow(deadline=5)
    assert rejection(process_tx, delta, refund_tx(), at(5)) == TxRejection.DEADLINE_NOT_REACHED
    process_tx(delta, refund_tx(), at(6))
    assert delta.get_account(CLIENT.address).balance == START - 10
    assert rejection(process_tx, delta, settle_tx(receipt()), at(6)) == (TxRejection.ALREADY_REFUNDED)
    # Its coordinator may give up on a job before the deadline.
    _, delta = with_open_escrow(deadline=5)
    process_tx(delta, refund_tx(sender=COORDINATOR), at(2))
    escrow = delta.get_escrow("job_1")
    assert escrow is not None and escrow.state == EscrowState.REFUNDED


def test_chain_refunds_expired_escrow_by_itself_and_proof_verifies() -> None:
    state, head = fresh()
    outcome = build_block(state, head, [verify_tx(open_tx(deadline=2))], AUTHORITY, 10, PARAMS)
    commit_delta(state, outcome.delta, outcome.tree)
    head = outcome.block.header
    for now in (20, 30):
        outcome = build_block(state, head, [], AUTHORITY, now, PARAMS)
        commit_delta(state, outcome.delta, outcome.tree)
        head = outcome.block.header
    assert [e.kind for e in outcome.delta.events] == ["refunded"] and head.height == 3
    escrow = state.get_escrow("job_1")
    assert escrow is not None and escrow.state == EscrowState.REFUNDED
    assert state.get_account(CLIENT.address).balance == START - 10
    proof = state.prove_escrow("job_1")
    assert is_valid_escrow_proof(head.state_root, "job_1", escrow, proof)
    assert not is_valid_escrow_proof(head.state_root, "job_1", msgspec.structs.replace(escrow, refunded=1), proof)


def _supply(state: ChainState) -> int:
    return state.total_supply()


action = st.tuples(
    st.sampled_from(["open", "settle", "refund", "transfer", "settle_again"]), st.integers(0, 3), st.integers(1, 3_000)
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(action, min_size=1, max_size=25))
def test_any_tx_sequence_conserves_supply_and_never_pays_twice(actions: list[tuple[str, int, int]]) -> None:
    state, head = fresh()
    total = _supply(state)
    nonces = {k.address: 0 for k in (CLIENT, COORDINATOR, OTHER)}
    paid_jobs: dict[str, int] = {}
    for kind, job, value in actions:
        job_id = f"job_{job}"
        txs: list[Tx] = []
        if kind == "open":
            txs.append(open_tx(nonce=nonces[CLIENT.address], job_id=job_id, amount=value, deadline=head.height + 3))
        elif kind in ("settle", "settle_again"):
            txs.append(
                settle_tx(
                    receipt(job_id=job_id, total_units=150, unit_price=value % 7 + 1), nonce=nonces[COORDINATOR.address]
                )
            )
        elif kind == "refund":
            txs.append(refund_tx(job_id=job_id, nonce=nonces[OTHER.address]))
        else:
            txs.append(
                sign_tx(
                    Transfer(
                        chain_id=CHAIN,
                        sender=OTHER.address,
                        nonce=nonces[OTHER.address],
                        fee=1,
                        recipient=CLIENT.address,
                        amount=value,
                    ),
                    OTHER,
                )
            )
        outcome = build_block(state, head, [verify_tx(t) for t in txs], AUTHORITY, head.time_ms + 1000, PARAMS)
        for vtx in outcome.included:
            nonces[vtx.tx.sender] += 1
        for event in outcome.delta.events:
            if event.kind == "settled":
                paid_jobs[event.job_id] = paid_jobs.get(event.job_id, 0) + 1
        commit_delta(state, outcome.delta, outcome.tree)
        head = outcome.block.header
        assert _supply(state) == total
    assert all(count == 1 for count in paid_jobs.values())
