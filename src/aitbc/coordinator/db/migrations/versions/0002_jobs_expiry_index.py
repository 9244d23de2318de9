"""Index queued jobs by expiry, so the ttl sweep does not scan the whole queue.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_index("ix_jobs_state_expires", "jobs", ["state", "expires_at_ms"])


def downgrade() -> None:
    op.drop_index("ix_jobs_state_expires", table_name="jobs")
