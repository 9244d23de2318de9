"""Hashing, Ed25519 keys and domain-separated signatures.

Every signature signs ``signing_domain(chain_id, kind) || message`` where
``kind`` names the purpose ("tx", "block", "receipt", ...). A signature made
for one chain or one purpose therefore never verifies for another.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, Final

import nacl._sodium
import nacl.bindings
import nacl.exceptions

from aitbc.protocol.address import decode_address, encode_address
from aitbc.protocol.errors import InvalidSignature

SEED_LEN: Final = 32
SIGNATURE_LEN: Final = 64
_DOMAIN_MAGIC: Final = b"AITBC-SIG-v1\x00"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def blake2b256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SigningKind(StrEnum):
    """The purposes a key may sign for; each is its own signature domain."""

    TX = "tx"
    BLOCK = "block"
    VOTE = "vote"
    RECEIPT = "receipt"
    RECEIPT_COSIGN = "receipt-cosign"
    MINER_REQUEST = "miner-request"
    P2P_HANDSHAKE = "p2p-handshake"
    JOB_REQUEST = "job-request"


def _load_gil_holding_sodium() -> tuple[Any, Any] | None:
    """libsodium's detached sign and verify, called with the GIL held: (sign, verify), or None.

    PyNaCl (through cffi) releases the GIL for every call. A 20-60 µs signature then costs a wait to take the
    GIL back whenever another thread is running Python: up to the 5 ms switch interval, and the releases keep
    resetting the waiter's timer. Beside one busy Python thread a verify took 5.2 ms instead of 53 µs, and in
    the coordinator (results judged on a thread beside the event loop) 387 µs on average. ``ctypes.PyDLL``
    calls the same libsodium, the one PyNaCl ships and has initialised, without releasing the GIL (110 µs a
    verify beside the busy thread, which then gets its share). None where that library's symbols cannot be
    loaded: PyNaCl's calls are used instead."""
    try:
        lib = ctypes.PyDLL(nacl._sodium.__file__)
        sign, verify = lib.crypto_sign_detached, lib.crypto_sign_verify_detached
    except (OSError, AttributeError):
        return None
    sign.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p]
    sign.restype = ctypes.c_int
    verify.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p]
    verify.restype = ctypes.c_int
    return sign, verify


_SODIUM = _load_gil_holding_sodium()
_PUBLIC_KEY_LEN: Final = 32
_SECRET_KEY_LEN: Final = 64


def _sign_detached(message: bytes, secret: bytes) -> bytes:
    if _SODIUM is None or len(secret) != _SECRET_KEY_LEN:
        return nacl.bindings.crypto_sign(message, secret)[:SIGNATURE_LEN]
    out = ctypes.create_string_buffer(SIGNATURE_LEN)
    message = bytes(message)  # ctypes takes bytes, not a bytearray or a view
    if _SODIUM[0](out, None, message, len(message), bytes(secret)) != 0:
        raise RuntimeError("libsodium could not sign")
    return out.raw


def _verify_combined(signed: bytes, public_key: bytes) -> bool:
    """Whether ``signed`` (signature || message) verifies for ``public_key``."""
    if _SODIUM is None:
        try:
            nacl.bindings.crypto_sign_open(signed, public_key)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
            return False
        return True
    if len(public_key) != _PUBLIC_KEY_LEN or len(signed) < SIGNATURE_LEN:
        return False
    signed, public_key = bytes(signed), bytes(public_key)  # ctypes takes bytes, not a bytearray or a view
    message = signed[SIGNATURE_LEN:]
    return bool(_SODIUM[1](signed[:SIGNATURE_LEN], message, len(message), public_key) == 0)


@lru_cache(maxsize=256)
def signing_domain(chain_id: str, kind: SigningKind) -> bytes:
    """Prefix bytes binding a signature to one chain and one purpose."""
    chain = chain_id.encode("utf-8")
    purpose = kind.value.encode("ascii")
    return _DOMAIN_MAGIC + len(chain).to_bytes(1, "big") + chain + len(purpose).to_bytes(1, "big") + purpose


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An Ed25519 key pair; the seed is the secret, the address its public face."""

    seed: bytes
    public_key: bytes
    _secret: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        if len(seed) != SEED_LEN:
            raise ValueError(f"Ed25519 seed must be {SEED_LEN} bytes")
        public_key, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        return cls(seed=seed, public_key=public_key, _secret=secret)

    @classmethod
    def generate(cls) -> KeyPair:
        return cls.from_seed(os.urandom(SEED_LEN))

    @property
    def address(self) -> str:
        return encode_address(self.public_key)

    def sign(self, chain_id: str, kind: SigningKind, message: bytes) -> bytes:
        return _sign_detached(signing_domain(chain_id, kind) + message, self._secret)

    def __repr__(self) -> str:  # never print the seed
        return f"KeyPair(address={self.address!r})"


SignatureCheck = tuple[bytes, bytes]
"""One Ed25519 check as plain bytes: the signed message (signature | domain | message) and the public key."""


def signature_check(address: str, chain_id: str, kind: SigningKind, message: bytes, signature: bytes) -> SignatureCheck:
    """What ``verify_signature`` checks, as bytes that can be checked later, in bulk or in another process.

    Raises ``InvalidSignature`` for a signature of the wrong length (and ``InvalidAddress`` for a bad address)."""
    if len(signature) != SIGNATURE_LEN:
        raise InvalidSignature(f"signature must be {SIGNATURE_LEN} bytes, got {len(signature)}")
    return signature + signing_domain(chain_id, kind) + message, decode_address(address)


def is_valid_signature_check(check: SignatureCheck) -> bool:
    return _verify_combined(check[0], check[1])


def check_signatures(checks: Sequence[SignatureCheck]) -> list[bool]:
    """``is_valid_signature_check`` of each; a function of bytes only, so a worker process can run it."""
    return [is_valid_signature_check(check) for check in checks]


def signature_mismatch(address: str, chain_id: str, kind: SigningKind) -> InvalidSignature:
    """The error of a well-formed signature that does not verify."""
    return InvalidSignature(f"signature does not verify for {address} ({kind.value} on {chain_id})")


def verify_signature(address: str, chain_id: str, kind: SigningKind, message: bytes, signature: bytes) -> None:
    """Raise ``InvalidSignature`` unless ``signature`` is ``address``'s over the domain + message."""
    if not is_valid_signature_check(signature_check(address, chain_id, kind, message, signature)):
        raise signature_mismatch(address, chain_id, kind)


def is_valid_signature(address: str, chain_id: str, kind: SigningKind, message: bytes, signature: bytes) -> bool:
    try:
        verify_signature(address, chain_id, kind, message, signature)
    except InvalidSignature:
        return False
    return True


def address_of(public_key: bytes) -> str:
    return encode_address(public_key)
