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
