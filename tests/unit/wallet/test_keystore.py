"""The keystore format: round trip, wrong passphrase, tamper evidence of every byte, the KDF floor, BIP39."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import ConfigError, Conflict, NotFound
from aitbc.wallet.keystore import (
    DEFAULT_MEMLIMIT_KIB,
    DEFAULT_OPSLIMIT,
    KeystoreError,
    WeakKdf,
    WrongPassphrase,
    change_passphrase,
    decode_keystore,
    encode_keystore,
    is_kdf_acceptable,
    mnemonic_to_seed,
    open_keystore,
    seal_seed,
    seed_to_mnemonic,
)
from aitbc.wallet.store import KdfCost, WalletStore

WEAK = {"memlimit_kib": 8, "opslimit": 1, "allow_weak": True}
SEED = bytes(range(32))
SALT = b"s" * 16
NONCE = b"n" * 24


def _sealed(passphrase: str = "correct horse") -> bytes:
    return encode_keystore(seal_seed(SEED, passphrase, salt=SALT, nonce=NONCE, **WEAK))  # type: ignore[arg-type]


def test_round_trip() -> None:
    raw = _sealed()
    keystore = decode_keystore(raw)
    key = open_keystore(keystore, "correct horse", allow_weak=True)
    assert key.seed == SEED
    assert keystore.address == KeyPair.from_seed(SEED).address
    assert SEED.hex() not in raw.decode()


def test_wrong_passphrase_is_a_clear_error() -> None:
    keystore = decode_keystore(_sealed())
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        open_keystore(keystore, "Correct horse", allow_weak=True, where="/x/alice.json")


def test_unicode_passphrase_normalized() -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    keystore = decode_keystore(_sealed(composed))
    assert open_keystore(keystore, decomposed, allow_weak=True).seed == SEED


@pytest.mark.parametrize("mask", [0x01, 0x02, 0x20, 0x80, 0xFF])
def test_every_flipped_byte_fails_to_open(mask: int) -> None:
    raw = _sealed()
    for i in range(len(raw)):
        tampered = bytearray(raw)
        tampered[i] ^= mask
        with pytest.raises((KeystoreError, WrongPassphrase)):
            open_keystore(decode_keystore(bytes(tampered), where="f.json"), "correct horse", allow_weak=True)


def test_truncated_file_names_the_file() -> None:
    raw = _sealed()
    for cut in (0, 1, len(raw) // 2, len(raw) - 1):
        with pytest.raises(KeystoreError, match=r"alice\.json"):
            decode_keystore(raw[:cut], where="/w/alice.json")


def test_swapped_address_fails() -> None:
    """A file whose address was replaced by another valid address (another wallet's) does not open."""
    keystore = decode_keystore(_sealed())
    other = KeyPair.from_seed(b"\x07" * 32).address
    swapped = msgspec.structs.replace(keystore, address=other)
    with pytest.raises(WrongPassphrase):
        open_keystore(decode_keystore(encode_keystore(swapped)), "correct horse", allow_weak=True)


def test_kdf_floor() -> None:
    assert is_kdf_acceptable(DEFAULT_MEMLIMIT_KIB, DEFAULT_OPSLIMIT)
    assert not is_kdf_acceptable(DEFAULT_MEMLIMIT_KIB - 1, DEFAULT_OPSLIMIT)
    assert not is_kdf_acceptable(DEFAULT_MEMLIMIT_KIB, DEFAULT_OPSLIMIT - 1)
    with pytest.raises(WeakKdf):
        seal_seed(SEED, "pw", salt=SALT, nonce=NONCE, memlimit_kib=8, opslimit=1)
    # A weak file (written for a test) is refused when opened without the explicit allowance.
    with pytest.raises(WeakKdf, match="below the floor"):
        open_keystore(decode_keystore(_sealed()), "correct horse", where="weak.json")


def test_hostile_kdf_parameters_refused_before_work() -> None:
    keystore = decode_keystore(_sealed())
    huge = msgspec.structs.replace(keystore, kdf=msgspec.structs.replace(keystore.kdf, memlimit_kib=1 << 40))
    with pytest.raises(KeystoreError):
        decode_keystore(encode_keystore(huge))


def test_default_cost_round_trip() -> None:
    keystore = seal_seed(SEED, "pw", salt=SALT, nonce=NONCE)
    assert keystore.kdf.memlimit_kib == 64 * 1024 and keystore.kdf.opslimit == 3
    assert open_keystore(keystore, "pw").seed == SEED


def test_change_passphrase_pure() -> None:
    keystore = decode_keystore(_sealed("old"))
    new = change_passphrase(keystore, "old", "new", salt=b"t" * 16, nonce=b"m" * 24, **WEAK)  # type: ignore[arg-type]
    assert new.kdf.salt != keystore.kdf.salt
    assert open_keystore(new, "new", allow_weak=True).seed == SEED
    with pytest.raises(WrongPassphrase):
        open_keystore(new, "old", allow_weak=True)


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_mnemonic_round_trip(seed: bytes) -> None:
    words = seed_to_mnemonic(seed)
    assert len(words.split()) == 24
    assert mnemonic_to_seed("  " + words.upper().replace(" ", "   ") + "\n") == seed


def test_bad_mnemonic() -> None:
    words = seed_to_mnemonic(SEED).split()
    words[0], words[1] = words[1], words[0]
    with pytest.raises(KeystoreError, match="checksum"):
        mnemonic_to_seed(" ".join(words))
    with pytest.raises(KeystoreError, match="24"):
        mnemonic_to_seed("abandon " * 12)


# -- the directory store (shell) ---------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> WalletStore:
    return WalletStore(tmp_path / "wallets", KdfCost(memlimit_kib=8, opslimit=1, allow_weak=True))


def test_store_create_unlock_list(store: WalletStore) -> None:
    info = store.create("alice", "pw")
    assert (info.path.stat().st_mode & 0o777) == 0o600
    assert store.unlock("alice", "pw").address == info.address
    listed = store.list_wallets()
    assert [(w.name, w.address) for w in listed if not isinstance(w, Exception)] == [("alice", info.address)]
    with pytest.raises(Conflict, match="already exists"):
        store.create("alice", "pw")
    with pytest.raises(NotFound):
        store.unlock("bob", "pw")
    with pytest.raises(ConfigError, match="invalid wallet name"):
        store.create("../evil", "pw")


def test_store_import_seed(store: WalletStore) -> None:
    info = store.create("imported", "pw", seed=SEED)
    assert info.address == KeyPair.from_seed(SEED).address


def test_interrupted_write_leaves_old_file(store: WalletStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between writing the new file and renaming it over the old one leaves the old one intact."""
    store.create("alice", "old")
    before = store.path("alice").read_bytes()

    def crash(self: Path, target: object) -> Path:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(Path, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.change_passphrase("alice", "old", "new")
    monkeypatch.undo()
    assert store.path("alice").read_bytes() == before
    assert store.unlock("alice", "old").address
    assert [p.name for p in store.directory.iterdir()] == ["alice.json"]  # no temp file left behind


def test_leftover_temp_file_is_ignored(store: WalletStore) -> None:
    """A temp file a killed process left behind (its rename never happened) is not a wallet."""
    info = store.create("alice", "pw")
    (store.directory / f".alice.json.tmp-{os.getpid() + 1}").write_bytes(b"{half")
    assert [w.name for w in store.list_wallets() if not isinstance(w, Exception)] == ["alice"]
    assert store.unlock("alice", "pw").address == info.address


def test_change_passphrase_store(store: WalletStore) -> None:
    store.create("alice", "old")
    store.change_passphrase("alice", "old", "new")
    assert store.unlock("alice", "new")
    with pytest.raises(WrongPassphrase):
        store.unlock("alice", "old")
    with pytest.raises(WrongPassphrase):
        store.change_passphrase("alice", "old", "x")


def test_corrupt_file_in_listing_names_the_file(store: WalletStore) -> None:
    store.create("alice", "pw")
    (store.directory / "broken.json").write_bytes(b'{"version":1')
    errors = [w for w in store.list_wallets() if isinstance(w, Exception)]
    assert len(errors) == 1 and "broken.json" in errors[0].message
    with pytest.raises(KeystoreError, match=r"broken\.json"):
        store.unlock("broken", "pw")
