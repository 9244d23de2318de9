"""Keys and addresses: the exchange's BIP84 account key, per-user deposit addresses, address checks for
the configured network, BIP21 payment URIs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote

from embit import base58, bech32, bip32, script
from embit.networks import NETWORKS

from aitbc.exchange.config import BitcoinNetwork
from aitbc.protocol.errors import ConfigError, InvalidAddress

SATS_PER_BTC: Final = 100_000_000
RECEIVE, CHANGE = 0, 1
_EMBIT_NET: Final = {BitcoinNetwork.MAINNET: "main", BitcoinNetwork.TESTNET: "test", BitcoinNetwork.REGTEST: "regtest"}
_ORIGIN = re.compile(r"^\[([0-9a-fA-F]{8})((?:/\d+[hH']?)*)\](.+)$")


def network_params(network: BitcoinNetwork) -> dict[str, Any]:
    params: dict[str, Any] = NETWORKS[_EMBIT_NET[network]]
    return params


@dataclass(frozen=True)
class AccountKey:
    """The exchange's BIP84 account public key, with the origin a signer needs to find its private key.

    Written ``[fingerprint/84h/1h/0h]tpub…`` (the master fingerprint and the account path, as in output
    descriptors), or a bare ``xpub/tpub/zpub/vpub`` (then the signer holds the account private key itself).
    """

    hd: Any
    fingerprint: bytes
    path: tuple[int, ...]
    network: BitcoinNetwork

    @classmethod
    def parse(cls, text: str, network: BitcoinNetwork) -> AccountKey:
        text = text.strip()
        origin = _ORIGIN.match(text)
        key_text = origin.group(3) if origin else text
        try:
            hd = bip32.HDKey.from_string(key_text)
        except Exception as exc:
            raise ConfigError(f"not an extended public key: {exc}") from None
        if hd.is_private:
            raise ConfigError("the exchange needs the account xpub, never a private key")
        params = network_params(network)
        if hd.version not in {params[v] for v in ("xpub", "zpub")}:
            raise ConfigError(f"this extended key is not for {network.value}")
        if origin:
            fingerprint = bytes.fromhex(origin.group(1))
            path = tuple(
                int(p.rstrip("hH'")) + (bip32.HARDENED_INDEX if p[-1] in "hH'" else 0)
                for p in origin.group(2).split("/")[1:]
            )
        else:
            fingerprint, path = hd.my_fingerprint, ()
        return cls(hd, fingerprint, path, network)

    def derive_script(self, change: int, index: int) -> Any:
        return script.p2wpkh(self.hd.derive([change, index]).key)

    def derive_address(self, change: int, index: int) -> str:
        address: str = self.derive_script(change, index).address(network_params(self.network))
        return address

    def derivation(self, change: int, index: int) -> tuple[Any, Any]:
        """(pubkey, DerivationPath) for a PSBT input or output, so a signer finds the key."""
        from embit.psbt import DerivationPath

        pub = self.hd.derive([change, index]).key
        return pub, DerivationPath(self.fingerprint, [*self.path, change, index])


def check_address(address: str, network: BitcoinNetwork) -> Any:
    """The scriptPubKey of ``address`` if it is valid *for this network*; else ``InvalidAddress``."""
    params = network_params(network)
    address = address.strip()
    if not 14 <= len(address) <= 90:
        raise InvalidAddress("not a Bitcoin address (length)")
    lowered = address.lower()
    if "1" in lowered and lowered.rsplit("1", 1)[0] in ("bc", "tb", "bcrt"):
        hrp = lowered.rsplit("1", 1)[0]
        if hrp != params["bech32"]:
            raise InvalidAddress(f"a {hrp} address is not for {network.value}", reason="wrong_network")
        version, _program = bech32.decode(hrp, address)
        if version is None:
            raise InvalidAddress("bad bech32 address (checksum or encoding)")
        return script.address_to_scriptpubkey(address)
    try:
        raw = base58.decode_check(address)
    except Exception:
        raise InvalidAddress("not a Bitcoin address") from None
    if len(raw) != 21:
        raise InvalidAddress("not a Bitcoin address (length)")
    if raw[:1] not in (params["p2pkh"], params["p2sh"]):
        raise InvalidAddress(f"this address is not for {network.value}", reason="wrong_network")
    return script.address_to_scriptpubkey(address)


def format_btc(sats: int) -> str:
    """Satoshis as a decimal BTC string without trailing zeros (BIP21 ``amount``)."""
    text = format(Decimal(sats).scaleb(-8), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def bip21_uri(address: str, amount_sat: int | None = None, label: str | None = None) -> str:
    params = []
    if amount_sat:
        params.append(f"amount={format_btc(amount_sat)}")
    if label:
        params.append(f"label={quote(label, safe='')}")
    return f"bitcoin:{address}" + (f"?{'&'.join(params)}" if params else "")
