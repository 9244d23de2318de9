"""Receipts: miner signature, coordinator countersignature, and every rule of ``verify_receipt`` with its reason."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import msgspec
import pytest

from aitbc.protocol.crypto import KeyPair, SigningKind
from aitbc.protocol.job import JobInput, JobOutput, compute_input_hash, compute_output_hash
from aitbc.protocol.receipt import (
    CLOCK_SKEW_MS,
    MAX_TOKENS_PER_SECOND,
    InvalidReceipt,
    Receipt,
    ReceiptExpectation,
    ReceiptRejection,
    ReceiptUnits,
    compute_receipt_hash,
    compute_total_price,
    coordinator_signing_bytes,
    countersign_receipt,
    miner_signing_bytes,
    sign_receipt_as_miner,
    verify_receipt,
)

CHAIN = "aitbc-unit"
MINER = KeyPair.from_seed(b"\x11" * 32)
OTHER_MINER = KeyPair.from_seed(b"\x12" * 32)
COORDINATOR = KeyPair.from_seed(b"\x21" * 32)
OTHER_COORDINATOR = KeyPair.from_seed(b"\x22" * 32)
ASSIGNED_AT = 1_700_000_000_000
STARTED = ASSIGNED_AT + 50
FINISHED = STARTED + 2_000
ARRIVED = FINISHED + 30
DIGEST = "sha256:" + "ab" * 32

JOB_INPUT = JobInput(type="inference", model="smollm2", prompt="Hello, AITBC!")
OUTPUT = JobOutput(text="Hello! How can I help?")
UNITS = ReceiptUnits(prompt_tokens=12, completion_tokens=30, compute_ms=1_900)


def make_receipt(**changes: Any) -> Receipt:
    """An unsigned receipt that is right in every field; ``changes`` override fields."""
    fields: dict[str, Any] = {
        "chain_id": CHAIN,
        "job_id": "job_0001",
        "miner": MINER.address,
        "client": "key_abc",
        "coordinator": COORDINATOR.address,
        "model": "smollm2",
        "model_digest": DIGEST,
        "input_hash": compute_input_hash(JOB_INPUT),
        "output_hash": compute_output_hash(OUTPUT),
        "units": UNITS,
        "unit_price": 3,
        "total_price": compute_total_price(UNITS, 3),
        "started_at_ms": STARTED,
        "finished_at_ms": FINISHED,
    }
    fields.update(changes)
    return Receipt(**fields)


def signed(receipt: Receipt | None = None, miner: KeyPair = MINER, coordinator: KeyPair = COORDINATOR) -> Receipt:
    return countersign_receipt(sign_receipt_as_miner(receipt or make_receipt(), miner), coordinator)


def expectation(**changes: Any) -> ReceiptExpectation:
    base = ReceiptExpectation(
        chain_id=CHAIN,
        job_id="job_0001",
        miner=MINER.address,
        client="key_abc",
        coordinator=COORDINATOR.address,
        model="smollm2",
        model_digest=DIGEST,
        input_hash=compute_input_hash(JOB_INPUT),
        output_hash=compute_output_hash(OUTPUT),
        max_total_price=1_000,
        earliest_start_ms=ASSIGNED_AT,
        latest_finish_ms=ARRIVED,
    )
    return replace(base, **changes)


def rejection(receipt: Receipt, expected: ReceiptExpectation | None = None) -> str:
    with pytest.raises(InvalidReceipt) as info:
        verify_receipt(receipt, expected or expectation())
    assert info.value.rejection.value == info.value.reason
    assert info.value.message
    return info.value.reason


# -- the good case ----------------------------------------------------------------------


def test_a_sound_receipt_verifies() -> None:
    receipt = signed()
    verify_receipt(receipt, expectation())
    assert receipt.total_price == (12 + 30) * 3
    assert len(receipt.miner_signature) == 128 and len(receipt.coordinator_signature) == 128


def test_a_miner_signed_receipt_verifies_without_requiring_the_countersignature() -> None:
    receipt = sign_receipt_as_miner(make_receipt(), MINER)
    assert receipt.coordinator_signature == ""
    verify_receipt(receipt, expectation(require_coordinator_signature=False))
    assert rejection(receipt) == "bad_coordinator_signature"


def test_the_expectation_bounds_are_optional() -> None:
    receipt = signed(make_receipt(total_price=compute_total_price(UNITS, 3)))
    verify_receipt(receipt, expectation(max_total_price=None, earliest_start_ms=None, latest_finish_ms=None))


def test_signatures_cover_the_canonical_encoding() -> None:
    receipt = signed()
    # The miner signs everything except the two signatures; the coordinator everything except its own.
    assert miner_signing_bytes(receipt) == miner_signing_bytes(msgspec.structs.replace(receipt, miner_signature=""))
    assert coordinator_signing_bytes(receipt) != miner_signing_bytes(receipt)
    assert compute_receipt_hash(receipt) != compute_receipt_hash(msgspec.structs.replace(receipt, unit_price=4))
    # Re-signing as a miner drops a stale countersignature.
    assert sign_receipt_as_miner(receipt, MINER).coordinator_signature == ""


def test_a_receipt_survives_the_json_round_trip() -> None:
    receipt = signed()
    again = msgspec.convert(msgspec.json.decode(msgspec.json.encode(receipt)), Receipt)
    assert again == receipt
    verify_receipt(again, expectation())
    assert compute_receipt_hash(again) == compute_receipt_hash(receipt)


# -- signatures ----------------------------------------------------------------------------


def test_forged_miner_signature() -> None:
    # Signed by a key other than the miner the receipt names.
    assert rejection(signed(miner=OTHER_MINER)) == "bad_miner_signature"


def test_missing_miner_signature() -> None:
    assert rejection(countersign_receipt(make_receipt(), COORDINATOR)) == "bad_miner_signature"


def test_tampered_after_the_miner_signed() -> None:
    original = sign_receipt_as_miner(make_receipt(), MINER)
    # A field changed after signing (units and total still consistent, so only the signature can catch it).
    more = ReceiptUnits(prompt_tokens=12, completion_tokens=31, compute_ms=1_900)
    tampered = msgspec.structs.replace(original, units=more, total_price=compute_total_price(more, 3))
    assert rejection(countersign_receipt(tampered, COORDINATOR)) == "bad_miner_signature"


def test_miner_signature_for_another_purpose_or_chain() -> None:
    receipt = make_receipt()
    wrong_kind = MINER.sign(CHAIN, SigningKind.TX, miner_signing_bytes(receipt)).hex()
    assert rejection(
        countersign_receipt(msgspec.structs.replace(receipt, miner_signature=wrong_kind), COORDINATOR)
    ) == ("bad_miner_signature")
    wrong_chain = MINER.sign("aitbc-other", SigningKind.RECEIPT, miner_signing_bytes(receipt)).hex()
    assert rejection(
        countersign_receipt(msgspec.structs.replace(receipt, miner_signature=wrong_chain), COORDINATOR)
    ) == ("bad_miner_signature")


def test_bad_coordinator_countersignature() -> None:
    assert rejection(signed(coordinator=OTHER_COORDINATOR)) == "bad_coordinator_signature"
    good = signed()
    flipped = good.coordinator_signature[:-2] + ("00" if good.coordinator_signature[-2:] != "00" else "01")
    assert rejection(msgspec.structs.replace(good, coordinator_signature=flipped)) == "bad_coordinator_signature"
    # A countersignature in the miner's domain (the miner's own signature replayed) does not count.
    reused = msgspec.structs.replace(good, coordinator_signature=good.miner_signature)
    assert rejection(reused) == "bad_coordinator_signature"


# -- identity: job, miner, client, coordinator, chain ---------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("job_id", "job_0002", "wrong_job"),
        ("client", "key_other", "wrong_client"),
        ("coordinator", OTHER_COORDINATOR.address, "wrong_coordinator"),
        ("chain_id", "aitbc-other", "wrong_chain"),
    ],
)
def test_receipt_about_something_else(field: str, value: str, reason: str) -> None:
    # Properly signed by everyone, but about another job / client / coordinator / chain.
    receipt = make_receipt(**{field: value})
    if field == "chain_id":
        receipt = countersign_receipt(sign_receipt_as_miner(receipt, MINER), COORDINATOR)
    else:
        receipt = signed(receipt)
    assert rejection(receipt) == reason


def test_wrong_miner() -> None:
    # A genuine receipt from another miner is not a receipt from the assigned one.
    receipt = signed(make_receipt(miner=OTHER_MINER.address), miner=OTHER_MINER)
    assert rejection(receipt) == "wrong_miner"


# -- model, input, output ---------------------------------------------------------------------


def test_wrong_model() -> None:
    assert rejection(signed(make_receipt(model="llama3.2"))) == "wrong_model"


def test_wrong_model_digest() -> None:
    assert rejection(signed(make_receipt(model_digest="sha256:" + "cd" * 32))) == "wrong_model_digest"


def test_input_hash_mismatch() -> None:
    other_input = JobInput(type="inference", model="smollm2", prompt="Hello, AITBC?")
    assert rejection(signed(make_receipt(input_hash=compute_input_hash(other_input)))) == "input_hash_mismatch"


def test_output_hash_mismatch() -> None:
    # The receipt is sound, but the output actually delivered is different.
    delivered = JobOutput(text="Hello! How can I help!")
    assert rejection(signed(), expectation(output_hash=compute_output_hash(delivered))) == "output_hash_mismatch"


# -- price ------------------------------------------------------------------------------------


def test_total_not_units_times_price() -> None:
    assert rejection(signed(make_receipt(total_price=compute_total_price(UNITS, 3) + 1))) == "price_mismatch"
    assert rejection(signed(make_receipt(unit_price=4))) == "price_mismatch"


def test_total_above_max_price() -> None:
    total = compute_total_price(UNITS, 3)
    verify_receipt(signed(), expectation(max_total_price=total))
    assert rejection(signed(), expectation(max_total_price=total - 1)) == "price_above_max"


# -- units and timing ----------------------------------------------------------------------------


def test_compute_time_longer_than_the_wall_time() -> None:
    units = ReceiptUnits(prompt_tokens=12, completion_tokens=30, compute_ms=FINISHED - STARTED + 2)
    receipt = signed(make_receipt(units=units, total_price=compute_total_price(units, 3)))
    assert rejection(receipt) == "units_inconsistent"
    # Exactly the wall time (plus rounding) is fine.
    units = ReceiptUnits(prompt_tokens=12, completion_tokens=30, compute_ms=FINISHED - STARTED + 1)
    verify_receipt(signed(make_receipt(units=units, total_price=compute_total_price(units, 3))), expectation())


def test_too_many_tokens_for_the_compute_time() -> None:
    compute_ms = 100
    limit = MAX_TOKENS_PER_SECOND * compute_ms // 1000
    ok = ReceiptUnits(prompt_tokens=1, completion_tokens=limit, compute_ms=compute_ms)
    verify_receipt(
        signed(make_receipt(units=ok, total_price=compute_total_price(ok, 3))), expectation(max_total_price=None)
    )
    bad = ReceiptUnits(prompt_tokens=1, completion_tokens=limit + 1, compute_ms=compute_ms)
    receipt = signed(make_receipt(units=bad, total_price=compute_total_price(bad, 3)))
    assert rejection(receipt, expectation(max_total_price=None)) == "units_inconsistent"


def test_tokens_with_zero_compute_time() -> None:
    units = ReceiptUnits(prompt_tokens=1, completion_tokens=10_000, compute_ms=0)
    receipt = signed(make_receipt(units=units, total_price=compute_total_price(units, 3)))
    assert rejection(receipt, expectation(max_total_price=None)) == "units_inconsistent"


def test_finishes_before_it_starts() -> None:
    receipt = signed(make_receipt(started_at_ms=FINISHED + 1, finished_at_ms=FINISHED))
    assert rejection(receipt) == "timing_inconsistent"


def test_starts_before_the_job_was_assigned() -> None:
    # Within the allowed clock skew it passes ...
    early = ASSIGNED_AT - CLOCK_SKEW_MS
    verify_receipt(signed(make_receipt(started_at_ms=early)), expectation())
    # ... beyond it, the miner claims to have worked before it had the job.
    receipt = signed(make_receipt(started_at_ms=early - 1))
    assert rejection(receipt) == "timing_inconsistent"


def test_finishes_after_the_result_arrived() -> None:
    late = ARRIVED + CLOCK_SKEW_MS
    verify_receipt(signed(make_receipt(finished_at_ms=late)), expectation())
    assert rejection(signed(make_receipt(finished_at_ms=late + 1))) == "timing_inconsistent"


# -- first failing rule wins; all reasons are distinct strings -------------------------------


def test_reasons_are_the_public_strings() -> None:
    assert {r.value for r in ReceiptRejection} == {
        "bad_miner_signature",
        "bad_coordinator_signature",
        "wrong_job",
        "wrong_miner",
        "wrong_client",
        "wrong_coordinator",
        "wrong_chain",
        "wrong_model",
        "wrong_model_digest",
        "input_hash_mismatch",
        "output_hash_mismatch",
        "price_mismatch",
        "price_above_max",
        "units_inconsistent",
        "timing_inconsistent",
        "unit_price_not_assigned",
        "completion_tokens_above_max",
        "prompt_tokens_above_count",
    }


SINGLE_FAULTS: list[tuple[str, Callable[[], Receipt]]] = [
    ("wrong_job", lambda: signed(make_receipt(job_id="job_x"))),
    ("wrong_model_digest", lambda: signed(make_receipt(model_digest="sha256:00"))),
    ("output_hash_mismatch", lambda: signed(make_receipt(output_hash="0" * 64))),
    ("price_mismatch", lambda: signed(make_receipt(total_price=1))),
]


@pytest.mark.parametrize(("reason", "build"), SINGLE_FAULTS)
def test_the_coordinator_countersignature_does_not_launder_a_bad_receipt(
    reason: str, build: Callable[[], Receipt]
) -> None:
    # Even with a valid countersignature, a receipt that breaks a rule stays invalid.
    receipt = build()
    assert receipt.coordinator_signature
    assert rejection(receipt) == reason
