"""Ed25519 keys and domain-separated signatures."""

from __future__ import annotations

import hashlib
import itertools

import nacl.bindings
import nacl.exceptions
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.protocol import crypto
from aitbc.protocol.crypto import (
    KeyPair,
    SigningKind,
    blake2b256,
    is_valid_signature,
    sha256,
    sha256_hex,
    signing_domain,
    verify_signature,
)
from aitbc.protocol.errors import InvalidSignature

ALICE = KeyPair.from_seed(bytes([1]) * 32)
BOB = KeyPair.from_seed(bytes([2]) * 32)
CHAIN = "aitbc-unit"


def test_from_seed_is_deterministic() -> None:
    assert KeyPair.from_seed(bytes(32)) == KeyPair.from_seed(bytes(32))
    assert KeyPair.from_seed(bytes(32)).public_key != ALICE.public_key
    assert len(ALICE.public_key) == 32


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_from_seed_rejects_wrong_length(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        KeyPair.from_seed(bytes(length))


def test_generate_gives_distinct_keys() -> None:
    assert KeyPair.generate().public_key != KeyPair.generate().public_key


def test_repr_never_shows_the_seed() -> None:
    seed = bytes(range(32))
    key = KeyPair.from_seed(seed)
    text = repr(key)
    assert key.address in text
    assert seed.hex() not in text
    assert repr(seed) not in text


@settings(max_examples=50, deadline=None)
@given(message=st.binary(max_size=256), kind=st.sampled_from(list(SigningKind)))
def test_sign_then_verify(message: bytes, kind: SigningKind) -> None:
    signature = ALICE.sign(CHAIN, kind, message)
    assert len(signature) == 64
    verify_signature(ALICE.address, CHAIN, kind, message, signature)
    assert is_valid_signature(ALICE.address, CHAIN, kind, message, signature)


def test_signatures_are_deterministic() -> None:
    assert ALICE.sign(CHAIN, SigningKind.TX, b"m") == ALICE.sign(CHAIN, SigningKind.TX, b"m")


@pytest.mark.parametrize(("signed_as", "checked_as"), list(itertools.permutations(list(SigningKind), 2)))
def test_a_signature_for_one_purpose_never_verifies_for_another(
    signed_as: SigningKind, checked_as: SigningKind
) -> None:
    message = b"same bytes"
    signature = ALICE.sign(CHAIN, signed_as, message)
    assert is_valid_signature(ALICE.address, CHAIN, signed_as, message, signature)
    assert not is_valid_signature(ALICE.address, CHAIN, checked_as, message, signature)


@pytest.mark.parametrize("other_chain", ["aitbc-unit2", "aitbc-uni", "mainnet", "aitbc-unit\x00"])
def test_a_signature_for_one_chain_never_verifies_for_another(other_chain: str) -> None:
    message = b"same bytes"
    signature = ALICE.sign(CHAIN, SigningKind.TX, message)
    with pytest.raises(InvalidSignature):
        verify_signature(ALICE.address, other_chain, SigningKind.TX, message, signature)


def test_wrong_key_tampered_message_and_tampered_signature_fail() -> None:
    message = b"pay bob 5"
    signature = ALICE.sign(CHAIN, SigningKind.TX, message)
    assert not is_valid_signature(BOB.address, CHAIN, SigningKind.TX, message, signature)
    assert not is_valid_signature(ALICE.address, CHAIN, SigningKind.TX, b"pay bob 6", signature)
    for i in (0, 31, 32, 63):
        tampered = bytearray(signature)
        tampered[i] ^= 0x01
        assert not is_valid_signature(ALICE.address, CHAIN, SigningKind.TX, message, bytes(tampered))


@pytest.mark.parametrize("length", [0, 63, 65, 128])
def test_wrong_signature_length_is_invalid(length: int) -> None:
    with pytest.raises(InvalidSignature, match="64 bytes"):
        verify_signature(ALICE.address, CHAIN, SigningKind.TX, b"m", bytes(length))


def test_signature_is_over_domain_and_message() -> None:
    # moving bytes between the chain id and the message must not give the same signed bytes
    a = signing_domain("ab", SigningKind.TX) + b"c"
    b = signing_domain("a", SigningKind.TX) + b"bc"
    assert a != b
    assert signing_domain(CHAIN, SigningKind.TX).startswith(b"AITBC-SIG-v1\x00")


def test_signing_domains_are_distinct() -> None:
    domains = {signing_domain(c, k) for c in ("a", "b", "aitbc-devnet") for k in SigningKind}
    assert len(domains) == 3 * len(SigningKind)


def test_hash_helpers() -> None:
    assert sha256(b"abc") == hashlib.sha256(b"abc").digest()
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert blake2b256(b"abc") == hashlib.blake2b(b"abc", digest_size=32).digest()
    assert len(blake2b256(b"")) == 32


# -- the GIL-holding libsodium calls agree with PyNaCl's ----------------------------------------------------------


def test_signatures_are_made_and_checked_without_releasing_the_gil_here() -> None:
    assert crypto._SODIUM is not None  # PyNaCl's libsodium loaded through ctypes.PyDLL


@settings(max_examples=200, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=600), flip=st.integers(0, 700))
def test_gil_holding_sign_and_verify_agree_with_pynacl(seed: bytes, message: bytes, flip: int) -> None:
    public_key, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
    signature = crypto._sign_detached(message, secret)
    assert signature == nacl.bindings.crypto_sign(message, secret)[: crypto.SIGNATURE_LEN]
    signed = bytearray(signature + message)
    assert crypto._verify_combined(bytes(signed), public_key)
    signed[flip % len(signed)] ^= 0x01
    try:
        nacl.bindings.crypto_sign_open(bytes(signed), public_key)
        pynacl_ok = True
    except nacl.exceptions.BadSignatureError:
        pynacl_ok = False
    assert crypto._verify_combined(bytes(signed), public_key) is pynacl_ok is False


def test_malformed_checks_are_refused_not_read_past() -> None:
    public_key, secret = nacl.bindings.crypto_sign_seed_keypair(bytes(32))
    signed = crypto._sign_detached(b"m", secret) + b"m"
    assert not crypto._verify_combined(signed, public_key[:31])  # a short key
    assert not crypto._verify_combined(signed, public_key + b"\x00")  # a long key
    assert not crypto._verify_combined(signed[:63], public_key)  # shorter than a signature
    assert not crypto._verify_combined(b"", public_key)


def test_checks_of_a_bytearray_or_a_view_work_like_bytes() -> None:
    public_key, secret = nacl.bindings.crypto_sign_seed_keypair(bytes(32))
    signed = crypto._sign_detached(bytearray(b"m"), secret) + b"m"
    assert crypto._verify_combined(bytearray(signed), public_key)
    assert crypto._verify_combined(memoryview(signed), memoryview(public_key))  # type: ignore[arg-type]
