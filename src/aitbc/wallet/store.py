"""A directory of keystore files (``NAME.json``, mode 0600): the shell around ``aitbc.wallet.keystore``.

Here live the randomness (salt, nonce, new seeds) and the disk. Every write goes through
``atomic_write`` (new file, fsync, rename, fsync the directory), so a crash at any moment
leaves the old keystore or the new one, never a half-written file; a keystore is never
rewritten in place.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import ConfigError, Conflict, NotFound
from aitbc.runtime.files import atomic_write
from aitbc.wallet.keystore import (
    DEFAULT_MEMLIMIT_KIB,
    DEFAULT_OPSLIMIT,
    NONCE_LEN,
    SALT_LEN,
    Keystore,
    KeystoreError,
    change_passphrase,
    decode_keystore,
    encode_keystore,
    open_keystore,
    seal_seed,
)

WALLET_DIR_ENV: Final = "AITBC_WALLET_DIR"
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def default_wallet_dir() -> Path:
    env = os.environ.get(WALLET_DIR_ENV)
    return Path(env) if env else Path.home() / ".aitbc" / "wallets"


def check_wallet_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ConfigError(f"invalid wallet name {name!r}: 1-64 letters, digits, '-' or '_'", reason="invalid_name")
    return name


@dataclass(frozen=True, slots=True)
class KdfCost:
    """Argon2id cost of new keystores; anything below the default needs ``allow_weak`` (tests, benches)."""

    memlimit_kib: int = DEFAULT_MEMLIMIT_KIB
    opslimit: int = DEFAULT_OPSLIMIT
    allow_weak: bool = False


@dataclass(frozen=True, slots=True)
class WalletInfo:
    name: str
    address: str
    path: Path


class WalletStore:
    def __init__(self, directory: Path, cost: KdfCost | None = None) -> None:
        self.directory = directory
        self.cost = cost or KdfCost()

    def path(self, name: str) -> Path:
        return self.directory / f"{check_wallet_name(name)}.json"

    def _ensure_dir(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _write(self, path: Path, keystore: Keystore) -> None:
        self._ensure_dir()
        atomic_write(path, encode_keystore(keystore), mode=0o600)

    def read(self, name: str) -> Keystore:
        path = self.path(name)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no wallet named {name!r} in {self.directory}") from None
        return decode_keystore(raw, where=str(path))

    def list_wallets(self) -> list[WalletInfo | KeystoreError]:
        """Every ``*.json`` keystore (sorted by name); a file that does not parse is listed as its error."""
        if not self.directory.is_dir():
            return []
        out: list[WalletInfo | KeystoreError] = []
        for path in sorted(self.directory.glob("*.json")):
            if not _NAME_RE.match(path.stem):
                continue
            try:
                out.append(WalletInfo(path.stem, decode_keystore(path.read_bytes(), where=str(path)).address, path))
            except KeystoreError as exc:
                out.append(exc)
        return out

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def create(self, name: str, passphrase: str, seed: bytes | None = None) -> WalletInfo:
        """Seal a new key (random, or ``seed`` when importing) under ``passphrase``; never overwrites."""
        path = self.path(name)
        if path.exists():
            raise Conflict(f"a wallet named {name!r} already exists ({path})", reason="wallet_exists")
        keystore = seal_seed(
            seed if seed is not None else os.urandom(32),
            passphrase,
            salt=os.urandom(SALT_LEN),
            nonce=os.urandom(NONCE_LEN),
            memlimit_kib=self.cost.memlimit_kib,
            opslimit=self.cost.opslimit,
            allow_weak=self.cost.allow_weak,
        )
        self._write(path, keystore)
        return WalletInfo(name, keystore.address, path)

    def unlock(self, name: str, passphrase: str) -> KeyPair:
        return open_keystore(self.read(name), passphrase, allow_weak=self.cost.allow_weak, where=str(self.path(name)))

    def change_passphrase(self, name: str, old: str, new: str) -> None:
        """Re-encrypt under ``new`` (fresh salt and nonce), replacing the file atomically."""
        path = self.path(name)
        keystore = change_passphrase(
            self.read(name),
            old,
            new,
            salt=os.urandom(SALT_LEN),
            nonce=os.urandom(NONCE_LEN),
            memlimit_kib=self.cost.memlimit_kib,
            opslimit=self.cost.opslimit,
            allow_weak=self.cost.allow_weak,
            where=str(path),
        )
        self._write(path, keystore)
