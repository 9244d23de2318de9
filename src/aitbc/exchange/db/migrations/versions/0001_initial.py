"""Exchange tables: users, sessions, API keys, audit, the command log and its journal, orders, trades,
deposit addresses, deposits, withdrawals, state.

Revision ID: 0001
Revises:

This first revision creates these tables as ``aitbc.exchange.db.schema`` declares them; a later change
to one of them, or a new table, comes as a new revision.
"""

from __future__ import annotations

from alembic import op

from aitbc.exchange.db.schema import metadata

revision = "0001"
down_revision = None


TABLES = (
    "exchange_users",
    "exchange_sessions",
    "exchange_api_keys",
    "exchange_audit",
    "exchange_commands",
    "exchange_journal",
    "exchange_orders",
    "exchange_trades",
    "exchange_deposit_addresses",
    "exchange_deposits",
    "exchange_withdrawals",
    "exchange_state",
)


def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=[metadata.tables[name] for name in TABLES])


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), tables=[metadata.tables[name] for name in TABLES])
