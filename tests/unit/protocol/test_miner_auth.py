"""Signed miner requests (``aitbc.protocol.auth``): what the signature binds, and that it binds nothing else."""

from __future__ import annotations

import pytest

from aitbc.protocol.auth import (
    HEADER_MINER,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    MinerRequest,
    miner_request_bytes,
    sign_miner_request,
)
from aitbc.protocol.crypto import KeyPair, SigningKind, is_valid_signature, sha256_hex

CHAIN = "aitbc-unit"
KEY = KeyPair.from_seed(b"\x31" * 32)
OTHER = KeyPair.from_seed(b"\x32" * 32)
TS = 1_700_000_000_000
BODY = b'{"wait_seconds":20}'
PATH = "/api/v1/miners/claim"


def request_from(headers: dict[str, str], method: str = "POST", path: str = PATH, body: bytes = BODY) -> MinerRequest:
    return MinerRequest(
        miner=headers[HEADER_MINER],
        method=method,
        path=path,
        timestamp_ms=int(headers[HEADER_TIMESTAMP]),
        nonce=headers[HEADER_NONCE],
        body_sha256=sha256_hex(body),
    )


def verifies(headers: dict[str, str], chain: str = CHAIN, **changes: object) -> bool:
    request = request_from(headers, **changes)  # type: ignore[arg-type]
    return is_valid_signature(
        headers[HEADER_MINER],
        chain,
        SigningKind.MINER_REQUEST,
        miner_request_bytes(request),
        bytes.fromhex(headers[HEADER_SIGNATURE]),
    )


def test_headers_carry_miner_timestamp_nonce_signature() -> None:
    headers = sign_miner_request(KEY, CHAIN, "post", PATH, BODY, TS)
    assert set(headers) == {HEADER_MINER, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE}
    assert headers[HEADER_MINER] == KEY.address
    assert headers[HEADER_TIMESTAMP] == str(TS)
    assert len(headers[HEADER_NONCE]) == 32
    assert len(headers[HEADER_SIGNATURE]) == 128
    assert verifies(headers)


def test_every_request_gets_a_fresh_nonce() -> None:
    nonces = {sign_miner_request(KEY, CHAIN, "POST", PATH, BODY, TS)[HEADER_NONCE] for _ in range(50)}
    assert len(nonces) == 50


def test_the_method_is_normalised_to_upper_case() -> None:
    headers = sign_miner_request(KEY, CHAIN, "post", PATH, BODY, TS)
    assert verifies(headers, method="POST")
    assert not verifies(headers, method="post")


@pytest.mark.parametrize(
    "changes",
    [
        {"method": "PUT"},
        {"path": "/api/v1/miners/heartbeat"},
        {"path": PATH + "?x=1"},
        {"body": b'{"wait_seconds":21}'},
        {"body": b""},
    ],
)
def test_the_signature_binds_method_path_and_body(changes: dict[str, object]) -> None:
    headers = sign_miner_request(KEY, CHAIN, "POST", PATH, BODY, TS)
    assert not verifies(headers, **changes)


def test_the_signature_binds_timestamp_and_nonce() -> None:
    headers = sign_miner_request(KEY, CHAIN, "POST", PATH, BODY, TS)
    assert not verifies({**headers, HEADER_TIMESTAMP: str(TS + 1)})
    assert not verifies({**headers, HEADER_NONCE: "0" * 32})


def test_the_signature_binds_the_miner_and_the_chain() -> None:
    headers = sign_miner_request(KEY, CHAIN, "POST", PATH, BODY, TS)
    # Claiming to be another miner with this signature fails, and so does another chain.
    assert not verifies({**headers, HEADER_MINER: OTHER.address})
    assert not verifies(headers, chain="aitbc-other")


def test_a_request_signature_is_not_valid_for_another_purpose() -> None:
    headers = sign_miner_request(KEY, CHAIN, "POST", PATH, BODY, TS)
    message = miner_request_bytes(request_from(headers))
    signature = bytes.fromhex(headers[HEADER_SIGNATURE])
    for kind in (SigningKind.TX, SigningKind.RECEIPT, SigningKind.BLOCK):
        assert not is_valid_signature(KEY.address, CHAIN, kind, message, signature)
