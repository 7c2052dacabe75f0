"""Durable state: one SQL implementation (SQLite and PostgreSQL), Alembic migrations."""
