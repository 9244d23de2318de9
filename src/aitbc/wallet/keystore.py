"""The keystore format: one JSON file per key, the Ed25519 seed sealed with a passphrase.

Pure: the salt and nonce are arguments (the shell, ``aitbc.wallet.store``, draws them),
and nothing here touches the disk.

    {"version":1,"address":"ait1…",
     "kdf":{"name":"argon2id","memlimit_kib":65536,"opslimit":3,"salt":"<16 bytes hex>"},
     "cipher":{"name":"xchacha20-poly1305","nonce":"<24 bytes hex>","ciphertext":"<48 bytes hex>"}}

The key is ``argon2id(passphrase, salt)``; the plaintext is the 32-byte seed; the
associated data binds the address and every KDF parameter, so a file whose address was
swapped (or whose header was edited) fails to open rather than opening to another key.
Why the whole header and not only the address: the AEAD tag then covers every byte that
changes what the file means; the JSON is written without whitespace and hex must be
lowercase, so no byte of a valid file can change without the file failing to open.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Final, Literal

import msgspec
import nacl.bindings
import nacl.exceptions
import nacl.pwhash.argon2id
from mnemonic import Mnemonic
from msgspec import Meta

from aitbc.protocol.address import is_valid_address
from aitbc.protocol.crypto import SEED_LEN, KeyPair
from aitbc.protocol.errors import AitbcError, Forbidden

KEYSTORE_VERSION: Final = 1
SALT_LEN: Final = nacl.pwhash.argon2id.SALTBYTES  # 16
NONCE_LEN: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
TAG_LEN: Final = 16

DEFAULT_MEMLIMIT_KIB: Final = 64 * 1024
"""64 MiB of Argon2id memory: the default, and the floor unless weak parameters are allowed (tests)."""
DEFAULT_OPSLIMIT: Final = 3
MAX_MEMLIMIT_KIB: Final = 4 * 1024 * 1024
"""4 GiB: a file asking for more is refused before any work (a hostile file must not exhaust memory)."""
MAX_OPSLIMIT: Final = 64
WEAK_MIN_MEMLIMIT_KIB: Final = nacl.pwhash.argon2id.MEMLIMIT_MIN // 1024  # libsodium's own minimum
WEAK_MIN_OPSLIMIT: Final = nacl.pwhash.argon2id.OPSLIMIT_MIN

_AAD_MAGIC: Final = b"AITBC-KEYSTORE-v1\x00"
_LowerHex = Annotated[str, Meta(pattern=r"^([0-9a-f]{2})+$")]


class KeystoreError(AitbcError):
    """A keystore file that is not one: corrupt, truncated, unknown version, bad parameters (HTTP 500: the
    daemon's own files are at fault, not the request)."""

    reason = "bad_keystore"
    http_status = 500
    rpc_code = -32603


class InvalidSecret(KeystoreError):
    """A passphrase or backup phrase the caller must fix (empty, not 24 BIP39 words): a bad request."""

    http_status = 400
    rpc_code = -32602


class WeakKdf(KeystoreError):
    reason = "weak_kdf"


class WrongPassphrase(Forbidden):
    reason = "wrong_passphrase"


class KdfParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Literal["argon2id"]
    memlimit_kib: Annotated[int, Meta(ge=1, le=MAX_MEMLIMIT_KIB)]
    opslimit: Annotated[int, Meta(ge=1, le=MAX_OPSLIMIT)]
    salt: _LowerHex


class CipherParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Literal["xchacha20-poly1305"]
    nonce: _LowerHex
    ciphertext: _LowerHex


class Keystore(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: int
    address: str
    kdf: KdfParams
    cipher: CipherParams


_decoder: Final = msgspec.json.Decoder(Keystore)
_encoder: Final = msgspec.json.Encoder()


def is_kdf_acceptable(memlimit_kib: int, opslimit: int, *, allow_weak: bool = False) -> bool:
    """The floor: the default cost, or libsodium's minimum when weak parameters are allowed (tests only)."""
    if allow_weak:
        return memlimit_kib >= WEAK_MIN_MEMLIMIT_KIB and opslimit >= WEAK_MIN_OPSLIMIT
    return memlimit_kib >= DEFAULT_MEMLIMIT_KIB and opslimit >= DEFAULT_OPSLIMIT


def _check_kdf(memlimit_kib: int, opslimit: int, allow_weak: bool, where: str) -> None:
    if memlimit_kib > MAX_MEMLIMIT_KIB or opslimit > MAX_OPSLIMIT:
        raise KeystoreError(f"{where}: KDF parameters above the maximum ({MAX_MEMLIMIT_KIB} KiB, t={MAX_OPSLIMIT})")
    if not is_kdf_acceptable(memlimit_kib, opslimit, allow_weak=allow_weak):
        raise WeakKdf(
            f"{where}: Argon2id parameters m={memlimit_kib} KiB, t={opslimit} are below the floor "
            f"(m={DEFAULT_MEMLIMIT_KIB} KiB, t={DEFAULT_OPSLIMIT})"
        )


def normalize_passphrase(passphrase: str) -> bytes:
    """NFC, so the same passphrase typed on two systems (composed or decomposed accents) opens the file."""
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def compute_key(passphrase: str, salt: bytes, memlimit_kib: int, opslimit: int) -> bytes:
    """The 32-byte sealing key: Argon2id over the passphrase (the expensive step, by design)."""
    return bytes(
        nacl.pwhash.argon2id.kdf(
            nacl.bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
            normalize_passphrase(passphrase),
            salt,
            opslimit=opslimit,
            memlimit=memlimit_kib * 1024,
        )
    )


def compute_associated_data(address: str, kdf: KdfParams) -> bytes:
    """What the AEAD tag binds besides the seed: version, address and KDF parameters."""
    parts = [
        _AAD_MAGIC,
        KEYSTORE_VERSION.to_bytes(1, "big"),
        address.encode("ascii"),
        b"\x00",
        kdf.memlimit_kib.to_bytes(8, "big"),
        kdf.opslimit.to_bytes(8, "big"),
        bytes.fromhex(kdf.salt),
    ]
    return b"".join(parts)


def seal_seed(
    seed: bytes,
    passphrase: str,
    *,
    salt: bytes,
    nonce: bytes,
    memlimit_kib: int = DEFAULT_MEMLIMIT_KIB,
    opslimit: int = DEFAULT_OPSLIMIT,
    allow_weak: bool = False,
) -> Keystore:
    """Encrypt ``seed`` under ``passphrase``; ``salt`` and ``nonce`` must be fresh random bytes."""
    if len(seed) != SEED_LEN:
        raise ValueError(f"seed must be {SEED_LEN} bytes")
    if len(salt) != SALT_LEN or len(nonce) != NONCE_LEN:
        raise ValueError(f"salt must be {SALT_LEN} bytes and nonce {NONCE_LEN} bytes")
    if not passphrase:
        raise InvalidSecret("the passphrase must not be empty", reason="empty_passphrase")
    _check_kdf(memlimit_kib, opslimit, allow_weak, "new keystore")
    address = KeyPair.from_seed(seed).address
    kdf = KdfParams(name="argon2id", memlimit_kib=memlimit_kib, opslimit=opslimit, salt=salt.hex())
    key = compute_key(passphrase, salt, memlimit_kib, opslimit)
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        seed, compute_associated_data(address, kdf), nonce, key
    )
    return Keystore(
        version=KEYSTORE_VERSION,
        address=address,
        kdf=kdf,
        cipher=CipherParams(name="xchacha20-poly1305", nonce=nonce.hex(), ciphertext=ciphertext.hex()),
    )


def open_keystore(keystore: Keystore, passphrase: str, *, allow_weak: bool = False, where: str = "keystore") -> KeyPair:
    """Decrypt the seed; ``WrongPassphrase`` if the tag fails, ``KeystoreError`` if the file is not sound."""
    kdf = keystore.kdf
    _check_kdf(kdf.memlimit_kib, kdf.opslimit, allow_weak, where)
    salt, nonce, ciphertext = (
        bytes.fromhex(kdf.salt),
        bytes.fromhex(keystore.cipher.nonce),
        bytes.fromhex(keystore.cipher.ciphertext),
    )
    if len(salt) != SALT_LEN or len(nonce) != NONCE_LEN or len(ciphertext) != SEED_LEN + TAG_LEN:
        raise KeystoreError(f"{where}: salt, nonce or ciphertext has the wrong length")
    key = compute_key(passphrase, salt, kdf.memlimit_kib, kdf.opslimit)
    try:
        seed = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, compute_associated_data(keystore.address, kdf), nonce, key
        )
    except nacl.exceptions.CryptoError:
        raise WrongPassphrase(f"cannot open {where}: wrong passphrase (or the file was altered)") from None
    pair = KeyPair.from_seed(bytes(seed))
    if pair.address != keystore.address:  # pragma: no cover - the address is authenticated data
        raise KeystoreError(f"{where}: the sealed key does not match the address {keystore.address}")
    return pair


