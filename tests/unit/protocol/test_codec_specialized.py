"""The specialized (generated) body encoders give exactly the reference per-field bytes and errors."""

from __future__ import annotations

import hashlib
import random

import msgspec
import pytest

from aitbc.chain.entries import Account
from aitbc.chain.genesis import GenesisBalance
from aitbc.protocol import codec
from aitbc.protocol.block import BlockHeader
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.job import JobOutput, Message, Params
from aitbc.protocol.receipt import ReceiptUnits
from aitbc.protocol.tx import Transfer

ADDRESSES = [KeyPair.from_seed(hashlib.sha256(bytes([i])).digest()).address for i in range(4)]


def _outcome(fn: object, obj: msgspec.Struct) -> tuple[object, ...]:
    try:
        return ("ok", fn(obj))  # type: ignore[operator]
    except Exception as exc:
        return ("err", type(exc), str(exc))


def _random_struct(rnd: random.Random) -> msgspec.Struct:
    def u64() -> object:
        return rnd.choice([0, 1, 2**63 - 1, 2**64 - 1, 2**64, -1, rnd.randrange(2**40), True, 1.5, "7"])

    def text() -> object:
        return rnd.choice(["", "a", "ünïcödé", "\ud800", "x" * 300, 5, b"b"])

    def address() -> object:
        return rnd.choice([*ADDRESSES, "ait1bad", "", 3, ADDRESSES[0].upper()])

    def hexs() -> object:
        return rnd.choice(["", "00" * 64, "ab" * 32, "zz", "abc", 7])

    kind = rnd.randrange(8)
    if kind == 0:
        tx = Transfer(chain_id="c", sender=ADDRESSES[0], nonce=1, fee=1, recipient=ADDRESSES[1], amount=5)
        values = {
            "chain_id": text(),
            "sender": address(),
            "nonce": u64(),
            "fee": u64(),
            "recipient": address(),
            "amount": u64(),
            "memo": text(),
            "signature": hexs(),
        }
        for name, value in values.items():
            msgspec.structs.force_setattr(tx, name, value)
        return tx
    if kind == 1:
        return BlockHeader(
            chain_id=text(),  # type: ignore[arg-type]
            height=u64(),  # type: ignore[arg-type]
            time_ms=u64(),  # type: ignore[arg-type]
            prev_hash=hexs(),  # type: ignore[arg-type]
            tx_root=hexs(),  # type: ignore[arg-type]
            tx_count=u64(),  # type: ignore[arg-type]
            state_root=hexs(),  # type: ignore[arg-type]
            proposer=address(),  # type: ignore[arg-type]
        )
    if kind == 2:
        return Account(balance=u64(), nonce=u64())  # type: ignore[arg-type]
    if kind == 3:
        return Params(
            max_tokens=u64(),  # type: ignore[arg-type]
            temperature_milli=u64(),  # type: ignore[arg-type]
            seed=rnd.choice([None, u64()]),  # type: ignore[arg-type]
            stop=rnd.choice([[], [text()], [text(), text()]]),  # type: ignore[arg-type]
        )
    if kind == 4:
        return JobOutput(text=rnd.choice([None, text()]), dimensions=u64(), vectors_f32=hexs())  # type: ignore[arg-type]
    if kind == 5:
        return Message(role=text(), content=text())  # type: ignore[arg-type]
    if kind == 6:
        return ReceiptUnits(prompt_tokens=u64(), completion_tokens=u64(), compute_ms=u64())  # type: ignore[arg-type]
    return GenesisBalance(address=address(), amount=u64())  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(4))
def test_specialized_encoder_matches_reference_bytes_and_errors(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(2_000):
        obj = _random_struct(rnd)
        omits = [frozenset(), frozenset({"signature"})] if isinstance(obj, Transfer) else [frozenset()]
        for omit in omits:
            compiled = codec._compile(type(obj), omit)
            reference = _outcome(lambda o, c=compiled: codec._encode_fields(o, c.names, c.encoders), obj)
            assert _outcome(compiled.encode_body, obj) == reference
