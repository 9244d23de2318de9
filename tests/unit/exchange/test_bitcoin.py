"""Bitcoin rules of the exchange: BIP84 derivation (the BIP84 test vector), address checks per network,
BIP21 URIs, block parsing that refuses tampered blocks, coin selection and fees."""

from __future__ import annotations

import pytest
from embit import bip32, bip39
from embit.networks import NETWORKS

from aitbc.exchange.bitcoin.addresses import AccountKey, bip21_uri, check_address, format_btc
from aitbc.exchange.bitcoin.backend import parse_block
from aitbc.exchange.bitcoin.psbt import Coin, NotEnoughCoins, compute_fee, select_coins
from aitbc.exchange.config import BitcoinNetwork
from aitbc.protocol.errors import ConfigError, InvalidAddress, RemoteError
from support.bitcoin_regtest import RegtestChain

MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
SEED = bip39.mnemonic_to_seed(MNEMONIC)


def test_bip84_test_vector() -> None:
    root = bip32.HDKey.from_seed(SEED, version=NETWORKS["main"]["xprv"])
    xpub = root.derive("m/84h/0h/0h").to_public().to_string()
    account = AccountKey.parse(f"[{root.my_fingerprint.hex()}/84h/0h/0h]{xpub}", BitcoinNetwork.MAINNET)
    # BIP84's published vectors for this mnemonic
    assert account.derive_address(0, 0) == "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    assert account.derive_address(0, 1) == "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"
    assert account.derive_address(1, 0) == "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el"


def test_account_key_refuses_private_keys_and_other_networks() -> None:
    root = bip32.HDKey.from_seed(SEED, version=NETWORKS["main"]["xprv"])
    with pytest.raises(ConfigError):
        AccountKey.parse(root.derive("m/84h/0h/0h").to_string(), BitcoinNetwork.MAINNET)
    with pytest.raises(ConfigError):
        AccountKey.parse(root.derive("m/84h/0h/0h").to_public().to_string(), BitcoinNetwork.REGTEST)


@pytest.mark.parametrize(
    ("address", "network", "reason"),
    [
        ("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", BitcoinNetwork.MAINNET, None),
        ("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", BitcoinNetwork.TESTNET, "wrong_network"),
        ("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", BitcoinNetwork.REGTEST, "wrong_network"),
        ("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", BitcoinNetwork.TESTNET, None),
        ("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", BitcoinNetwork.MAINNET, "wrong_network"),
        ("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyv", BitcoinNetwork.MAINNET, "invalid_address"),  # checksum
        ("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", BitcoinNetwork.MAINNET, None),
        ("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", BitcoinNetwork.TESTNET, "wrong_network"),
        ("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", BitcoinNetwork.MAINNET, None),
        ("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", BitcoinNetwork.TESTNET, None),
        ("not an address at all", BitcoinNetwork.MAINNET, "invalid_address"),
    ],
)
def test_check_address_per_network(address: str, network: BitcoinNetwork, reason: str | None) -> None:
    if reason is None:
        assert check_address(address, network) is not None
    else:
        with pytest.raises(InvalidAddress) as info:
            check_address(address, network)
        assert info.value.reason == reason


def test_bip21() -> None:
    assert format_btc(150_000) == "0.0015" and format_btc(100_000_000) == "1" and format_btc(1) == "0.00000001"
    assert bip21_uri("bc1qx", 150_000, "A & B") == "bitcoin:bc1qx?amount=0.0015&label=A%20%26%20B"
    assert bip21_uri("bc1qx") == "bitcoin:bc1qx"


def test_parse_block_refuses_tampering() -> None:
    chain = RegtestChain()
    chain.mine(2)
    chain.send("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", 150_000)
    chain.mine(1)
    raw = chain.blocks[-1].raw
    block = parse_block(raw)
    assert block.hash == chain.blocks[-1].hash and len(block.txs) == 2
    assert block.prev_hash == chain.blocks[-2].hash
    # a backend that changes the paid amount (same header) no longer matches the merkle root
    paid = (150_000).to_bytes(8, "little")
    assert raw.count(paid) == 1
    with pytest.raises(RemoteError) as info:
        parse_block(raw.replace(paid, (1_500_000).to_bytes(8, "little")))
    assert info.value.reason == "bad_block"
    with pytest.raises(RemoteError):
        parse_block(raw + b"\x00")  # trailing bytes
    with pytest.raises(RemoteError):
        parse_block(raw[:60])


def test_coin_selection_and_fees() -> None:
    coins = [Coin("aa" * 32, 0, 50_000, 0, 1), Coin("bb" * 32, 1, 200_000, 0, 2), Coin("cc" * 32, 0, 80_000, 1, 0)]
    chosen, fee, change = select_coins(coins, 100_000, 10)
    assert [c.value for c in chosen] == [200_000] and fee == compute_fee(1, 2, 10) == 1_650
    assert change == 200_000 - 100_000 - 1_650
    chosen, fee, change = select_coins(coins, 250_000, 10)
    assert len(chosen) == 2 and change == 280_000 - 250_000 - fee
    chosen, fee, change = select_coins(coins, 200_000 - 1_650 - 100, 10)  # change below dust: into the fee
    assert change == 0 and fee == 1_750
    with pytest.raises(NotEnoughCoins):
        select_coins(coins, 400_000, 10)
