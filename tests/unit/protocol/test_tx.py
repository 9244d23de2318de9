"""Txs: signing, signature checks (including wrong-domain signatures) and strict JSON parsing."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.protocol.crypto import SigningKind
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.tx import (
    sign_tx,
    tx_bytes,
    tx_from_json,
    tx_from_json_obj,
    tx_hash,
    tx_signing_bytes,
    tx_to_json_obj,
    verify_tx,
)


def _reject_reason(fn: Any, arg: Any) -> str:
    with pytest.raises(InvalidTx) as info:
        fn(arg)
    assert info.value.reason == info.value.rejection.value
    return info.value.reason


# -- signing and verification ------------------------------------------------------


def test_a_signed_tx_verifies(keys: Any, make_transfer: Any) -> None:
    tx = make_transfer(keys.alice, keys.bob, amount=5, fee=10, memo="thanks")
    verified = verify_tx(tx)
    assert verified.tx == tx
    assert verified.hash == tx_hash(tx)
    assert verified.size == len(tx_bytes(tx))


@settings(max_examples=30, deadline=None)
@given(
    nonce=st.integers(0, 2**63 - 1),
    fee=st.integers(0, 2**63 - 1),
    amount=st.integers(0, 2**63 - 1),
    memo=st.text(max_size=256),
)
def test_verified_hash_and_size_match_the_canonical_bytes(
    keys: Any, make_transfer: Any, nonce: int, fee: int, amount: int, memo: str
) -> None:
    tx = make_transfer(keys.alice, keys.bob, amount=amount, nonce=nonce, fee=fee, memo=memo)
    verified = verify_tx(tx)
    assert verified.hash == tx_hash(tx)
    assert verified.size == len(tx_bytes(tx))


def test_sign_tx_refuses_a_key_that_is_not_the_sender(keys: Any, make_transfer: Any) -> None:
    unsigned = make_transfer(keys.alice, keys.bob, sign=False)
    with pytest.raises(ValueError, match="sender"):
        sign_tx(unsigned, keys.bob)


def test_the_signature_is_not_part_of_the_signed_bytes(keys: Any, make_transfer: Any) -> None:
    tx = make_transfer(keys.alice, keys.bob)
    assert tx_signing_bytes(tx) == tx_signing_bytes(msgspec.structs.replace(tx, signature=""))
    assert tx_bytes(tx) != tx_signing_bytes(tx)


def test_unsigned_tx_is_refused(keys: Any, make_transfer: Any) -> None:
    tx = make_transfer(keys.alice, keys.bob, sign=False)
    assert _reject_reason(verify_tx, tx) == TxRejection.BAD_SIGNATURE == "bad_signature"


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 1_001},
        {"fee": 11},
        {"nonce": 1},
        {"memo": "x"},
        {"chain_id": "aitbc-other"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_tampered_field_breaks_the_signature(keys: Any, make_transfer: Any, change: dict[str, Any]) -> None:
    tx = make_transfer(keys.alice, keys.bob, amount=1_000, fee=10, nonce=0)
    tampered = msgspec.structs.replace(tx, **change)
    assert _reject_reason(verify_tx, tampered) == "bad_signature"


def test_tampered_recipient_breaks_the_signature(keys: Any, make_transfer: Any) -> None:
    tx = make_transfer(keys.alice, keys.bob)
    assert _reject_reason(verify_tx, msgspec.structs.replace(tx, recipient=keys.carol.address)) == "bad_signature"


def test_signature_of_another_key_is_refused(keys: Any, make_transfer: Any) -> None:
    tx = make_transfer(keys.alice, keys.bob)
    by_bob = keys.bob.sign(tx.chain_id, SigningKind.TX, tx_signing_bytes(tx)).hex()
    assert _reject_reason(verify_tx, msgspec.structs.replace(tx, signature=by_bob)) == "bad_signature"


def test_copied_signature_onto_another_sender_is_refused(keys: Any, make_transfer: Any) -> None:
    tx = make_transfer(keys.alice, keys.bob)
    forged = msgspec.structs.replace(tx, sender=keys.carol.address)
    assert _reject_reason(verify_tx, forged) == "bad_signature"


@pytest.mark.parametrize("kind", [k for k in SigningKind if k is not SigningKind.TX])
def test_wrong_kind_signature_is_refused(keys: Any, make_transfer: Any, kind: SigningKind) -> None:
    """A signature made for a block (or any other purpose) over the very same bytes is not a tx signature."""
    tx = make_transfer(keys.alice, keys.bob, sign=False)
    signature = keys.alice.sign(tx.chain_id, kind, tx_signing_bytes(tx)).hex()
    assert _reject_reason(verify_tx, msgspec.structs.replace(tx, signature=signature)) == "bad_signature"
    # the same call with the right kind is accepted, so only the kind made the difference
    good = keys.alice.sign(tx.chain_id, SigningKind.TX, tx_signing_bytes(tx)).hex()
    verify_tx(msgspec.structs.replace(tx, signature=good))


def test_signature_for_another_chain_is_refused(keys: Any, make_transfer: Any) -> None:
    tx = make_transfer(keys.alice, keys.bob, sign=False)
    signature = keys.alice.sign("aitbc-other", SigningKind.TX, tx_signing_bytes(tx)).hex()
    assert _reject_reason(verify_tx, msgspec.structs.replace(tx, signature=signature)) == "bad_signature"


def test_tx_hash_commits_to_the_signature(keys: Any, make_transfer: Any) -> None:
    tx = make_transfer(keys.alice, keys.bob)
    other_sig = keys.alice.sign(tx.chain_id, SigningKind.BLOCK, tx_signing_bytes(tx)).hex()
    assert tx_hash(tx) != tx_hash(msgspec.structs.replace(tx, signature=other_sig))


# -- JSON --------------------------------------------------------------------------


def test_json_round_trip(keys: Any, make_transfer: Any) -> None:
    tx = make_transfer(keys.alice, keys.bob, memo="héllo ✓")
    obj = tx_to_json_obj(tx)
    assert obj["type"] == "transfer"
    assert tx_from_json_obj(obj) == tx
    assert tx_from_json(msgspec.json.encode(obj)) == tx
    assert tx_from_json(msgspec.json.encode(obj).decode()) == tx


def test_memo_defaults_to_empty(keys: Any, make_transfer: Any) -> None:
    obj = tx_to_json_obj(make_transfer(keys.alice, keys.bob, sign=False))
    del obj["memo"], obj["signature"]
    tx = tx_from_json_obj(obj)
    assert tx.memo == ""
    assert tx.signature == ""


def _valid_obj(keys: Any, make_transfer: Any) -> dict[str, Any]:
    return tx_to_json_obj(make_transfer(keys.alice, keys.bob))


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda o: o.update(extra=1), id="unknown-field"),
        pytest.param(lambda o: o.update(Amount=5), id="unknown-field-case"),
        pytest.param(lambda o: o.pop("sender"), id="missing-sender"),
        pytest.param(lambda o: o.pop("amount"), id="missing-amount"),
        pytest.param(lambda o: o.update(amount=-1), id="negative-amount"),
        pytest.param(lambda o: o.update(amount=2**63), id="amount-above-max"),
        pytest.param(lambda o: o.update(amount="5"), id="amount-as-string"),
        pytest.param(lambda o: o.update(amount=5.0), id="amount-as-float"),
        pytest.param(lambda o: o.update(nonce=True), id="nonce-as-bool"),
        pytest.param(lambda o: o.update(fee=None), id="fee-null"),
        pytest.param(lambda o: o.update(chain_id=""), id="empty-chain-id"),
        pytest.param(lambda o: o.update(chain_id="Upper"), id="chain-id-pattern"),
        pytest.param(lambda o: o.update(memo="x" * 257), id="memo-too-long"),
        pytest.param(lambda o: o.update(memo="\ud800"), id="memo-lone-surrogate"),
        pytest.param(lambda o: o.update(signature="ab"), id="signature-short"),
        pytest.param(lambda o: o.update(signature=o["signature"].upper()), id="signature-uppercase"),
        pytest.param(lambda o: o.update(recipient="bc1qqqqqq"), id="recipient-prefix"),
        pytest.param(lambda o: o.update(recipient=o["recipient"].upper()), id="recipient-uppercase"),
        pytest.param(
            lambda o: o.update(sender=o["sender"][:-1] + ("q" if o["sender"][-1] != "q" else "p")),
            id="sender-checksum",
        ),
        pytest.param(lambda o: o.update(recipient=o["recipient"][:-2]), id="recipient-length"),
        pytest.param(lambda o: o.pop("type"), id="missing-type"),
    ],
)
def test_malformed_json_is_refused(keys: Any, make_transfer: Any, mutate: Any) -> None:
    obj = _valid_obj(keys, make_transfer)
    mutate(obj)
    assert _reject_reason(tx_from_json_obj, obj) == TxRejection.MALFORMED == "malformed"
    try:
        raw = msgspec.json.encode(obj)
    except (msgspec.EncodeError, UnicodeEncodeError):  # a lone surrogate cannot be written as UTF-8 JSON
        return
    assert _reject_reason(tx_from_json, raw) == "malformed"


def test_lone_surrogate_escape_in_json_is_refused(keys: Any, make_transfer: Any) -> None:
    raw = msgspec.json.encode(_valid_obj(keys, make_transfer)).replace(b'"memo":""', b'"memo":"\\ud800"')
    assert b"\\ud800" in raw
    assert _reject_reason(tx_from_json, raw) == "malformed"


@pytest.mark.parametrize("tag", ["mint", "Transfer", "", "transfer2"])
def test_unknown_tx_type_is_refused(keys: Any, make_transfer: Any, tag: str) -> None:
    obj = _valid_obj(keys, make_transfer)
    obj["type"] = tag
    assert _reject_reason(tx_from_json_obj, obj) == TxRejection.UNKNOWN_TX_TYPE == "unknown_tx_type"
    assert _reject_reason(tx_from_json, msgspec.json.encode(obj)) == "unknown_tx_type"


@pytest.mark.parametrize("tag", [None, [], {}, ["transfer"], {"a": 1}, 1, True])
def test_non_string_type_is_malformed(keys: Any, make_transfer: Any, tag: Any) -> None:
    obj = _valid_obj(keys, make_transfer)
    obj["type"] = tag
    assert _reject_reason(tx_from_json_obj, obj) == "malformed"
    assert _reject_reason(tx_from_json, msgspec.json.encode(obj)) == "malformed"


@pytest.mark.parametrize("value", [[], "transfer", 5, None, b"{}"])
def test_non_object_is_malformed(value: Any) -> None:
    assert _reject_reason(tx_from_json_obj, value) == "malformed"


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b'{"type": "transfer"', b"\xff\xfe"])
def test_invalid_json_is_malformed(raw: bytes) -> None:
    assert _reject_reason(tx_from_json, raw) == "malformed"


@settings(max_examples=50, deadline=None)
@given(obj=st.dictionaries(st.text(max_size=12), st.one_of(st.none(), st.integers(), st.text(max_size=8))))
def test_arbitrary_objects_never_crash_the_parser(obj: dict[str, Any]) -> None:
    for candidate in (obj, {**obj, "type": "transfer"}):
        with pytest.raises(InvalidTx):
            tx_from_json_obj(candidate)
