"""Coordinator persistence: SQLAlchemy Core tables, Alembic migrations, one repository."""
