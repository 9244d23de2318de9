"""Balance moves every rule shares: crediting an account and paying a fee."""

from __future__ import annotations

from aitbc.chain.entries import Account
from aitbc.chain.state import StateDelta


def process_credit(state: StateDelta, address: str, amount: int) -> None:
    """Add ``amount`` to ``address`` (nothing is written for zero, so no empty account appears)."""
    if amount:
        account = state.get_account(address)
        state.set_account(address, Account(balance=account.balance + amount, nonce=account.nonce))


def process_fee(state: StateDelta, fee: int, proposer: str) -> None:
    """Fees go to the proposer of the block that includes the tx; in a BFT block they are collected and split
    among the proposer and the voters at its end (``aitbc.chain.block_steps.process_end_block``)."""
    if state.voters is not None:
        state.fees += fee
        return
    process_credit(state, proposer, fee)
