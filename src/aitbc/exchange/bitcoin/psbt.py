"""Withdrawal transactions as PSBTs (BIP174): coin selection over the exchange's own outputs, the
unsigned PSBT with key origins for the signer, signing with a hot key, and finalizing."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Final

from embit import bip32, script
from embit.finalizer import finalize_psbt
from embit.psbt import PSBT
from embit.transaction import Transaction, TransactionInput, TransactionOutput

from aitbc.exchange.bitcoin.addresses import CHANGE, AccountKey
from aitbc.protocol.errors import AitbcError

DUST: Final = 546
# virtual sizes of a P2WPKH spend: overhead, per input, per P2WPKH output (a P2TR/P2WSH output is 43)
VBYTES_OVERHEAD, VBYTES_INPUT, VBYTES_OUTPUT = 11, 68, 43


class NotEnoughCoins(AitbcError):
    reason = "exchange_liquidity"


@dataclass(frozen=True, slots=True)
class Coin:
    txid: str
    vout: int
    value: int
    change: int
    index: int


def compute_fee(inputs: int, outputs: int, fee_rate: int) -> int:
    return (VBYTES_OVERHEAD + VBYTES_INPUT * inputs + VBYTES_OUTPUT * outputs) * fee_rate


def select_coins(coins: list[Coin], amount: int, fee_rate: int) -> tuple[list[Coin], int, int]:
    """(chosen coins, fee, change) — largest first until amount + fee (with a change output) is covered."""
    chosen: list[Coin] = []
    total = 0
    for coin in sorted(coins, key=lambda c: (-c.value, c.txid, c.vout)):
        chosen.append(coin)
        total += coin.value
        fee = compute_fee(len(chosen), 2, fee_rate)
        if total >= amount + fee:
            change = total - amount - fee
            if change < DUST:  # no change output: the dust goes to the fee
                return chosen, total - amount, 0
            return chosen, fee, change
    raise NotEnoughCoins("the exchange's confirmed coins cannot cover this withdrawal now; try later")


def build_withdrawal_psbt(
    account: AccountKey, coins: list[Coin], recipient_script: Any, amount: int, change: int, change_index: int
) -> PSBT:
    """An unsigned PSBT spending ``coins`` (exchange outputs only) to the recipient (+ change to us)."""
    vin = [TransactionInput(bytes.fromhex(c.txid), c.vout, sequence=0xFFFFFFFD) for c in coins]
    vout = [TransactionOutput(amount, recipient_script)]
    if change:
        vout.append(TransactionOutput(change, account.derive_script(CHANGE, change_index)))
    psbt = PSBT(Transaction(version=2, vin=vin, vout=vout, locktime=0))
    for inp, coin in zip(psbt.inputs, coins, strict=True):
        pub, derivation = account.derivation(coin.change, coin.index)
        inp.witness_utxo = TransactionOutput(coin.value, script.p2wpkh(pub))
        inp.bip32_derivations[pub] = derivation
    if change:
        pub, derivation = account.derivation(CHANGE, change_index)
        psbt.outputs[1].bip32_derivations[pub] = derivation
    return psbt


def sign_psbt(psbt: PSBT, key: Any) -> int:
    """Sign every input ``key`` (an xprv / tprv, master or account, matching the PSBT's key origins) owns."""
    signed: int = psbt.sign_with(key)
    return signed


def parse_psbt(text: str) -> PSBT:
    try:
        return PSBT.from_string(text.strip())
    except Exception as exc:
        raise AitbcError(f"not a PSBT: {exc}", reason="bad_psbt") from None


def finalize_signed(psbt: PSBT, expected_txid: str) -> Transaction:
    """The broadcastable transaction of a fully signed PSBT for exactly the unsigned tx we built."""
    if psbt.tx.txid().hex() != expected_txid:
        raise AitbcError("this PSBT is not the withdrawal's transaction", reason="psbt_mismatch")
    tx = finalize_psbt(psbt)
    if tx is None:
        raise AitbcError("the PSBT is not fully signed", reason="psbt_unsigned")
    return tx


def read_hot_key(text: str) -> Any:
    key = bip32.HDKey.from_string(text.strip())
    if not key.is_private:
        raise AitbcError("the hot key file must hold an xprv/tprv", reason="config_error")
    return key


def tx_hex(tx: Transaction) -> str:
    out = io.BytesIO()
    tx.write_to(out)
    return out.getvalue().hex()
