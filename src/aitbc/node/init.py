"""``aitbc node init``: a ready single-validator data directory."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from aitbc.chain.genesis import Genesis, GenesisBalance, genesis_to_json, validate_genesis
from aitbc.chain.params import get_preset
from aitbc.protocol.amounts import BASE_UNITS_PER_AITBC
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import ConfigError
from aitbc.runtime.files import atomic_write
from aitbc.runtime.keyfile import write_keyfile

DEFAULT_CHAIN_ID = "aitbc-devnet"
DEFAULT_FAUCET_AITBC = 1_000_000_000


def init_data_dir(
    data_dir: Path,
    *,
    chain_id: str = DEFAULT_CHAIN_ID,
    preset: str = "devnet",
    faucet_amount: int = DEFAULT_FAUCET_AITBC * BASE_UNITS_PER_AITBC,
    extra_balances: dict[str, int] | None = None,
    block_time_ms: int | None = None,
) -> Genesis:
    """Write genesis.json, validator.key (the authority) and faucet.key (funded) into ``data_dir``."""
    genesis_path = data_dir / "genesis.json"
    if genesis_path.exists():
        raise ConfigError(f"{data_dir} is already initialized (found genesis.json)")
    data_dir.mkdir(parents=True, exist_ok=True)
    validator = KeyPair.generate()
    faucet = KeyPair.generate()
    params = get_preset(preset)
    if block_time_ms is not None:
        params = msgspec.structs.replace(params, block_time_ms=block_time_ms)
    balances = {faucet.address: faucet_amount, **(extra_balances or {})}
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time_ms=int(time.time() * 1000),
        authorities=[validator.address],
        balances=[GenesisBalance(address=a, amount=v) for a, v in sorted(balances.items())],
        params=params,
    )
    validate_genesis(genesis)
    write_keyfile(data_dir / "validator.key", validator)
    write_keyfile(data_dir / "faucet.key", faucet)
    atomic_write(genesis_path, genesis_to_json(genesis))
    return genesis


def init_validator_network(
    base_dir: Path,
    validators: int,
    *,
    chain_id: str = DEFAULT_CHAIN_ID,
    preset: str = "devnet",
    faucet_amount: int = DEFAULT_FAUCET_AITBC * BASE_UNITS_PER_AITBC,
    extra_balances: dict[str, int] | None = None,
    block_time_ms: int | None = None,
    validator_balance: int = 1_000 * BASE_UNITS_PER_AITBC,
) -> tuple[Genesis, list[Path]]:
    """``base_dir/node{i}`` for ``validators`` authorities sharing one genesis (BFT when more than one).

    Each directory holds the common genesis.json and faucet.key and its own validator.key; the
    validators are funded so they can pay the fee of the evidence they report."""
    if validators < 1:
        raise ConfigError("a network needs at least one validator")
    dirs = [base_dir / f"node{i}" for i in range(validators)]
    for d in dirs:
        if (d / "genesis.json").exists():
            raise ConfigError(f"{d} is already initialized (found genesis.json)")
    keys = [KeyPair.generate() for _ in dirs]
    faucet = KeyPair.generate()
    params = get_preset(preset)
    if block_time_ms is not None:
        params = msgspec.structs.replace(params, block_time_ms=block_time_ms)
    balances = {faucet.address: faucet_amount, **{k.address: validator_balance for k in keys}, **(extra_balances or {})}
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time_ms=int(time.time() * 1000),
        authorities=[k.address for k in keys],
        balances=[GenesisBalance(address=a, amount=v) for a, v in sorted(balances.items())],
        params=params,
    )
    validate_genesis(genesis)
    for d, key in zip(dirs, keys, strict=True):
        d.mkdir(parents=True, exist_ok=True)
        write_keyfile(d / "validator.key", key)
        write_keyfile(d / "faucet.key", faucet)
        atomic_write(d / "genesis.json", genesis_to_json(genesis))
    return genesis, dirs


def init_network_dirs(
    base_dir: Path,
    validators: int,
    full_nodes: int,
    *,
    chain_id: str = DEFAULT_CHAIN_ID,
    preset: str = "devnet",
    block_time_ms: int | None = None,
) -> tuple[Genesis, list[Path], list[Path]]:
    """Validators in ``base_dir/node{i}`` (see ``init_validator_network``) plus full nodes in
    ``base_dir/full{j}``: the same genesis and a key of their own that is no authority, so they sync and
    follow (and vote only once staked into the active set). Used by deployments that give every node its own
    volume: the init step mounts them all under one directory."""
    full_dirs = [base_dir / f"full{j}" for j in range(full_nodes)]
    for d in full_dirs:
        if (d / "genesis.json").exists():
            raise ConfigError(f"{d} is already initialized (found genesis.json)")
    genesis, validator_dirs = init_validator_network(
        base_dir, validators, chain_id=chain_id, preset=preset, block_time_ms=block_time_ms
    )
    for d in full_dirs:
        d.mkdir(parents=True, exist_ok=True)
        write_keyfile(d / "validator.key", KeyPair.generate())
        atomic_write(d / "genesis.json", genesis_to_json(genesis))
    return genesis, validator_dirs, full_dirs


def is_network_initialized(base_dir: Path) -> bool:
    """Whether ``init_network_dirs`` already ran here (its first validator holds a genesis)."""
    return (base_dir / "node0" / "genesis.json").exists()
