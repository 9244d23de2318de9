"""The pool hub's tables and migrations (SQLAlchemy Core + Alembic; SQLite or PostgreSQL)."""
