"""Initial coordinator schema: api keys, miners, jobs, receipts.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("client", sa.String(90), nullable=False),
        sa.Column("rate_per_second", sa.Float, nullable=False),
        sa.Column("burst", sa.Integer, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )
    op.create_table(
        "miners",
        sa.Column("address", sa.String(90), primary_key=True),
        sa.Column("registration", sa.JSON, nullable=False),
        sa.Column("registered_at_ms", sa.BigInteger, nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("api_key_id", sa.String(32), nullable=False),
        sa.Column("client", sa.String(90), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("model_digest", sa.String(200), nullable=True),
        sa.Column("input", sa.JSON, nullable=False),
        sa.Column("input_hash", sa.String(64), nullable=False),
        sa.Column("max_price", sa.BigInteger, nullable=True),
        sa.Column("constraints", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("miner", sa.String(90), nullable=True),
        sa.Column("lease_id", sa.String(32), nullable=True),
        sa.Column("lease_expires_at_ms", sa.BigInteger, nullable=True),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("assigned_at_ms", sa.BigInteger, nullable=True),
        sa.Column("started_at_ms", sa.BigInteger, nullable=True),
        sa.Column("finished_at_ms", sa.BigInteger, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("served_digest", sa.String(200), nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
    )
    op.create_index("ix_jobs_api_key_id", "jobs", ["api_key_id"])
    op.create_index("ix_jobs_state_model_created", "jobs", ["state", "model", "created_at_ms"])
    op.create_index("ix_jobs_lease", "jobs", ["state", "lease_expires_at_ms"])
    op.create_table(
        "receipts",
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("receipt_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("miner", sa.String(90), nullable=False),
        sa.Column("receipt", sa.JSON, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_receipts_miner", "receipts", ["miner"])


def downgrade() -> None:
    op.drop_table("receipts")
    op.drop_table("jobs")
    op.drop_table("miners")
    op.drop_table("api_keys")
