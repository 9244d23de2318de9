"""The exchange's tables and migrations (SQLAlchemy Core + Alembic; SQLite or PostgreSQL)."""
