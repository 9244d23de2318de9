"""Signatures inside txs (settle-batch receipts) checked in bulk at admission, remembered for the block.

A ``settle_batch`` carries one miner signature per job (and a client signature per job on a
signed-mode deposit). The chain rule checks them entry by entry, refusing only the bad entries,
so they cannot be part of the tx's own signature check (one bad receipt would refuse the whole
batch). Instead the node runs them through the same worker processes as tx signatures when
the batch arrives (``SignatureVerifier``), remembers the ones that held, and hands that memory
to ``build_block`` / ``apply_block`` as ``is_known_signature``: the rule then skips the inline
Ed25519 check for those. Only checks that held are remembered, so the oracle can make a block
faster but never change its outcome.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from aitbc.chain.deposits import get_entry_checks
from aitbc.chain.state import StateReader
from aitbc.protocol.crypto import SignatureCheck
from aitbc.protocol.tx import SettleBatch, Tx

MAX_REMEMBERED: Final = 200_000
"""Checks remembered (about 100 bytes each); the oldest are forgotten first."""


def _digest(check: SignatureCheck) -> bytes:
    return hashlib.blake2b(check[0] + check[1], digest_size=16).digest()


class KnownSignatures:
    """A bounded memory of signature checks that held."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self.limit = limit
        self._held: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def remember(self, checks: Sequence[SignatureCheck], valid: Sequence[bool]) -> None:
        held = self._held
        for check, ok in zip(checks, valid, strict=True):
            if ok:
                held[_digest(check)] = None
        while len(held) > self.limit:
            held.popitem(last=False)

    def __call__(self, check: SignatureCheck) -> bool:
        return _digest(check) in self._held


def get_inner_checks(txs: Sequence[Tx], state: StateReader) -> list[SignatureCheck]:
    """The receipt (and signed-mode client) signature checks of the settle batches among ``txs``."""
    checks: list[SignatureCheck] = []
    for tx in txs:
        if not isinstance(tx, SettleBatch):
            continue
        for entry in tx.entries:
            deposit = state.get_deposit(entry.deposit_id)
            if deposit is None:
                continue
            checks.extend(c for c in get_entry_checks(entry, deposit) if c is not None)
    return checks
