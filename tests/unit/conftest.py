"""Shared fixtures for the pure-core unit tests: deterministic keys, a genesis, a ChainState.

Everything here is deterministic (keys come from fixed seeds). Immutable things
(keys, params, the genesis, helper functions) are session-scoped so hypothesis
tests can use them; a ``ChainState`` is mutable, so the ``state`` fixture builds a
fresh one per test (hypothesis tests build their own with ``make_state``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from aitbc.chain.genesis import Genesis, GenesisBalance, genesis_block, genesis_state
from aitbc.chain.params import ChainParams
from aitbc.chain.state import ChainState
from aitbc.protocol.block import BlockHeader
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.tx import Transfer, VerifiedTx, sign_tx, verify_tx

CHAIN_ID = "aitbc-unit"
GENESIS_TIME_MS = 1_700_000_000_000
INITIAL_BALANCE = 1_000_000_000  # 1000 AITBC each


def key_from_byte(i: int) -> KeyPair:
    return KeyPair.from_seed(bytes([i]) * 32)


@dataclass(frozen=True)
class Keys:
    authority: KeyPair
    authority2: KeyPair
    alice: KeyPair
    bob: KeyPair
    carol: KeyPair
    dave: KeyPair  # not funded at genesis

    @property
    def funded(self) -> tuple[KeyPair, ...]:
        return (self.alice, self.bob, self.carol)


MakeTransfer = Callable[..., Transfer]
MakeVerified = Callable[..., VerifiedTx]


def _make_transfer(
    sender: KeyPair,
    recipient: KeyPair | str,
    amount: int = 1_000,
    nonce: int = 0,
    fee: int = 10,
    chain_id: str = CHAIN_ID,
    memo: str = "",
    sign: bool = True,
) -> Transfer:
    """A transfer from ``sender``; signed with ``sender``'s key unless ``sign=False``."""
    to = recipient if isinstance(recipient, str) else recipient.address
    tx = Transfer(
        chain_id=chain_id, sender=sender.address, nonce=nonce, fee=fee, recipient=to, amount=amount, memo=memo
    )
    return sign_tx(tx, sender) if sign else tx


def _make_verified(*args: object, **kwargs: object) -> VerifiedTx:
    return verify_tx(_make_transfer(*args, **kwargs))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        authority=key_from_byte(0xA0),
        authority2=key_from_byte(0xA1),
        alice=key_from_byte(1),
        bob=key_from_byte(2),
        carol=key_from_byte(3),
        dave=key_from_byte(4),
    )


@pytest.fixture(scope="session")
def chain_id() -> str:
    return CHAIN_ID


@pytest.fixture(scope="session")
def params() -> ChainParams:
    return ChainParams(min_fee=10)


@pytest.fixture(scope="session")
def genesis(keys: Keys, params: ChainParams) -> Genesis:
    """One authority; alice, bob and carol funded with ``INITIAL_BALANCE`` each."""
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time_ms=GENESIS_TIME_MS,
        authorities=[keys.authority.address],
        balances=[GenesisBalance(k.address, INITIAL_BALANCE) for k in keys.funded],
        params=params,
    )


@pytest.fixture(scope="session")
def make_state(genesis: Genesis) -> Callable[[], ChainState]:
    """A fresh ChainState at genesis on every call."""
    return lambda: genesis_state(genesis)


@pytest.fixture
def state(make_state: Callable[[], ChainState]) -> ChainState:
    return make_state()


@pytest.fixture(scope="session")
def genesis_head(genesis: Genesis) -> BlockHeader:
    return genesis_block(genesis, genesis_state(genesis)).header


@pytest.fixture(scope="session")
def make_transfer() -> MakeTransfer:
    return _make_transfer


@pytest.fixture(scope="session")
def make_verified() -> MakeVerified:
    return _make_verified
