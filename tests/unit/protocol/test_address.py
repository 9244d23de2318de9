"""bech32m ``ait1…`` addresses: round trip, checksum, prefix, case and length."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.protocol.address import (
    _CHARSET,
    HRP,
    PAYLOAD_LEN,
    _convert_bits,
    _hrp_expand,
    _polymod,
    decode_address,
    encode_address,
    is_valid_address,
)
from aitbc.protocol.crypto import KeyPair, address_of
from aitbc.protocol.errors import InvalidAddress

payloads = st.binary(min_size=PAYLOAD_LEN, max_size=PAYLOAD_LEN)

_BECH32M_CONST = 0x2BC830A3


def _bech32m(hrp: str, payload: bytes) -> str:
    """An independent bech32m encoder (BIP-350) for any hrp and payload length."""
    data = _convert_bits(payload, 8, 5, pad=True)
    polymod = _polymod(_hrp_expand(hrp) + data + [0] * 6) ^ _BECH32M_CONST
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


@settings(max_examples=100)
@given(payload=payloads)
def test_round_trip(payload: bytes) -> None:
    address = encode_address(payload)
    assert address.startswith("ait1")
    assert len(address) == len("ait1") + 52 + 6
    assert address == address.lower()
    assert decode_address(address) == payload
    assert is_valid_address(address)


def test_matches_the_reference_encoding() -> None:
    payload = bytes(range(32))
    assert encode_address(payload) == _bech32m(HRP, payload)


def test_key_address_is_the_public_key() -> None:
    key = KeyPair.from_seed(bytes(32))
    assert decode_address(key.address) == key.public_key
    assert address_of(key.public_key) == key.address


@settings(max_examples=100)
@given(payload=payloads, data=st.data())
def test_any_single_character_typo_is_detected(payload: bytes, data: st.DataObject) -> None:
    address = encode_address(payload)
    pos = data.draw(st.integers(min_value=len("ait1"), max_value=len(address) - 1), label="pos")
    replacement = data.draw(st.sampled_from([c for c in _CHARSET if c != address[pos]]), label="char")
    typo = address[:pos] + replacement + address[pos + 1 :]
    with pytest.raises(InvalidAddress):
        decode_address(typo)
    assert not is_valid_address(typo)


@settings(max_examples=50)
@given(payload=payloads, data=st.data())
def test_swapped_adjacent_characters_are_detected(payload: bytes, data: st.DataObject) -> None:
    address = encode_address(payload)
    pos = data.draw(st.integers(min_value=len("ait1"), max_value=len(address) - 2))
    if address[pos] == address[pos + 1]:
        return
    swapped = address[:pos] + address[pos + 1] + address[pos] + address[pos + 2 :]
    with pytest.raises(InvalidAddress):
        decode_address(swapped)


@pytest.mark.parametrize("hrp", ["bc", "aitt", "ai", "tait", "xyz"])
def test_wrong_prefix_is_rejected_even_with_a_valid_checksum(hrp: str) -> None:
    other = _bech32m(hrp, bytes(32))
    with pytest.raises(InvalidAddress, match="start with"):
        decode_address(other)


def test_prefix_swapped_without_recomputing_checksum_is_rejected() -> None:
    address = encode_address(bytes(32))
    with pytest.raises(InvalidAddress):
        decode_address("bc1" + address[len("ait1") :])


def test_uppercase_is_rejected() -> None:
    address = encode_address(bytes(range(32)))
    with pytest.raises(InvalidAddress, match="lowercase"):
        decode_address(address.upper())
    with pytest.raises(InvalidAddress, match="lowercase"):
        decode_address(address[:-1] + address[-1].upper())


@pytest.mark.parametrize("length", [0, 1, 20, 31, 33, 40, 64])
def test_wrong_payload_length_is_rejected(length: int) -> None:
    address = _bech32m(HRP, bytes(range(length)))
    with pytest.raises(InvalidAddress):
        decode_address(address)
    with pytest.raises(InvalidAddress):
        encode_address(bytes(length))


def test_truncated_and_extended_addresses_are_rejected() -> None:
    address = encode_address(bytes(range(32)))
    with pytest.raises(InvalidAddress):
        decode_address(address[:-1])
    with pytest.raises(InvalidAddress):
        decode_address(address + "q")
    with pytest.raises(InvalidAddress, match="too short"):
        decode_address("ait1qqq")


@pytest.mark.parametrize("bad", ["", "ait", "ait1", "noseparator", "ait1bio0" + "q" * 50])
def test_malformed_strings_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidAddress):
        decode_address(bad)
    assert not is_valid_address(bad)


def test_bech32_non_m_checksum_is_rejected() -> None:
    # the same data with the original bech32 constant (1) instead of bech32m's
    data = _convert_bits(bytes(32), 8, 5, pad=True)
    polymod = _polymod(_hrp_expand(HRP) + data + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    bech32 = HRP + "1" + "".join(_CHARSET[d] for d in data + checksum)
    with pytest.raises(InvalidAddress, match="checksum"):
        decode_address(bech32)


def test_non_zero_padding_bits_are_rejected() -> None:
    # 52 five-bit groups carry 260 bits: the last 4 must be zero
    data = _convert_bits(bytes(32), 8, 5, pad=True)
    data[-1] |= 1
    polymod = _polymod(_hrp_expand(HRP) + data + [0] * 6) ^ _BECH32M_CONST
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    address = HRP + "1" + "".join(_CHARSET[d] for d in data + checksum)
    with pytest.raises(InvalidAddress, match="padding"):
        decode_address(address)
