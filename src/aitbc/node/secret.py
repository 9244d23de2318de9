"""Encrypted, authenticated p2p frames (in the manner of CometBFT's SecretConnection).

A connection opens with both sides sending a fresh ephemeral X25519 public key
(32 raw bytes). From the Diffie-Hellman secret and both ephemeral keys (in
sorted order) HKDF-SHA256 derives one ChaCha20-Poly1305 key per direction and a
32-byte session ``challenge``. The node-key handshake that follows
(``aitbc.node.p2p``) signs that challenge, so the authenticated identity is
bound to this very key exchange: a man in the middle holds two different
sessions and cannot forward a signature from one into the other.

Every frame after the key exchange is ``u32 length | ciphertext`` where the
ciphertext (plaintext + 16-byte tag) is sealed under the sender's key with the
frame counter as nonce and the length header as associated data. A frame that
was altered, dropped, reordered or replayed fails to open at the receiver (its
counter no longer matches), and the connection ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Final

import nacl.bindings
import nacl.exceptions

EPHEMERAL_KEY_LEN: Final = 32
TAG_LEN: Final = 16
_SALT: Final = b"aitbc-p2p-secret-v1"
_MAX_COUNTER: Final = 2**64 - 1


class ChannelBroken(Exception):
    """A frame did not open (altered, dropped, replayed) or the key exchange was unusable."""


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 extract-and-expand with HMAC-SHA256."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


@dataclass(frozen=True, slots=True)
class SessionKeys:
    send_key: bytes
    recv_key: bytes
    challenge: bytes
    """32 bytes both sides share and a third party cannot choose: what the node keys sign."""


def new_ephemeral() -> tuple[bytes, bytes]:
    """(secret, public) X25519 key pair, fresh per connection."""
    secret = os.urandom(32)
    return secret, nacl.bindings.crypto_scalarmult_base(secret)


def derive_session_keys(secret: bytes, own_public: bytes, peer_public: bytes) -> SessionKeys:
    """Both sides derive the same keys (the lower public key's sender key first) and challenge."""
    if len(peer_public) != EPHEMERAL_KEY_LEN or peer_public == own_public:
        raise ChannelBroken("unusable ephemeral key")
    try:
        shared = nacl.bindings.crypto_scalarmult(secret, peer_public)
    except nacl.exceptions.RuntimeError:
        raise ChannelBroken("ephemeral key of low order") from None
    if not any(shared):
        raise ChannelBroken("ephemeral key of low order")
    low, high = sorted((own_public, peer_public))
    material = hkdf_sha256(shared, _SALT, low + high, 96)
    low_key, high_key, challenge = material[:32], material[32:64], material[64:]
    if own_public == low:
        return SessionKeys(low_key, high_key, challenge)
    return SessionKeys(high_key, low_key, challenge)


def _nonce(counter: int) -> bytes:
    return b"\x00\x00\x00\x00" + counter.to_bytes(8, "little")


class FrameSealer:
    """Seals outgoing frames with a strictly increasing counter nonce."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._counter = 0

    def seal(self, plaintext: bytes) -> bytes:
        if self._counter >= _MAX_COUNTER:
            raise ChannelBroken("frame counter exhausted")
        header = (len(plaintext) + TAG_LEN).to_bytes(4, "big")
        sealed = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
            plaintext, header, _nonce(self._counter), self._key
        )
        self._counter += 1
        return header + sealed


class FrameOpener:
    """Reads and opens incoming frames in order; any failure is final for the connection."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._counter = 0

    async def read(self, reader: asyncio.StreamReader, max_plaintext: int) -> bytes:
        """The next frame's plaintext. ``FrameTooLarge`` before reading a body over ``max_plaintext``."""
        header = await reader.readexactly(4)
        size = int.from_bytes(header, "big")
        if size < TAG_LEN:
            raise ChannelBroken("frame shorter than its tag")
        if size - TAG_LEN > max_plaintext:
            raise FrameTooLarge(size - TAG_LEN, max_plaintext)
        body = await reader.readexactly(size)
        try:
            plaintext: bytes = nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(
                body, header, _nonce(self._counter), self._key
            )
        except nacl.exceptions.CryptoError:
            raise ChannelBroken("frame failed authentication (altered, dropped or replayed)") from None
        self._counter += 1
        return plaintext


class FrameTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds {limit}")
        self.size = size
        self.limit = limit
