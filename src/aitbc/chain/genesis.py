"""Genesis: the chain's identity, its Proof-of-Authority validators and initial balances."""

from __future__ import annotations

from pathlib import Path

import msgspec

from aitbc.chain.entries import Account
from aitbc.chain.params import ChainParams
from aitbc.chain.state import ChainState
from aitbc.protocol import codec
from aitbc.protocol.address import is_valid_address
from aitbc.protocol.block import Block, BlockHeader, compute_tx_root
from aitbc.protocol.crypto import sha256
from aitbc.protocol.errors import ConfigError
from aitbc.protocol.types import Address, Amount, ChainId, TimestampMs


class GenesisBalance(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    address: Address
    amount: Amount


class Genesis(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    chain_id: ChainId
    genesis_time_ms: TimestampMs
    authorities: list[Address]
    balances: list[GenesisBalance]
    params: ChainParams = msgspec.field(default_factory=ChainParams)


def validate_genesis(genesis: Genesis) -> None:
    if not genesis.authorities:
        raise ConfigError("genesis needs at least one authority")
    if len(set(genesis.authorities)) != len(genesis.authorities):
        raise ConfigError("genesis authorities must be distinct")
    # The JSON schema checks the alphabet only; a typo must fail here, not later as a crash.
    for address in [*genesis.authorities, *(b.address for b in genesis.balances)]:
        if not is_valid_address(address):
            raise ConfigError(f"genesis lists an invalid address {address!r} (bad checksum or length)")
    seen: set[str] = set()
    for entry in genesis.balances:
        if entry.address in seen:
            raise ConfigError(f"genesis lists {entry.address} twice")
        seen.add(entry.address)
    if sum(b.amount for b in genesis.balances) >= 2**63:
        raise ConfigError("genesis balances exceed the maximum supply")


def compute_genesis_hash(genesis: Genesis) -> str:
    return sha256(codec.encode(genesis)).hex()


def genesis_state(genesis: Genesis) -> ChainState:
    return ChainState.from_accounts(
        {b.address: Account(balance=b.amount) for b in genesis.balances}, authorities=tuple(genesis.authorities)
    )


def genesis_block(genesis: Genesis, state: ChainState) -> Block:
    """Height 0: unsigned, its prev_hash commits to the genesis document."""
    header = BlockHeader(
        chain_id=genesis.chain_id,
        height=0,
        time_ms=genesis.genesis_time_ms,
        prev_hash=compute_genesis_hash(genesis),
        tx_root=compute_tx_root([]),
        tx_count=0,
        state_root=state.state_root,
        proposer=genesis.authorities[0],
    )
    return Block(header=header, proposer_signature="", txs=[])


def load_genesis(path: Path) -> Genesis:
    try:
        genesis = msgspec.json.decode(path.read_bytes(), type=Genesis)
    except FileNotFoundError:
        raise ConfigError(f"no genesis file at {path}") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{path}: invalid genesis: {exc}") from None
    validate_genesis(genesis)
    return genesis


def genesis_to_json(genesis: Genesis) -> bytes:
    return msgspec.json.format(msgspec.json.encode(genesis), indent=2) + b"\n"
