"""ACE v1 canonical encoding: round trips, strict decoding, determinism and a pinned vector."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.chain.entries import Account
from aitbc.chain.genesis import Genesis, GenesisBalance
from aitbc.chain.params import ChainParams
from aitbc.protocol import codec
from aitbc.protocol.address import encode_address
from aitbc.protocol.block import Block, BlockHeader, block_from_bytes, block_hash
from aitbc.protocol.crypto import KeyPair, sha256
from aitbc.protocol.errors import EncodingError, InvalidTx, TxRejection
from aitbc.protocol.tx import (
    Transfer,
    sign_tx,
    tx_bytes,
    tx_from_bytes,
    tx_from_json_obj,
    tx_hash,
    tx_signing_bytes,
    tx_to_json_obj,
    verify_tx,
)
from aitbc.protocol.types import MAX_TIME_MS, MAX_U64

VECTOR_PATH = Path(__file__).resolve().parents[2] / "vectors" / "transfer_v1.json"

# -- strategies ----------------------------------------------------------------

u64s = st.integers(min_value=0, max_value=MAX_U64)
times = st.integers(min_value=0, max_value=MAX_TIME_MS)
addresses = st.binary(min_size=32, max_size=32).map(encode_address)
hashes = st.binary(min_size=32, max_size=32).map(bytes.hex)
chain_ids = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,63}", fullmatch=True)
signatures = st.one_of(st.just(""), st.binary(min_size=64, max_size=64).map(bytes.hex))
memos = st.text(max_size=64)

transfers = st.builds(
    Transfer,
    chain_id=chain_ids,
    sender=addresses,
    nonce=u64s,
    fee=u64s,
    recipient=addresses,
    amount=u64s,
    memo=memos,
    signature=signatures,
)
headers = st.builds(
    BlockHeader,
    chain_id=chain_ids,
    height=u64s,
    time_ms=times,
    prev_hash=hashes,
    tx_root=hashes,
    tx_count=u64s,
    state_root=hashes,
    proposer=addresses,
)
blocks = st.builds(Block, header=headers, proposer_signature=signatures, txs=st.lists(transfers, max_size=3))
accounts = st.builds(Account, balance=u64s, nonce=u64s)
chain_params = st.builds(
    ChainParams,
    block_time_ms=u64s,
    max_block_txs=u64s,
    max_block_bytes=u64s,
    max_tx_bytes=u64s,
    min_fee=u64s,
    mempool_max_txs=u64s,
    mempool_nonce_window=u64s,
    mempool_max_per_sender=u64s,
)
geneses = st.builds(
    Genesis,
    chain_id=chain_ids,
    genesis_time_ms=times,
    authorities=st.lists(addresses, max_size=4),
    balances=st.lists(st.builds(GenesisBalance, address=addresses, amount=u64s), max_size=4),
    params=chain_params,
)

ROUND_TRIP_CASES = [
    pytest.param(Transfer, transfers, id="Transfer"),
    pytest.param(BlockHeader, headers, id="BlockHeader"),
    pytest.param(Block, blocks, id="Block"),
    pytest.param(Account, accounts, id="Account"),
    pytest.param(Genesis, geneses, id="Genesis"),
]


def _u32(n: int) -> bytes:
    return struct.pack(">I", n)


# -- round trips -----------------------------------------------------------------


@pytest.mark.parametrize(("cls", "strategy"), ROUND_TRIP_CASES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip(cls: type[msgspec.Struct], strategy: st.SearchStrategy[Any], data: st.DataObject) -> None:
    value = data.draw(strategy)
    encoded = codec.encode(value)
    decoded = codec.decode(cls, encoded)
    assert decoded == value
    assert type(decoded) is cls
    # and the other direction: accepted bytes re-encode to themselves
    assert codec.encode(decoded) == encoded


@pytest.mark.parametrize(("cls", "strategy"), ROUND_TRIP_CASES)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_encoding_is_deterministic(
    cls: type[msgspec.Struct], strategy: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    value = data.draw(strategy)
    # an equal value built independently (through the JSON wire form) encodes to the same bytes
    rebuilt = msgspec.json.decode(msgspec.json.encode(value), type=cls)
    assert rebuilt == value
    assert codec.encode(rebuilt) == codec.encode(value)
    assert codec.encode(value) == codec.encode(value)


@settings(max_examples=40, deadline=None)
@given(a=transfers, b=transfers)
def test_distinct_transfers_encode_differently(a: Transfer, b: Transfer) -> None:
    assert (codec.encode(a) == codec.encode(b)) == (a == b)


def test_layout_of_a_small_struct() -> None:
    # version | u32 len "Account" | balance u64 BE | nonce u64 BE
    expected = b"\x01" + _u32(7) + b"Account" + (1).to_bytes(8, "big") + (2).to_bytes(8, "big")
    assert codec.encode(Account(balance=1, nonce=2)) == expected


def test_omit_drops_fields_from_the_body(keys: Any, make_transfer: Any) -> None:
    tx = make_transfer(keys.alice, keys.bob)
    full = codec.encode(tx)
    unsigned = codec.encode(tx, omit=frozenset({"signature"}))
    sig = bytes.fromhex(tx.signature)
    assert full == unsigned + _u32(len(sig)) + sig
    assert tx_signing_bytes(tx) == unsigned


# -- strict decoding ------------------------------------------------------------


@pytest.mark.parametrize(("cls", "strategy"), ROUND_TRIP_CASES)
@settings(max_examples=15, deadline=None)
@given(data=st.data(), extra=st.binary(min_size=1, max_size=8))
def test_decode_rejects_trailing_bytes(
    cls: type[msgspec.Struct], strategy: st.SearchStrategy[Any], data: st.DataObject, extra: bytes
) -> None:
    encoded = codec.encode(data.draw(strategy))
    with pytest.raises(EncodingError, match="trailing"):
        codec.decode(cls, encoded + extra)


@pytest.mark.parametrize(("cls", "strategy"), ROUND_TRIP_CASES)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_decode_rejects_every_truncation(
    cls: type[msgspec.Struct], strategy: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    encoded = codec.encode(data.draw(strategy))
    for cut in range(len(encoded)):
        with pytest.raises(EncodingError):
            codec.decode(cls, encoded[:cut])


@pytest.mark.parametrize("version", [0, 2, 0xFF])
def test_decode_rejects_wrong_version_byte(version: int) -> None:
    encoded = codec.encode(Account(balance=5, nonce=1))
    with pytest.raises(EncodingError, match="version"):
        codec.decode(Account, bytes([version]) + encoded[1:])


def test_decode_rejects_empty_input() -> None:
    with pytest.raises(EncodingError):
        codec.decode(Account, b"")


def test_decode_rejects_unknown_tag() -> None:
    body = (5).to_bytes(8, "big") + (1).to_bytes(8, "big")
    valid = b"\x01" + _u32(7) + b"Account" + body
    assert codec.decode(Account, valid) == Account(balance=5, nonce=1)
    with pytest.raises(EncodingError, match="unknown tag"):
        codec.decode(Account, b"\x01" + _u32(7) + b"Accounx" + body)


def test_decode_rejects_a_different_type(keys: Any, make_transfer: Any) -> None:
    tx_encoded = codec.encode(make_transfer(keys.alice, keys.bob))
    with pytest.raises(EncodingError, match="unknown tag"):
        codec.decode(Account, tx_encoded)
    with pytest.raises(EncodingError, match="unknown tag"):
        codec.decode(BlockHeader, codec.encode(Account()))


def test_decode_rejects_an_out_of_range_integer() -> None:
    too_big = b"\x01" + _u32(7) + b"Account" + (MAX_U64 + 1).to_bytes(8, "big") + (0).to_bytes(8, "big")
    with pytest.raises(EncodingError):
        codec.decode(Account, too_big)


def test_decode_rejects_bad_utf8(keys: Any, make_transfer: Any) -> None:
    tx = make_transfer(keys.alice, keys.bob, memo="ab")
    encoded = codec.encode(tx)
    marker = _u32(2) + b"ab"
    assert encoded.count(marker) == 1
    with pytest.raises(EncodingError, match="UTF-8"):
        codec.decode(Transfer, encoded.replace(marker, _u32(2) + b"\xff\xfe"))


def test_decode_rejects_an_invalid_field_value(keys: Any, make_transfer: Any) -> None:
    # a chain id outside its pattern is refused although the bytes are well formed
    tx = make_transfer(keys.alice, keys.bob, chain_id="abc")
    encoded = codec.encode(tx)
    marker = _u32(3) + b"abc"
    with pytest.raises(EncodingError, match="invalid"):
        codec.decode(Transfer, encoded.replace(marker, _u32(3) + b"ABC"))


def test_decode_rejects_a_huge_list_count() -> None:
    header = BlockHeader(
        chain_id="c",
        height=1,
        time_ms=1,
        prev_hash="00" * 32,
        tx_root="00" * 32,
        tx_count=0,
        state_root="00" * 32,
        proposer=encode_address(bytes(32)),
    )
    encoded = codec.encode(Block(header=header, proposer_signature="", txs=[]))
    assert encoded.endswith(_u32(0))
    with pytest.raises(EncodingError):
        codec.decode(Block, encoded[:-4] + _u32(2**32 - 1))


def test_encode_rejects_unencodable_strings() -> None:
    # constructors do not validate patterns, so a lone surrogate can reach the encoder
    header = BlockHeader(
        chain_id="\ud800",
        height=1,
        time_ms=1,
        prev_hash="00" * 32,
        tx_root="00" * 32,
        tx_count=0,
        state_root="00" * 32,
        proposer=encode_address(bytes(32)),
    )
    with pytest.raises(EncodingError):
        codec.encode(header)


def test_a_transfer_cannot_hold_a_lone_surrogate(keys: Any) -> None:
    with pytest.raises(ValueError, match="unicode"):
        Transfer(
            chain_id="c", sender=keys.alice.address, nonce=0, fee=1, recipient=keys.bob.address, amount=1, memo="\ud800"
        )


def test_encode_rejects_negative_integers() -> None:
    with pytest.raises(EncodingError):
        codec.encode(Account(balance=-1))


# -- the pinned vector ------------------------------------------------------------


def _vector() -> dict[str, Any]:
    return json.loads(VECTOR_PATH.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _vector_tx(vec: dict[str, Any]) -> Transfer:
    sender = KeyPair.from_seed(bytes.fromhex(vec["sender_seed_hex"]))
    recipient = KeyPair.from_seed(bytes.fromhex(vec["recipient_seed_hex"]))
    fields = vec["tx"]
    unsigned = Transfer(
        chain_id=fields["chain_id"],
        sender=sender.address,
        nonce=fields["nonce"],
        fee=fields["fee"],
        recipient=recipient.address,
        amount=fields["amount"],
        memo=fields["memo"],
    )
    return sign_tx(unsigned, sender)


def test_transfer_vector_pins_the_encoding() -> None:
    vec = _vector()
    assert vec["encoding_version"] == codec.ENCODING_VERSION
    tx = _vector_tx(vec)
    assert tx_to_json_obj(tx) == vec["tx"]
    assert tx_signing_bytes(tx).hex() == vec["signing_bytes_hex"]
    assert tx_bytes(tx).hex() == vec["canonical_bytes_hex"]
    assert tx_hash(tx) == vec["tx_hash"]
    assert sha256(bytes.fromhex(vec["canonical_bytes_hex"])).hex() == vec["tx_hash"]


def test_transfer_vector_decodes_and_verifies() -> None:
    vec = _vector()
    raw = bytes.fromhex(vec["canonical_bytes_hex"])
    tx = tx_from_bytes(raw)
    assert tx == tx_from_json_obj(vec["tx"])
    verified = verify_tx(tx)
    assert verified.hash == vec["tx_hash"]
    assert verified.size == len(raw)


def test_tx_from_bytes_maps_encoding_errors_to_malformed() -> None:
    raw = bytes.fromhex(_vector()["canonical_bytes_hex"])
    with pytest.raises(InvalidTx) as info:
        tx_from_bytes(raw + b"\x00")
    assert info.value.reason == TxRejection.MALFORMED == "malformed"


@settings(max_examples=25, deadline=None)
@given(block=blocks)
def test_block_bytes_round_trip_and_hash(block: Block) -> None:
    raw = codec.encode(block)
    assert block_from_bytes(raw) == block
    assert block_hash(block.header) == sha256(codec.encode(block.header)).hex()
