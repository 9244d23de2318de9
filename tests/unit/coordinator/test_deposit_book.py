"""The coordinator's per-deposit books keep running totals: they always equal the sums they stand for."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.chain.entries import Deposit
from aitbc.coordinator.deposits import _Book
from aitbc.protocol.crypto import KeyPair

_KEY = KeyPair.from_seed(b"\x01" * 32)
_DEPOSIT = Deposit(
    id="dep_" + "0" * 40,
    owner=_KEY.address,
    coordinator=_KEY.address,
    mode="delegated",
    balance=10**9,
    cap_per_period=10**9,
    period_blocks=100,
    opened_height=1,
)

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "unreserve", "pending", "settled", "drop", "height"]),
        st.integers(0, 5),
        st.integers(1, 1_000),
        st.integers(0, 12),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=_OPS)
def test_running_totals_equal_the_sums(ops: list[tuple[str, int, int, int]]) -> None:
    book = _Book(_DEPOSIT, height=5)
    for op, job, charge, height in ops:
        job_id = f"j{job}"
        if op == "reserve":
            book.reserve(job_id, charge)
        elif op == "unreserve":
            book.unreserve(job_id)
        elif op == "pending":
            book.set_pending(job_id, charge)
        elif op == "settled" and job_id in book.pending:
            book.set_pending(job_id, book.pending[job_id][0], height)
        elif op == "drop":
            book.drop_pending(job_id)
        elif op == "height":
            book.height = max(book.height, height)
            book.prune()
        assert book.reserved_total == sum(book.reserved.values())
        assert book.unsettled() == sum(c for c, h in book.pending.values() if h is None or h > book.height)
