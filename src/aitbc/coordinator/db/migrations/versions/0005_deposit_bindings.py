"""API keys bound to a client's on-chain deposit (jobs paid from it, settled in batches).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "deposit_bindings",
        sa.Column("api_key_id", sa.String(32), primary_key=True),
        sa.Column("deposit_id", sa.String(44), nullable=False, index=True),
        sa.Column("bound_at_ms", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("deposit_bindings")
