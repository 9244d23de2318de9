"""The order of jobs one coordinator process accepted in the same millisecond (``JobRecord.created_seq``),
so a client's job list is newest first even when two submissions share a millisecond. Rows stored before
this revision get 0: among them, a shared millisecond is still ordered by job id.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("created_seq", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("created_seq")