def encode_keystore(keystore: Keystore) -> bytes:
    """Compact JSON (no whitespace): every byte of the file is significant."""
    return _encoder.encode(keystore)


def decode_keystore(raw: bytes, *, where: str = "keystore") -> Keystore:
    """Parse strictly; any deviation is a ``KeystoreError`` that names ``where`` (the file)."""
    try:
        keystore = _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise KeystoreError(f"{where} is not a valid keystore: {exc}") from None
    if keystore.version != KEYSTORE_VERSION:
        raise KeystoreError(f"{where}: unsupported keystore version {keystore.version}")
    if not is_valid_address(keystore.address) or keystore.address != keystore.address.lower():
        raise KeystoreError(f"{where}: {keystore.address!r} is not a valid address")
    if encode_keystore(keystore) != raw:
        raise KeystoreError(f"{where} is not in canonical form (edited by hand?)")
    return keystore


def change_passphrase(
    keystore: Keystore,
    old: str,
    new: str,
    *,
    salt: bytes,
    nonce: bytes,
    memlimit_kib: int = DEFAULT_MEMLIMIT_KIB,
    opslimit: int = DEFAULT_OPSLIMIT,
    allow_weak: bool = False,
    where: str = "keystore",
) -> Keystore:
    """The same key sealed under ``new`` with a fresh salt and nonce."""
    key = open_keystore(keystore, old, allow_weak=allow_weak, where=where)
    return seal_seed(
        key.seed, new, salt=salt, nonce=nonce, memlimit_kib=memlimit_kib, opslimit=opslimit, allow_weak=allow_weak
    )


_MNEMONIC: Final = Mnemonic("english")


def seed_to_mnemonic(seed: bytes) -> str:
    """The 24 BIP39 words whose entropy is exactly the Ed25519 seed (a backup you can write down)."""
    if len(seed) != SEED_LEN:
        raise ValueError(f"seed must be {SEED_LEN} bytes")
    return str(_MNEMONIC.to_mnemonic(seed))


def mnemonic_to_seed(words: str) -> bytes:
    """The seed back from its 24 words; ``KeystoreError`` for an unknown word or a bad checksum."""
    normalized = " ".join(unicodedata.normalize("NFKD", words).lower().split())
    if len(normalized.split()) != 24:
        raise InvalidSecret("a wallet backup is 24 BIP39 words", reason="bad_mnemonic")
    if not _MNEMONIC.check(normalized):
        raise KeystoreError("not a valid BIP39 mnemonic (unknown word or bad checksum)", reason="bad_mnemonic")
    return bytes(_MNEMONIC.to_entropy(normalized))
