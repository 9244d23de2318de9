"""Signed miner requests: no shared secrets, every call proves the miner's key.

The miner signs, under the ``miner-request`` domain, the canonical encoding of
``MinerRequest``: HTTP method, path, a millisecond timestamp, a random nonce
and the sha256 of the body. The coordinator refuses stale timestamps and
nonces it has seen, so a captured request cannot be replayed.
"""

from __future__ import annotations

import os
from typing import Annotated, Final

import msgspec

from aitbc.protocol import codec
from aitbc.protocol.crypto import KeyPair, SigningKind, sha256_hex
from aitbc.protocol.types import Address, Hash32, TimestampMs, Wire

HEADER_MINER: Final = "X-Aitbc-Miner"
HEADER_TIMESTAMP: Final = "X-Aitbc-Timestamp"
HEADER_NONCE: Final = "X-Aitbc-Nonce"
HEADER_SIGNATURE: Final = "X-Aitbc-Signature"
MAX_REQUEST_AGE_MS: Final = 30_000


class MinerRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    miner: Address
    method: Annotated[str, Wire.STR]
    path: Annotated[str, Wire.STR]
    timestamp_ms: TimestampMs
    nonce: Annotated[str, Wire.STR]
    body_sha256: Hash32


def miner_request_bytes(request: MinerRequest) -> bytes:
    return codec.encode(request)


def sign_miner_request(
    key: KeyPair, chain_id: str, method: str, path: str, body: bytes, timestamp_ms: int
) -> dict[str, str]:
    """The auth headers for one request."""
    nonce = os.urandom(16).hex()
    request = MinerRequest(
        miner=key.address,
        method=method.upper(),
        path=path,
        timestamp_ms=timestamp_ms,
        nonce=nonce,
        body_sha256=sha256_hex(body),
    )
    signature = key.sign(chain_id, SigningKind.MINER_REQUEST, miner_request_bytes(request))
    return {
        HEADER_MINER: key.address,
        HEADER_TIMESTAMP: str(timestamp_ms),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: signature.hex(),
    }
