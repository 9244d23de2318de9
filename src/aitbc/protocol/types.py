"""Field types shared by every wire struct.

Each type is a plain JSON-friendly Python value (int, hex string, bech32m
string) annotated with a validation constraint for msgspec and a ``Wire``
marker that tells the canonical codec how to lay it out in bytes.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Final

from msgspec import Meta

MAX_U64: Final = 2**63 - 1
"""Largest integer a field may hold (msgspec validates up to int64; encoded as 8 bytes)."""


class Wire(Enum):
    """How the canonical codec encodes a field (see ``aitbc.protocol.codec``)."""

    U64 = "u64"  # 8 bytes big-endian
    BOOL = "bool"  # 1 byte, 0 or 1
    STR = "str"  # u32 length + UTF-8
    HEX = "hex"  # u32 length + raw bytes of a hex string
    HASH32 = "hash32"  # 32 raw bytes of a 64-char hex string
    ADDRESS = "address"  # 32 raw bytes of a bech32m ``ait1…`` address


U64 = Annotated[int, Meta(ge=0, le=MAX_U64), Wire.U64]
"""An unsigned 64-bit integer: nonces, heights, fees, times in ms."""

Amount = Annotated[int, Meta(ge=0, le=MAX_U64), Wire.U64]
"""Token amount in base units (1 AITBC = 10**6 base units)."""

Height = Annotated[int, Meta(ge=0, le=MAX_U64), Wire.U64]

MAX_TIME_MS: Final = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the latest time any field may hold. Far below ``MAX_U64``, so a successor
(a block one millisecond later) always fits the codec too."""

TimestampMs = Annotated[int, Meta(ge=0, le=MAX_TIME_MS), Wire.U64]
"""Milliseconds since the Unix epoch, at most ``MAX_TIME_MS``."""

ChainId = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$"), Wire.STR]

Hash32 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$"), Wire.HASH32]
"""A 32-byte digest as lowercase hex."""

SignatureHex = Annotated[str, Meta(pattern=r"^([0-9a-f]{128})?$"), Wire.HEX]
"""A 64-byte Ed25519 signature as lowercase hex; empty while unsigned."""

HexBytes = Annotated[str, Meta(pattern=r"^([0-9a-f]{2})*$", max_length=1 << 20), Wire.HEX]

Address = Annotated[str, Meta(min_length=10, max_length=90, pattern=r"^ait1[02-9ac-hj-np-z]+$"), Wire.ADDRESS]
"""A bech32m address with human-readable part ``ait``; its payload is 32 bytes."""

Memo = Annotated[str, Meta(max_length=256), Wire.STR]
