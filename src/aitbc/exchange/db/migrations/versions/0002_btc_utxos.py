"""The exchange's own Bitcoin outputs (deposits and change), what spends them, and withdrawal reservations.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "exchange_btc_utxos",
        sa.Column("txid", sa.String(64), primary_key=True),
        sa.Column("vout", sa.Integer, primary_key=True),
        sa.Column("address", sa.String(100), nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("height", sa.BigInteger, nullable=False),
        sa.Column("block_hash", sa.String(64), nullable=False),
        sa.Column("spent_by", sa.String(64), nullable=True),
        sa.Column("spent_height", sa.BigInteger, nullable=True),
        sa.Column("reserved_by", sa.String(40), nullable=True),
    )
    op.create_index("ix_exchange_btc_utxos_spent_by", "exchange_btc_utxos", ["spent_by"])


def downgrade() -> None:
    op.drop_table("exchange_btc_utxos")
