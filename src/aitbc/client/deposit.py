"""A client's deposit on chain: open it, top it up, withdraw from it, read it back (proof-checked).

Each call signs one tx with the client's key and waits for it to commit; what the coordinator may
do with the deposit is fixed by the chain rules (``aitbc.chain.deposits``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import msgspec

from aitbc.chain.params import ChainParams
from aitbc.client.node import NodeClient
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.deposit import JobRequest, compute_deposit_id, make_deposit_job_id, sign_job_request
from aitbc.protocol.errors import ConfigError, RemoteError
from aitbc.protocol.job import compute_input_hash
from aitbc.protocol.job_messages import JobRequest as JobBody
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


def sign_deposit_job(body: dict[str, Any], account: dict[str, Any], key: KeyPair) -> dict[str, Any]:
    """``body`` (a ``POST /api/v1/jobs`` body with its ``max_price``) made a signed-mode deposit job: a job id
    expiring at the height the coordinator suggests (``account``: its ``GET /api/v1/account``), and ``key``'s
    signature over the job request the chain will rebuild from the receipt."""
    if key.address != account["client"]:
        raise ConfigError(f"deposit {account['deposit_id']} is {account['client']}'s; this key is {key.address}")
    if "max_price" not in body:
        raise ConfigError("a signed-mode job names its max_price (it is part of what you sign)")
    job_id = make_deposit_job_id(int(account["job_expiry_height"]), os.urandom(10))
    sealed = body.get("sealed")
    input_hash = sealed["input_hash"] if sealed else compute_input_hash(msgspec.convert(body, JobBody).to_job_input())
    request = JobRequest(
        chain_id=account["chain_id"],
        job_id=job_id,
        deposit_id=account["deposit_id"],
        model=body["model"],
        input_hash=input_hash,
        max_price=int(body["max_price"]),
    )
    return {**body, "job_id": job_id, "client_signature": sign_job_request(request, key)}
