"""Addresses: bech32m (BIP-350 checksum) over a 32-byte payload, prefix ``ait``.

For a key account the payload is the Ed25519 public key itself, so a
signature can be checked from the sender address alone; derived accounts
(multisig, module accounts) use a domain-separated hash as payload.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from aitbc.protocol.errors import InvalidAddress

HRP: Final = "ait"
PAYLOAD_LEN: Final = 32
_CHARSET: Final = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHAR_INDEX: Final = {c: i for i, c in enumerate(_CHARSET)}
_BECH32M_CONST: Final = 0x2BC830A3
_GENERATOR: Final = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = ((chk & 0x1FFFFFF) << 5) ^ value
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _GENERATOR[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out: list[int] = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or ((acc << (to_bits - bits)) & maxv):
        raise InvalidAddress("address has non-zero padding bits")
    return out


@lru_cache(maxsize=1 << 16)
def encode_address(payload: bytes) -> str:
    """Encode a 32-byte payload as an ``ait1…`` address."""
    if len(payload) != PAYLOAD_LEN:
        raise InvalidAddress(f"address payload must be {PAYLOAD_LEN} bytes, got {len(payload)}")
    data = _convert_bits(payload, 8, 5, pad=True)
    polymod = _polymod(_hrp_expand(HRP) + data + [0] * 6) ^ _BECH32M_CONST
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return HRP + "1" + "".join(_CHARSET[d] for d in data + checksum)


@lru_cache(maxsize=1 << 16)
def decode_address(address: str) -> bytes:
    """Return the 32-byte payload of an address, checking prefix and checksum."""
    if not isinstance(address, str) or not address:
        raise InvalidAddress("address must be a non-empty string")
    if address.lower() != address:
        raise InvalidAddress("address must be lowercase")
    hrp, sep, rest = address.rpartition("1")
    if not sep or hrp != HRP:
        raise InvalidAddress(f"address must start with '{HRP}1'")
    if len(rest) < 6:
        raise InvalidAddress("address is too short")
    try:
        data = [_CHAR_INDEX[c] for c in rest]
    except KeyError as exc:
        raise InvalidAddress(f"address has a character outside the bech32 alphabet: {exc.args[0]!r}") from None
    if _polymod(_hrp_expand(hrp) + data) != _BECH32M_CONST:
        raise InvalidAddress("address checksum does not match (typo?)")
    payload = bytes(_convert_bits(data[:-6], 5, 8, pad=False))
    if len(payload) != PAYLOAD_LEN:
        raise InvalidAddress(f"address payload must be {PAYLOAD_LEN} bytes, got {len(payload)}")
    return payload


def is_valid_address(address: str) -> bool:
    try:
        decode_address(address)
    except InvalidAddress:
        return False
    return True
