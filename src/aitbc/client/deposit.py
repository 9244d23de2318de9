"""A client's deposit on chain: open it, top it up, withdraw from it, read it back (proof-checked).

Each call signs one tx with the client's key and waits for it to commit; what the coordinator may
do with the deposit is fixed by the chain rules (``aitbc.chain.deposits``).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from aitbc.chain.params import ChainParams
from aitbc.client.node import NodeClient
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.deposit import compute_deposit_id
from aitbc.protocol.errors import RemoteError
from aitbc.protocol.tx import OpenDeposit, TopUpDeposit, Tx, WithdrawDeposit


@dataclass(frozen=True, slots=True)
class DepositTx:
    deposit_id: str
    tx_hash: str
    height: int
    fee: int


def _send(node: NodeClient, key: KeyPair, tx: Tx, timeout: float) -> tuple[str, int]:
    tx_hash = node.sign_and_send(key, tx)
    status = node.wait_for_tx(tx_hash, timeout=timeout)
    if status["status"] != "committed":
        reason = status.get("reason") or "rejected"
        raise RemoteError(f"tx {tx_hash} was refused: {reason}", reason=reason)
    return tx_hash, int(status["height"])


def _chain(node: NodeClient) -> tuple[str, ChainParams]:
    info = node.get_chain_info()
    return info["chain_id"], msgspec.convert(info["params"], ChainParams)


def open_deposit(
    node: NodeClient,
    key: KeyPair,
    coordinator: str,
    amount: int,
    *,
    mode: str = "delegated",
    cap_per_period: int = 0,
    period_blocks: int = 0,
    timeout: float = 60.0,
) -> DepositTx:
    """Fund a deposit ``coordinator`` may settle jobs against; returns once it is committed."""
    chain_id, params = _chain(node)
    nonce = node.next_nonce(key.address)
    tx = OpenDeposit(
        chain_id=chain_id,
        sender=key.address,
        nonce=nonce,
        fee=params.min_fee,
        coordinator=coordinator,
        mode=mode,
        amount=amount,
        cap_per_period=cap_per_period,
        period_blocks=period_blocks,
    )
    tx_hash, height = _send(node, key, tx, timeout)
    return DepositTx(compute_deposit_id(key.address, nonce), tx_hash, height, params.min_fee)


def top_up_deposit(node: NodeClient, key: KeyPair, deposit_id: str, amount: int, timeout: float = 60.0) -> DepositTx:
    chain_id, params = _chain(node)
    tx = TopUpDeposit(
        chain_id=chain_id,
        sender=key.address,
        nonce=node.next_nonce(key.address),
        fee=params.min_fee,
        deposit_id=deposit_id,
        amount=amount,
    )
    tx_hash, height = _send(node, key, tx, timeout)
    return DepositTx(deposit_id, tx_hash, height, params.min_fee)


def withdraw_deposit(node: NodeClient, key: KeyPair, deposit_id: str, amount: int, timeout: float = 60.0) -> DepositTx:
    """Ask for ``amount`` back; the chain pays it ``deposit_withdrawal_delay`` blocks after ``height``."""
    chain_id, params = _chain(node)
    tx = WithdrawDeposit(
        chain_id=chain_id,
        sender=key.address,
        nonce=node.next_nonce(key.address),
        fee=params.min_fee,
        deposit_id=deposit_id,
        amount=amount,
    )
    tx_hash, height = _send(node, key, tx, timeout)
    return DepositTx(deposit_id, tx_hash, height, params.min_fee)
