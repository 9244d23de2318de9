"""Deposit and settle-batch rules: each rejection, and the invariants (hypothesis).

Blocks are built with ``build_block`` and replayed with ``apply_block`` (same state root), so the
rules are exercised exactly as a node runs them.
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aitbc.chain.block import BlockOutcome, apply_block, build_block
from aitbc.chain.deposits import compute_job_charge, get_cap_room
from aitbc.chain.entries import ChainEvent, is_valid_deposit_proof, is_valid_paid_proof
from aitbc.chain.genesis import Genesis, GenesisBalance, genesis_block, genesis_state
from aitbc.chain.params import REWARD_POOL_ADDRESS, ChainParams
from aitbc.chain.state import ChainState, commit_delta
from aitbc.protocol.block import BlockHeader
from aitbc.protocol.crypto import KeyPair, is_valid_signature_check
from aitbc.protocol.deposit import (
    JobRequest,
    SettlementEntry,
    compute_deposit_id,
    miner_signature_check,
    sign_job_request,
)
from aitbc.protocol.receipt import Receipt, ReceiptUnits, countersign_receipt, sign_receipt_as_miner
from aitbc.protocol.tx import (
    OpenDeposit,
    OpenEscrow,
    SettleBatch,
    SettleJob,
    TopUpDeposit,
    Tx,
    WithdrawDeposit,
    sign_tx,
    verify_tx,
)

CHAIN = "aitbc-test"
AUTHORITY = KeyPair.from_seed(b"\x01" * 32)
CLIENT = KeyPair.from_seed(b"\x02" * 32)
COORDINATOR = KeyPair.from_seed(b"\x03" * 32)
MINER = KeyPair.from_seed(b"\x04" * 32)
OTHER = KeyPair.from_seed(b"\x05" * 32)
DELAY = 3
PARAMS = ChainParams(protocol_fee_bps=200, deposit_withdrawal_delay=DELAY, max_receipt_blocks=20)
START = 10**9


class Chain:
    """A one-authority chain driven block by block; every block is also re-applied by a follower."""

    def __init__(self) -> None:
        genesis = Genesis(
            chain_id=CHAIN,
            genesis_time_ms=1,
            authorities=[AUTHORITY.address],
            balances=[GenesisBalance(k.address, START) for k in (CLIENT, COORDINATOR, OTHER)],
            params=PARAMS,
        )
        self.state: ChainState = genesis_state(genesis)
        self.follower: ChainState = genesis_state(genesis)
        self.head: BlockHeader = genesis_block(genesis, self.state).header
        self.nonces: dict[str, int] = {}
        self.events: list[tuple[int, ChainEvent]] = []

    @property
    def height(self) -> int:
        return self.head.height

    def nonce(self, key: KeyPair) -> int:
        n = self.nonces.get(key.address, 0)
        self.nonces[key.address] = n + 1
        return n

    def block(self, *txs: Tx) -> BlockOutcome:
        outcome = build_block(
            self.state, self.head, [verify_tx(t) for t in txs], AUTHORITY, self.head.time_ms + 1000, PARAMS
        )
        replay = apply_block(self.follower, self.head, outcome.block, [AUTHORITY.address], PARAMS)
        assert replay.block.header.state_root == outcome.block.header.state_root
        commit_delta(self.state, outcome.delta, outcome.tree)
        commit_delta(self.follower, replay.delta, replay.tree)
        for vtx, _ in outcome.dropped:  # a dropped tx did not use its nonce
            self.nonces[vtx.tx.sender] -= 1
        self.head = outcome.block.header
        self.events += [(self.head.height, e) for e in outcome.delta.events]
        return outcome

    def open(self, mode: str = "delegated", amount: int = 1_000_000, cap: int = 500_000, period: int = 10) -> str:
        nonce = self.nonce(CLIENT)
        tx = OpenDeposit(
            chain_id=CHAIN,
            sender=CLIENT.address,
            nonce=nonce,
            fee=10,
            coordinator=COORDINATOR.address,
            mode=mode,
            amount=amount,
            cap_per_period=cap,
            period_blocks=period if cap else 0,
        )
        out = self.block(sign_tx(tx, CLIENT))
        assert not out.dropped, out.dropped
        return compute_deposit_id(CLIENT.address, nonce)

    def settle(self, *entries: SettlementEntry, sender: KeyPair = COORDINATOR) -> BlockOutcome:
        tx = SettleBatch(chain_id=CHAIN, sender=sender.address, nonce=self.nonce(sender), fee=10, entries=list(entries))
        return self.block(sign_tx(tx, sender))


def djid(name: str, expires: int) -> str:
    """The deposit job id of a test job ``name`` (letters and digits, not ending in x) expiring at ``expires``."""
    return f"dj-{expires}-{name.ljust(8, 'x')}"


def receipt(job_id: str, units: int = 300, unit_price: int = 10, miner: KeyPair = MINER) -> Receipt:
    r = Receipt(
        chain_id=CHAIN,
        job_id=job_id,
        miner=miner.address,
        client=CLIENT.address,
        coordinator=COORDINATOR.address,
        model="m",
        model_digest="sha256:aa",
        input_hash="00" * 32,
        output_hash="11" * 32,
        units=ReceiptUnits(prompt_tokens=100, completion_tokens=units - 100, compute_ms=1000),
        unit_price=unit_price,
        total_price=units * unit_price,
        started_at_ms=1_000,
        finished_at_ms=2_000,
    )
    return countersign_receipt(sign_receipt_as_miner(r, miner), COORDINATOR)


def entry(
    deposit_id: str,
    name: str,
    expires: int = 15,
    units: int = 300,
    signer: KeyPair | None = None,
    max_price: int = 0,
    signed_receipt: Receipt | None = None,
) -> SettlementEntry:
    r = signed_receipt or receipt(djid(name, expires), units)
    signature = ""
    if signer is not None:
        max_price = max_price or r.total_price
        request = JobRequest(
            chain_id=CHAIN,
            job_id=r.job_id,
            deposit_id=deposit_id,
            model=r.model,
            input_hash=r.input_hash,
            max_price=max_price,
        )
        signature = sign_job_request(request, signer)
    return SettlementEntry(deposit_id=deposit_id, receipt=r, max_price=max_price, client_signature=signature)


def reasons(out: BlockOutcome) -> dict[str, str]:
    """Rejected entries of a block: test job name -> reason."""
    return {
        e.job_id.split("-", 2)[2].rstrip("x"): e.reason.split(":")[0]
        for e in out.delta.events
        if e.kind == "settle_rejected"
    }


def test_open_deposit_moves_funds_and_is_provable() -> None:
    chain = Chain()
    deposit_id = chain.open(amount=1_000_000)
    deposit = chain.state.get_deposit(deposit_id)
    assert deposit is not None and deposit.balance == 1_000_000 and deposit.owner == CLIENT.address
    assert chain.state.get_account(CLIENT.address).balance == START - 1_000_000 - 10
    proof = chain.state.prove_deposit(deposit_id)
    assert is_valid_deposit_proof(chain.head.state_root, deposit_id, deposit, proof)
    assert not is_valid_deposit_proof(
        chain.head.state_root, deposit_id, msgspec.structs.replace(deposit, balance=2_000_000), proof
    )


@pytest.mark.parametrize(
    ("mode", "cap", "period", "reason"),
    [("delegated", 0, 0, "bad_deposit_terms"), ("signed", 100, 0, "bad_deposit_terms")],
)
def test_open_deposit_refuses_bad_terms(mode: str, cap: int, period: int, reason: str) -> None:
    chain = Chain()
    tx = OpenDeposit(
        chain_id=CHAIN,
        sender=CLIENT.address,
        nonce=chain.nonce(CLIENT),
        fee=10,
        coordinator=COORDINATOR.address,
        mode=mode,
        amount=100,
        cap_per_period=cap,
        period_blocks=period,
    )
    out = chain.block(sign_tx(tx, CLIENT))
    assert [exc.reason for _, exc in out.dropped] == [reason]


def test_settle_batch_pays_valid_entries_and_reports_the_rest() -> None:
    chain = Chain()
    deposit_id = chain.open()
    good, other = entry(deposit_id, "j1"), entry(deposit_id, "j2")
    forged = msgspec.structs.replace(
        entry(deposit_id, "j3"), receipt=msgspec.structs.replace(receipt(djid("j3", 15)), total_price=3000)
    )
    forged = msgspec.structs.replace(forged, receipt=msgspec.structs.replace(forged.receipt, miner_signature="00" * 64))
    expired = entry(deposit_id, "j4", expires=0)
    far = entry(deposit_id, "j5", expires=1000)
    out = chain.settle(good, other, good, forged, expired, far, entry("dep_" + "0" * 40, "j6"))
    assert not out.dropped
    assert reasons(out) == {
        "j1": "already_paid",
        "j3": "bad_miner_signature",
        "j4": "expired",
        "j5": "bad_expiry",
        "j6": "no_deposit",
    }
    charge = compute_job_charge(3000, PARAMS)
    deposit = chain.state.get_deposit(deposit_id)
    assert deposit is not None and deposit.balance == 1_000_000 - 2 * charge and deposit.jobs_paid == 2
    assert chain.state.get_account(MINER.address).balance == 6000
    assert chain.state.get_account(REWARD_POOL_ADDRESS).balance == 2 * (charge - 3000)
    j1 = djid("j1", 15)
    paid = chain.state.get_paid(j1)
    assert paid is not None and is_valid_paid_proof(chain.head.state_root, j1, paid, chain.state.prove_paid(j1))
    # a replay (same entries, next nonce) pays nothing
    again = chain.settle(good, other)
    assert reasons(again) == {"j1": "already_paid", "j2": "already_paid"}
    assert chain.state.get_account(MINER.address).balance == 6000


def test_job_paid_at_most_once_across_escrow_and_deposit() -> None:
    """Deposit job ids (they carry an expiry) never get an escrow; escrow job ids never settle in a batch."""
    chain = Chain()
    deposit_id = chain.open()
    escrow = OpenEscrow(
        chain_id=CHAIN,
        sender=CLIENT.address,
        nonce=chain.nonce(CLIENT),
        fee=10,
        job_id="job_escrowed",
        coordinator=COORDINATOR.address,
        amount=10_000,
        deadline_height=20,
    )
    assert not chain.block(sign_tx(escrow, CLIENT)).dropped
    plain = SettlementEntry(deposit_id=deposit_id, receipt=receipt("job_escrowed"))
    out = chain.settle(plain)
    assert [e.reason.split(":")[0] for e in out.delta.events if e.kind == "settle_rejected"] == ["bad_expiry"]
    chain.settle(entry(deposit_id, "depfirst"))
    for job_id in (djid("depfirst", 15), djid("neverpaid", 15)):
        late = OpenEscrow(
            chain_id=CHAIN,
            sender=CLIENT.address,
            nonce=chain.nonce(CLIENT),
            fee=10,
            job_id=job_id,
            coordinator=COORDINATOR.address,
            amount=10_000,
            deadline_height=20,
        )
        out = chain.block(sign_tx(late, CLIENT))
        assert [exc.reason for _, exc in out.dropped] == ["already_paid"]
    settle = SettleJob(
        chain_id=CHAIN,
        sender=COORDINATOR.address,
        nonce=chain.nonce(COORDINATOR),
        fee=10,
        receipt=receipt(djid("depfirst", 15)),
    )
    out = chain.block(sign_tx(settle, COORDINATOR))
    assert [exc.reason for _, exc in out.dropped] == ["no_escrow"]


def test_paid_ids_are_forgotten_after_expiry_and_cannot_be_settled_again() -> None:
    chain = Chain()
    deposit_id = chain.open()
    expires = chain.height + 2
    chain.settle(entry(deposit_id, "short", expires=expires))
    assert chain.state.get_paid(djid("short", expires)) is not None
    while chain.height <= expires:
        chain.block()
    assert chain.state.get_paid(djid("short", expires)) is None and not chain.state.paid_due
    # the same (signed, remembered-then-forgotten) entry is now past its expiry
    assert reasons(chain.settle(entry(deposit_id, "short", expires=expires))) == {"short": "expired"}


def test_only_the_deposits_coordinator_settles() -> None:
    chain = Chain()
    deposit_id = chain.open()
    assert reasons(chain.settle(entry(deposit_id, "y"), sender=OTHER)) == {"y": "not_coordinator"}


def test_signed_mode_needs_the_clients_signature_over_the_request() -> None:
    chain = Chain()
    deposit_id = chain.open(mode="signed", cap=0)
    out = chain.settle(
        entry(deposit_id, "unsigned"),
        entry(deposit_id, "byother", signer=OTHER),
        entry(deposit_id, "toodear", signer=CLIENT, max_price=100),
        entry(deposit_id, "ok", signer=CLIENT),
    )
    assert reasons(out) == {
        "unsigned": "missing_client_signature",
        "byother": "bad_client_signature",
        "toodear": "price_above_max",
    }
    assert chain.state.get_paid(djid("ok", 15)) is not None


def test_cap_per_period_resets_with_the_period() -> None:
    chain = Chain()
    charge = compute_job_charge(3000, PARAMS)
    deposit_id = chain.open(cap=2 * charge, period=5)
    out = chain.settle(*(entry(deposit_id, f"c{i}") for i in range(3)))
    assert reasons(out) == {"c2": "cap_exceeded"}
    deposit = chain.state.get_deposit(deposit_id)
    assert deposit is not None and get_cap_room(deposit, chain.height) == 0
    while chain.height % 5 != 4:
        chain.block()
    out = chain.settle(entry(deposit_id, "c2", expires=chain.height + 5))
    assert reasons(out) == {}


def test_withdrawal_pays_out_after_the_delay_and_settles_meanwhile() -> None:
    chain = Chain()
    deposit_id = chain.open(amount=100_000, cap=100_000)
    before = chain.state.get_account(CLIENT.address).balance
    tx = WithdrawDeposit(
        chain_id=CHAIN, sender=CLIENT.address, nonce=chain.nonce(CLIENT), fee=10, deposit_id=deposit_id, amount=90_000
    )
    chain.block(sign_tx(tx, CLIENT))
    asked_at = chain.height
    again = WithdrawDeposit(
        chain_id=CHAIN, sender=CLIENT.address, nonce=chain.nonce(CLIENT), fee=10, deposit_id=deposit_id, amount=1
    )
    assert [e.reason for _, e in chain.block(sign_tx(again, CLIENT)).dropped] == ["withdrawal_pending"]
    chain.settle(entry(deposit_id, "during", expires=chain.height + 10))  # still settles during the delay
    while chain.height < asked_at + DELAY - 1:
        chain.block()
        assert chain.state.get_account(CLIENT.address).balance == before - 10
    chain.block()
    deposit = chain.state.get_deposit(deposit_id)
    assert deposit is not None and deposit.withdrawal_amount == 0
    assert deposit.balance == 100_000 - compute_job_charge(3000, PARAMS) - 90_000
    assert chain.state.get_account(CLIENT.address).balance == before - 10 + 90_000


def test_withdraw_and_top_up_rules() -> None:
    chain = Chain()
    deposit_id = chain.open(amount=1000, cap=1000)
    by_other = WithdrawDeposit(
        chain_id=CHAIN, sender=OTHER.address, nonce=chain.nonce(OTHER), fee=10, deposit_id=deposit_id, amount=1
    )
    too_much = WithdrawDeposit(
        chain_id=CHAIN, sender=CLIENT.address, nonce=chain.nonce(CLIENT), fee=10, deposit_id=deposit_id, amount=1001
    )
    out = chain.block(sign_tx(by_other, OTHER), sign_tx(too_much, CLIENT))
    assert sorted(e.reason for _, e in out.dropped) == ["insufficient_balance", "not_deposit_owner"]
    top_up = TopUpDeposit(
        chain_id=CHAIN, sender=OTHER.address, nonce=chain.nonce(OTHER), fee=10, deposit_id=deposit_id, amount=500
    )
    chain.block(sign_tx(top_up, OTHER))
    deposit = chain.state.get_deposit(deposit_id)
    assert deposit is not None and deposit.balance == 1500 and deposit.owner == CLIENT.address


def test_block_uses_the_nodes_known_signatures() -> None:
    chain = Chain()
    deposit_id = chain.open()
    good = entry(deposit_id, "k1")
    check = miner_signature_check(good.receipt)
    assert check is not None and is_valid_signature_check(check)
    asked: list[bytes] = []

    def known(c: tuple[bytes, bytes]) -> bool:
        asked.append(c[0])
        return c == check

    tx = SettleBatch(chain_id=CHAIN, sender=COORDINATOR.address, nonce=chain.nonce(COORDINATOR), fee=10, entries=[good])
    outcome = build_block(
        chain.state,
        chain.head,
        [verify_tx(sign_tx(tx, COORDINATOR))],
        AUTHORITY,
        chain.head.time_ms + 1000,
        PARAMS,
        is_known_signature=known,
    )
    assert asked == [check[0]]
    assert [e.kind for e in outcome.delta.events] == ["settled"]


# -- properties ------------------------------------------------------------------------------------------
_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("settle"), st.lists(st.tuples(st.integers(0, 40), st.integers(1, 9), st.integers(0, 4)), max_size=6)
        ),
        st.tuples(st.just("top_up"), st.integers(1, 50_000)),
        st.tuples(st.just("withdraw"), st.integers(1, 200_000)),
        st.tuples(st.just("escrow"), st.integers(0, 40)),
        st.tuples(st.just("idle"), st.integers(1, 4)),
    ),
    min_size=1,
    max_size=14,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS, signed=st.booleans(), cap_jobs=st.integers(1, 6))
def test_deposit_invariants(ops: list[tuple[object, ...]], signed: bool, cap_jobs: int) -> None:
    """Never overdrawn, never past its cap, each job paid at most once across both paths, supply
    conserved, a withdrawal never paid before its delay, a signed deposit never pays an unsigned job."""
    chain = Chain()
    charge = compute_job_charge(3000, PARAMS)
    cap = cap_jobs * charge
    deposit_id = chain.open(mode="signed" if signed else "delegated", amount=100_000, cap=cap, period=4)
    supply = chain.state.total_supply()
    signed_receipts: dict[str, Receipt] = {}  # an honest miner signs one receipt per job
    for op in ops:
        if op[0] == "settle":
            entries = []
            for job, expires_in, flavour in op[1]:  # type: ignore[attr-defined]
                sign = signed and flavour != 0
                name = f"j{job}" if sign or not signed else f"u{job}"
                if name not in signed_receipts:
                    signed_receipts[name] = receipt(djid(name, chain.height + expires_in))
                r = signed_receipts[name]
                e = entry(deposit_id, name, signer=CLIENT if sign else None, signed_receipt=r)
                if flavour == 4:  # a forged miner signature
                    e = msgspec.structs.replace(
                        e, receipt=msgspec.structs.replace(e.receipt, miner_signature="cd" * 64)
                    )
                entries.append(e)
            if entries:
                chain.settle(*entries)
        elif op[0] == "top_up":
            tx = TopUpDeposit(
                chain_id=CHAIN,
                sender=OTHER.address,
                nonce=chain.nonce(OTHER),
                fee=10,
                deposit_id=deposit_id,
                amount=int(op[1]),  # type: ignore[call-overload]
            )
            chain.block(sign_tx(tx, OTHER))
        elif op[0] == "withdraw":
            tx2 = WithdrawDeposit(
                chain_id=CHAIN,
                sender=CLIENT.address,
                nonce=chain.nonce(CLIENT),
                fee=10,
                deposit_id=deposit_id,
                amount=int(op[1]),  # type: ignore[call-overload]
            )
            chain.block(sign_tx(tx2, CLIENT))
        elif op[0] == "escrow":
            tx3 = OpenEscrow(
                chain_id=CHAIN,
                sender=CLIENT.address,
                nonce=chain.nonce(CLIENT),
                fee=10,
                job_id=signed_receipts[f"j{op[1]}"].job_id if f"j{op[1]}" in signed_receipts else f"job_{op[1]}",
                coordinator=COORDINATOR.address,
                amount=10_000,
                deadline_height=chain.height + 3,
            )
            chain.block(sign_tx(tx3, CLIENT))
        else:
            for _ in range(int(op[1])):  # type: ignore[call-overload]
                chain.block()
        deposit = chain.state.get_deposit(deposit_id)
        assert deposit is not None
        # never overdrawn, never past the cap
        assert deposit.balance >= 0
        assert deposit.spent_in_period <= cap
        # supply conserved (no block reward on this chain)
        assert chain.state.total_supply() == supply
        assert chain.follower.state_root == chain.state.state_root
    paid_by_job: dict[str, int] = {}
    escrowed = set()
    asked: int | None = None
    for height, event in chain.events:
        if event.kind == "settled":
            paid_by_job[event.job_id] = paid_by_job.get(event.job_id, 0) + 1
        if event.kind == "escrow_opened":
            escrowed.add(event.job_id)
        if event.kind == "deposit_withdrawal_requested":
            asked = height
        if event.kind == "deposit_withdrawn":
            assert asked is not None and height >= asked + DELAY
            asked = None
    assert all(n == 1 for n in paid_by_job.values())
    assert not (set(paid_by_job) & escrowed)  # a job escrowed is never paid from the deposit too
    # a signed deposit never pays a job its owner did not sign
    assert not [job for job in paid_by_job if job.split("-", 2)[2].startswith("u")]
