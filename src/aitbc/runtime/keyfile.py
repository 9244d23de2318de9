"""Plain key files: ``{"address": ..., "seed": hex}`` with 0600 permissions.

The encrypted keystore of the wallet issue replaces these for people's funds;
node and devnet keys stay plain files, like any server's host key.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import ConfigError
from aitbc.runtime.files import atomic_write


class KeyFile(msgspec.Struct, forbid_unknown_fields=True):
    address: str
    seed: str
    kind: str = "ed25519"


def write_keyfile(path: Path, key: KeyPair, *, overwrite: bool = False) -> None:
    if path.exists() and not overwrite:
        raise ConfigError(f"refusing to overwrite existing key file {path}")
    body = msgspec.json.format(msgspec.json.encode(KeyFile(address=key.address, seed=key.seed.hex())), indent=2)
    atomic_write(path, body + b"\n", mode=0o600)


def read_keyfile(path: Path) -> KeyPair:
    try:
        keyfile = msgspec.json.decode(path.read_bytes(), type=KeyFile)
        key = KeyPair.from_seed(bytes.fromhex(keyfile.seed))
    except FileNotFoundError:
        raise ConfigError(f"no key file at {path}") from None
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise ConfigError(f"{path} is not a valid key file: {exc}") from None
    if key.address != keyfile.address:
        raise ConfigError(f"{path}: the seed does not match the address it claims ({keyfile.address})")
    return key
