"""Private job inputs, outputs and training datasets: libsodium sealed boxes (X25519 + XSalsa20-Poly1305).

The client seals the job input (or a training job's dataset) to the chosen miner; the miner seals the
output to a one-off X25519 key of the client's (``reply_to``). The coordinator only ever holds ciphertext.

Why no key exchange through the coordinator: an AITBC address IS the miner's Ed25519 public key,
so the client derives the miner's X25519 key from the address itself (the birational map
libsodium provides), and a coordinator cannot substitute a key of its own. The miner derives
the matching X25519 secret from its seed.
"""

from __future__ import annotations

from typing import Final

import msgspec
import nacl.bindings
import nacl.exceptions
import nacl.public

from aitbc.protocol.address import decode_address
from aitbc.protocol.crypto import KeyPair, sha256
from aitbc.protocol.errors import AitbcError
from aitbc.protocol.job import JobInput, JobOutput, compute_input_hash, compute_output_hash

MAX_SEALED_BYTES: Final = 1 << 20
MAX_SEALED_DATASET_BYTES: Final = 1 << 31
"""A sealed dataset is bounded by the coordinator's ``blob_max_bytes`` first; this is the miner's own cap."""


class SealedBoxError(AitbcError):
    """Ciphertext that does not open with this key (wrong recipient, or tampered)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="sealed_box")


def compute_x25519_public_of_address(address: str) -> bytes:
    """The X25519 public key a miner's address (its Ed25519 public key) corresponds to."""
    return bytes(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(decode_address(address)))


def compute_x25519_secret(key: KeyPair) -> bytes:
    _, secret = nacl.bindings.crypto_sign_seed_keypair(key.seed)
    return bytes(nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(secret))


def seal(recipient_x25519: bytes, plaintext: bytes) -> bytes:
    return bytes(nacl.public.SealedBox(nacl.public.PublicKey(recipient_x25519)).encrypt(plaintext))


def open_sealed(secret_x25519: bytes, ciphertext: bytes, max_bytes: int = MAX_SEALED_BYTES) -> bytes:
    if len(ciphertext) > max_bytes:
        raise SealedBoxError("sealed payload is too large")
    try:
        return bytes(nacl.public.SealedBox(nacl.public.PrivateKey(secret_x25519)).decrypt(ciphertext))
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise SealedBoxError(
            "the sealed payload does not open with this key (not the recipient, or tampered)"
        ) from None


def seal_job_input(job: JobInput, miner_address: str) -> tuple[str, str]:
    """(ciphertext hex, input hash of the plaintext): what a client sends instead of the input."""
    sealed = seal(compute_x25519_public_of_address(miner_address), msgspec.json.encode(job))
    return sealed.hex(), compute_input_hash(job)


def open_job_input(key: KeyPair, ciphertext_hex: str, input_hash: str) -> JobInput:
    """The miner's side: decrypt, decode, and check the plaintext is the input the job names."""
    try:
        raw = open_sealed(compute_x25519_secret(key), bytes.fromhex(ciphertext_hex))
        job = msgspec.json.decode(raw, type=JobInput)
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SealedBoxError(f"sealed input is not a job input: {exc}") from None
    if compute_input_hash(job) != input_hash:
        raise SealedBoxError("the sealed input is not the input the job's input_hash names")
    return job


def seal_dataset(data: bytes, miner_address: str) -> bytes:
    """A training dataset sealed to the miner that is to train on it (the blob a client uploads)."""
    return seal(compute_x25519_public_of_address(miner_address), data)


def open_dataset(key: KeyPair, ciphertext: bytes, dataset_hash: str) -> bytes:
    """The miner's side: decrypt a sealed dataset and check it is the one the spec's ``dataset_hash`` names."""
    data = open_sealed(compute_x25519_secret(key), ciphertext, MAX_SEALED_DATASET_BYTES)
    if sha256(data).hex() != dataset_hash:
        raise SealedBoxError("the sealed dataset is not the dataset the spec's dataset_hash names")
    return data


def seal_job_output(output: JobOutput, reply_to_hex: str) -> str:
    return seal(bytes.fromhex(reply_to_hex), msgspec.json.encode(output)).hex()


def open_job_output(reply_secret: bytes, ciphertext_hex: str, output_hash: str) -> JobOutput:
    """The client's side: decrypt the result and check it is the output the receipt commits to."""
    try:
        output = msgspec.json.decode(open_sealed(reply_secret, bytes.fromhex(ciphertext_hex)), type=JobOutput)
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SealedBoxError(f"sealed output is not a job output: {exc}") from None
    if compute_output_hash(output) != output_hash:
        raise SealedBoxError("the decrypted output is not the one the receipt's output_hash commits to")
    return output


def new_reply_key() -> tuple[bytes, str]:
    """(secret, public hex): a one-off X25519 key a client receives one job's result under."""
    secret = nacl.public.PrivateKey.generate()
    return bytes(secret), bytes(secret.public_key).hex()
