"""Alembic environment: runs on a connection handed over by :mod:`agent_runtime.store.migrate`."""

from __future__ import annotations

from alembic import context

from agent_runtime.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
