"""Jobs paid on chain: escrow terms, payment state, and the chain-event cursor.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

_COLUMNS = (
    ("escrow_amount", sa.BigInteger),
    ("escrow_deadline", sa.BigInteger),
    ("payment_state", lambda: sa.String(16)),
    ("payment_tx", lambda: sa.String(64)),
    ("payment_height", sa.BigInteger),
    ("payment_updated_ms", sa.BigInteger),
    ("payment_error", sa.Text),
    ("paid_to_miner", sa.BigInteger),
    ("protocol_fee", sa.BigInteger),
    ("refunded", sa.BigInteger),
)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name, type_ in _COLUMNS:
            batch.add_column(sa.Column(name, type_(), nullable=True))
    op.create_index("ix_jobs_payment", "jobs", ["payment_state", "state"])
    op.create_table(
        "chain_cursor",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("event_seq", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("chain_cursor")
    op.drop_index("ix_jobs_payment", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
