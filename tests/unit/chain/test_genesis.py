"""Genesis: validation, its hash, the genesis state and block, and the JSON file round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from aitbc.chain.entries import Account
from aitbc.chain.genesis import (
    Genesis,
    GenesisBalance,
    compute_genesis_hash,
    genesis_block,
    genesis_state,
    genesis_to_json,
    load_genesis,
    validate_genesis,
)
from aitbc.chain.params import PRESETS, ChainParams, get_preset
from aitbc.chain.state import ChainState
from aitbc.protocol import codec
from aitbc.protocol.block import compute_tx_root
from aitbc.protocol.crypto import sha256
from aitbc.protocol.errors import ConfigError
from aitbc.protocol.merkle import EMPTY_ROOT
from aitbc.protocol.types import MAX_U64


def test_fixture_genesis_is_valid(genesis: Genesis) -> None:
    validate_genesis(genesis)


def test_genesis_hash_is_the_hash_of_its_canonical_bytes(genesis: Genesis) -> None:
    assert compute_genesis_hash(genesis) == sha256(codec.encode(genesis)).hex()
    rebuilt = msgspec.json.decode(msgspec.json.encode(genesis), type=Genesis)
    assert compute_genesis_hash(rebuilt) == compute_genesis_hash(genesis)


@pytest.mark.parametrize(
    "change",
    [
        {"chain_id": "other"},
        {"genesis_time_ms": 1},
        {"authorities": []},
        {"balances": []},
        {"params": ChainParams(min_fee=11)},
    ],
    ids=lambda c: next(iter(c)),
)
def test_genesis_hash_commits_to_every_field(genesis: Genesis, change: dict[str, Any]) -> None:
    assert compute_genesis_hash(msgspec.structs.replace(genesis, **change)) != compute_genesis_hash(genesis)


def test_genesis_state(genesis: Genesis) -> None:
    state = genesis_state(genesis)
    assert state.accounts == {b.address: Account(balance=b.amount) for b in genesis.balances}
    assert state.total_supply() == sum(b.amount for b in genesis.balances)
    assert state.state_root == ChainState.from_accounts(state.accounts).state_root


def test_genesis_block(genesis: Genesis) -> None:
    state = genesis_state(genesis)
    block = genesis_block(genesis, state)
    header = block.header
    assert header.height == 0
    assert header.chain_id == genesis.chain_id
    assert header.time_ms == genesis.genesis_time_ms
    assert header.prev_hash == compute_genesis_hash(genesis)
    assert header.tx_root == compute_tx_root([]) == EMPTY_ROOT.hex()
    assert header.tx_count == 0
    assert header.state_root == state.state_root
    assert header.proposer == genesis.authorities[0]
    assert block.txs == []
    assert block.proposer_signature == ""


def test_genesis_state_with_a_zero_balance_entry(keys: Any) -> None:
    genesis = Genesis(
        chain_id="z",
        genesis_time_ms=0,
        authorities=[keys.authority.address],
        balances=[GenesisBalance(keys.alice.address, 0)],
    )
    validate_genesis(genesis)
    assert genesis_state(genesis).get_account(keys.alice.address) == Account()


def _with(genesis: Genesis, **change: Any) -> Genesis:
    return msgspec.structs.replace(genesis, **change)


def test_no_authority_is_refused(genesis: Genesis) -> None:
    with pytest.raises(ConfigError, match="authority"):
        validate_genesis(_with(genesis, authorities=[]))


def test_duplicate_authorities_are_refused(genesis: Genesis, keys: Any) -> None:
    with pytest.raises(ConfigError, match="distinct"):
        validate_genesis(_with(genesis, authorities=[keys.authority.address, keys.authority.address]))


def test_duplicate_balance_entries_are_refused(genesis: Genesis, keys: Any) -> None:
    balances = [*genesis.balances, GenesisBalance(keys.alice.address, 1)]
    with pytest.raises(ConfigError, match="twice"):
        validate_genesis(_with(genesis, balances=balances))


def test_total_supply_above_the_maximum_is_refused(genesis: Genesis, keys: Any) -> None:
    at_max = [GenesisBalance(keys.alice.address, MAX_U64 - 1), GenesisBalance(keys.bob.address, 1)]
    validate_genesis(_with(genesis, balances=at_max))
    over = [GenesisBalance(keys.alice.address, MAX_U64), GenesisBalance(keys.bob.address, 1)]
    with pytest.raises(ConfigError, match="maximum supply"):
        validate_genesis(_with(genesis, balances=over))


def test_json_file_round_trip(genesis: Genesis, tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_bytes(genesis_to_json(genesis))
    assert path.read_bytes().endswith(b"\n")
    loaded = load_genesis(path)
    assert loaded == genesis
    assert compute_genesis_hash(loaded) == compute_genesis_hash(genesis)


def test_params_default_when_absent(genesis: Genesis, tmp_path: Path) -> None:
    obj = msgspec.to_builtins(genesis)
    del obj["params"]
    path = tmp_path / "genesis.json"
    path.write_bytes(msgspec.json.encode(obj))
    assert load_genesis(path).params == ChainParams()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no genesis"):
        load_genesis(tmp_path / "absent.json")


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda o: o.update(extra=1), id="unknown-field"),
        pytest.param(lambda o: o["params"].update(extra=1), id="unknown-param"),
        pytest.param(lambda o: o.pop("chain_id"), id="missing-chain-id"),
        pytest.param(lambda o: o.update(chain_id="Bad Chain"), id="bad-chain-id"),
        pytest.param(lambda o: o["authorities"].append("ait1notanaddress"), id="bad-authority"),
        pytest.param(lambda o: o["balances"][0].update(amount=-1), id="negative-balance"),
        pytest.param(lambda o: o["balances"][0].update(amount=2**63), id="balance-too-large"),
    ],
)
def test_invalid_files_are_config_errors(genesis: Genesis, tmp_path: Path, mutate: Any) -> None:
    obj = msgspec.to_builtins(genesis)
    mutate(obj)
    path = tmp_path / "genesis.json"
    path.write_bytes(msgspec.json.encode(obj))
    with pytest.raises(ConfigError):
        load_genesis(path)


def _typo(address: str) -> str:
    """The same address with its last character changed: valid alphabet, wrong checksum."""
    return address[:-1] + ("q" if address[-1] != "q" else "p")


def test_authority_with_a_bad_checksum_is_refused(genesis: Genesis) -> None:
    typo = _with(genesis, authorities=[_typo(genesis.authorities[0])])
    with pytest.raises(ConfigError, match="address"):
        validate_genesis(typo)


def test_balance_address_with_a_bad_checksum_is_refused(genesis: Genesis, tmp_path: Path) -> None:
    balances = [GenesisBalance(_typo(genesis.balances[0].address), 5), *genesis.balances[1:]]
    path = tmp_path / "genesis.json"
    path.write_bytes(genesis_to_json(_with(genesis, balances=balances)))
    with pytest.raises(ConfigError, match="address"):
        load_genesis(path)


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null"])
def test_unparseable_files_are_config_errors(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "genesis.json"
    path.write_bytes(raw)
    with pytest.raises(ConfigError):
        load_genesis(path)


def test_load_validates(genesis: Genesis, tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_bytes(genesis_to_json(_with(genesis, authorities=[])))
    with pytest.raises(ConfigError, match="authority"):
        load_genesis(path)


def test_presets() -> None:
    assert get_preset("devnet") == ChainParams() == PRESETS["devnet"]
    assert get_preset("mainnet").min_fee == 100
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("nope")
