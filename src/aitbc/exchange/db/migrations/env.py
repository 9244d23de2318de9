"""Alembic environment: migrations run programmatically (``aitbc.runtime.db.run_migrations``)."""

from __future__ import annotations

from alembic import context

from aitbc.exchange.db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection, target_metadata=metadata, render_as_batch=True, version_table="exchange_alembic_version"
)
with context.begin_transaction():
    context.run_migrations()
