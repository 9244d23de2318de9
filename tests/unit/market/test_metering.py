"""``aitbc.market.metering``: the receipt checks that stop a miner charging more than the job allows."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitbc.market.metering import (
    MeteringBounds,
    compute_max_completion_tokens,
    compute_prompt_token_bound,
    verify_receipt_metering,
)
from aitbc.protocol.receipt import InvalidReceipt, Receipt, ReceiptUnits

_RECEIPT = Receipt(
    chain_id="aitbc-unit",
    job_id="job_1",
    miner="ait1" + "q" * 58,
    client="client",
    coordinator="ait1" + "p" * 58,
    model="m",
    model_digest="sha256:" + "0" * 64,
    input_hash="0" * 64,
    output_hash="1" * 64,
    units=ReceiptUnits(prompt_tokens=5, completion_tokens=2, compute_ms=10),
    unit_price=1,
    total_price=7,
    started_at_ms=1,
    finished_at_ms=20,
)
BOUNDS = MeteringBounds(unit_price=1, max_completion_tokens=128, max_prompt_tokens=100)


def _receipt(prompt: int = 5, completion: int = 2, price: int = 1) -> Receipt:
    units = ReceiptUnits(prompt_tokens=prompt, completion_tokens=completion, compute_ms=10)
    return msgspec.structs.replace(_RECEIPT, units=units, unit_price=price, total_price=(prompt + completion) * price)


def _reason(receipt: Receipt, bounds: MeteringBounds = BOUNDS) -> str | None:
    try:
        verify_receipt_metering(receipt, bounds)
    except InvalidReceipt as exc:
        return exc.reason
    return None


def test_an_honest_receipt_passes() -> None:
    assert _reason(_receipt()) is None
    assert _reason(_receipt(prompt=100, completion=128)) is None


def test_a_price_other_than_the_assigned_one_is_refused() -> None:
    assert _reason(_receipt(price=1_000)) == "unit_price_not_assigned"
    assert _reason(_receipt(price=0)) == "unit_price_not_assigned"
    legacy = MeteringBounds(unit_price=None, max_completion_tokens=128, max_prompt_tokens=100)
    assert _reason(_receipt(price=3), legacy) is None  # assigned before prices were recorded


def test_more_completion_tokens_than_max_tokens_are_refused() -> None:
    assert _reason(_receipt(completion=129)) == "completion_tokens_above_max"
    embedding = MeteringBounds(
        unit_price=1, max_completion_tokens=compute_max_completion_tokens("embedding", 128), max_prompt_tokens=100
    )
    assert _reason(_receipt(completion=1), embedding) == "completion_tokens_above_max"


def test_more_prompt_tokens_than_the_input_holds_are_refused() -> None:
    assert _reason(_receipt(prompt=101)) == "prompt_tokens_above_count"
    bound = compute_prompt_token_bound("inference", ["hello"])  # the 5-character prompt
    assert bound < 1_000
    assert _reason(_receipt(prompt=1_000), MeteringBounds(1, 128, bound)) == "prompt_tokens_above_count"


def test_the_tokenizer_count_replaces_the_byte_count() -> None:
    text = "x" * 1_000
    by_bytes = compute_prompt_token_bound("inference", [text])
    by_tokens = compute_prompt_token_bound("inference", [text], lambda s: len(s) // 4)
    assert by_bytes - by_tokens == 750


def test_sealed_inputs_are_bounded_by_their_size() -> None:
    assert compute_prompt_token_bound("inference", [], sealed_bytes=500) > 500
    assert compute_prompt_token_bound("embedding", [], sealed_bytes=500) > 500


@given(st.lists(st.text(max_size=200), min_size=1, max_size=8))
def test_no_byte_level_tokenizer_can_pass_the_byte_bound(pieces: list[str]) -> None:
    """Each token of a byte-level tokenizer covers >= 1 byte: the bound is at least the bytes plus the markers."""
    bound = compute_prompt_token_bound("inference", pieces)
    assert bound >= sum(len(p.encode("utf-8", "surrogatepass")) for p in pieces) + 64
    texts_bound = compute_prompt_token_bound("embedding", pieces)
    assert texts_bound >= sum(len(p.encode("utf-8", "surrogatepass")) + 2 for p in pieces)


@pytest.mark.parametrize("kind", ["inference", "embedding", "zk-inference"])
def test_completion_bound_by_kind(kind: str) -> None:
    assert compute_max_completion_tokens(kind, 64) == (64 if kind == "inference" else 0)
