"""Tx rules of m-of-n accounts: ``create_multisig`` and ``multisig_transfer``.

Each kind is a ``verify_*`` (the ``# Verify`` checks that come before the
sender's nonce and balance, returning what the mutation needs) and, where the
kind writes more than the shared steps do, a ``process_*`` (the mutation).
The shared steps (stateless checks, nonce, balance, fee, the recipient credit)
run once for every kind in ``aitbc.chain.tx_rules.process_tx``.
"""

from __future__ import annotations

from aitbc.chain.context import TxContext
from aitbc.chain.entries import MultisigAccount
from aitbc.chain.state import StateDelta
from aitbc.protocol.errors import InvalidTx, TxRejection
from aitbc.protocol.tx import CreateMultisig, MultisigTransfer, compute_multisig_address


def verify_create_multisig(state: StateDelta, tx: CreateMultisig, ctx: TxContext) -> str:
    """The policy is sound and the account is new; returns the account's address."""
    # Verify the policy: distinct members, 1 <= threshold <= members
    if len(set(tx.members)) != len(tx.members):
        raise InvalidTx(TxRejection.BAD_MULTISIG_POLICY, "multisig members must be distinct")
    if not 1 <= tx.threshold <= len(tx.members):
        raise InvalidTx(
            TxRejection.BAD_MULTISIG_POLICY, f"threshold {tx.threshold} must lie within 1..{len(tx.members)}"
        )
    # Verify the account does not exist yet (its address is derived from the creator's nonce)
    address = compute_multisig_address(tx.sender, tx.nonce)
    if state.get_multisig(address) is not None:  # pragma: no cover - a nonce is used once
        raise InvalidTx(TxRejection.MULTISIG_EXISTS, f"multisig account {address} already exists")
    return address


def process_create_multisig(state: StateDelta, tx: CreateMultisig, ctx: TxContext, address: str) -> None:
    state.set_multisig(
        MultisigAccount(
            address=address,
            members=sorted(tx.members),
            threshold=tx.threshold,
            creator=tx.sender,
            created_height=ctx.height,
        )
    )


def verify_multisig_transfer(state: StateDelta, tx: MultisigTransfer, ctx: TxContext) -> None:
    """A spend from an m-of-n account. The approvals' signatures were checked with every tx's
    signature (``prepare_tx_check``); here: are the signers members, and are there enough."""
    # Verify the sender is a multisig account
    policy = state.get_multisig(tx.sender)
    if policy is None:
        raise InvalidTx(TxRejection.NOT_MULTISIG, f"{tx.sender} is not a multisig account")
    # Verify every approval is a member's, and at least threshold members approve
    members = set(policy.members)
    outsiders = [a.signer for a in tx.approvals if a.signer not in members]
    if outsiders:
        raise InvalidTx(TxRejection.NOT_MULTISIG_MEMBER, f"{outsiders[0]} is not a member of {tx.sender}")
    signers = {a.signer for a in tx.approvals}
    if len(signers) < policy.threshold:
        raise InvalidTx(
            TxRejection.MULTISIG_THRESHOLD_NOT_MET,
            f"{len(signers)} of {len(policy.members)} members approved; {policy.threshold} are needed",
        )
