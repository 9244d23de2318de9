"""Chain parameters and their presets; part of genesis, so every node agrees on them."""

from __future__ import annotations

from typing import Final

import msgspec

from aitbc.chain.audit_params import AuditParams
from aitbc.chain.gov_params import GOVERNANCE_PRESETS, GovernanceParams
from aitbc.chain.validators import STAKING_PRESETS, StakingParams
from aitbc.protocol.address import encode_address
from aitbc.protocol.crypto import sha256
from aitbc.protocol.types import U64, Amount

REWARD_POOL_ADDRESS: Final = encode_address(sha256(b"aitbc/module/validator-reward-pool"))
"""Module account that collects protocol fees for the validators (no key can spend it)."""


class ChainParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    block_time_ms: U64 = 1000
    max_block_txs: U64 = 20_000
    max_block_bytes: U64 = 8 * 1024 * 1024
    max_tx_bytes: U64 = 16 * 1024
    min_fee: Amount = 1
    """Smallest fee (base units) a tx may pay; fees go to the block proposer."""
    mempool_max_txs: U64 = 200_000
    mempool_nonce_window: U64 = 1_024
    """A tx's nonce may run at most this far ahead of its sender's committed nonce."""
    mempool_max_per_sender: U64 = 1_024
    protocol_fee_bps: U64 = 200
    """Share of every settled job's total (basis points) paid to the validators' reward pool."""
    max_escrow_blocks: U64 = 100_000
    """An escrow's deadline may lie at most this many blocks ahead."""
    deposit_withdrawal_delay: U64 = 30
    """Blocks between a deposit's ``withdraw_deposit`` and the payout, so work already done still settles."""
    max_receipt_blocks: U64 = 1_000
    """A deposit job's expiry (carried in its id) may lie at most this many blocks ahead; paid job ids are
    remembered until then, so the chain keeps at most this many blocks' worth of them."""
    max_batch_entries: U64 = 2_000
    """Most jobs one ``settle_batch`` may carry."""
    max_batch_tx_bytes: U64 = 2 * 1024 * 1024
    """Size limit of a ``settle_batch`` (other txs: ``max_tx_bytes``)."""
    staking: StakingParams = msgspec.field(default_factory=StakingParams)
    """Validator set, staking, slashing and reward rule (``aitbc.chain.validators``)."""
    governance: GovernanceParams = msgspec.field(default_factory=GovernanceParams)
    """Proposals, votes and their tally (``aitbc.chain.governance``; docs/governance.md)."""
    audit: AuditParams = msgspec.field(default_factory=AuditParams)
    """Miner bonds, audit selection, disputes and slashing (``aitbc.chain.audits``; docs/verification.md)."""


PRESETS: dict[str, ChainParams] = {
    "devnet": ChainParams(),
    "mainnet": ChainParams(
        block_time_ms=2000,
        max_block_txs=10_000,
        min_fee=100,
        mempool_max_txs=100_000,
        staking=STAKING_PRESETS["mainnet"],
        governance=GOVERNANCE_PRESETS["mainnet"],
    ),
}


def get_preset(name: str) -> ChainParams:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
