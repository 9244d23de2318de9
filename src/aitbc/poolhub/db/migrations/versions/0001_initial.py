"""Pool hub tables: miners (registration, live state, statistics), outcomes, audit.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "poolhub_miners",
        sa.Column("address", sa.String(90), primary_key=True),
        sa.Column("registration", sa.JSON, nullable=False),
        sa.Column("stake", sa.BigInteger, nullable=False),
        sa.Column("max_concurrency", sa.Integer, nullable=False),
        sa.Column("registered_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger, nullable=False),
        sa.Column("load", sa.Integer, nullable=False),
        sa.Column("reliability", sa.Float, nullable=False),
        sa.Column("ttft_ms", sa.Float, nullable=True),
        sa.Column("tokens_per_s", sa.Float, nullable=True),
        sa.Column("completed", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("timed_out", sa.Integer, nullable=False),
        sa.Column("receipt_rejected", sa.Integer, nullable=False),
        sa.Column("last_outcome_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "poolhub_outcomes",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("miner", sa.String(90), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("ttft_ms", sa.Float, nullable=True),
        sa.Column("tokens_per_s", sa.Float, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("reliability_after", sa.Float, nullable=False),
        sa.Column("recorded_at_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("job_id", "miner", "attempt", "outcome", name="uq_poolhub_outcomes_report"),
    )
    op.create_index("ix_poolhub_outcomes_miner_time", "poolhub_outcomes", ["miner", "recorded_at_ms"])
    op.create_table(
        "poolhub_audit",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("miner", sa.String(90), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_poolhub_audit_miner_time", "poolhub_audit", ["miner", "at_ms"])


def downgrade() -> None:
    op.drop_table("poolhub_audit")
    op.drop_table("poolhub_outcomes")
    op.drop_table("poolhub_miners")
