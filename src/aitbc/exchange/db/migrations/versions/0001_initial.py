"""Exchange tables: users, sessions, API keys, audit, the command log and its journal, orders, trades,
deposit addresses, deposits, withdrawals, state.

Revision ID: 0001
Revises:

This first revision creates the tables as ``aitbc.exchange.db.schema`` declares them; any later change
to the schema comes as a new revision that alters them.
"""

from __future__ import annotations

from alembic import op

from aitbc.exchange.db.schema import metadata

revision = "0001"
down_revision = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
