"""PostgreSQL: ``agent_runtime_apply`` fences a lease holder on its lease only (epoch and owner).

0002's function also compared the task row's ``updated_at`` with the holder's view, so any write
by someone else (even one that changed nothing) fenced out the running worker. Only a new epoch or
another owner invalidates a lease now (docs/architecture.md, "Leases"); the sequence number check
stays, so a holder never numbers events that another writer already used.

The function text is 0002's with the ``updated_at`` condition removed.

Revision ID: 0003
Revises: 0002
"""

import importlib

from alembic import op

revision = "0003"
down_revision = "0002"

_FENCE = "\n        AND updated_at = (p->>'updated_at')::timestamptz"


def _function_0002() -> str:
    module = importlib.import_module("agent_runtime.store.migrations.versions.0002_apply_function")
    text: str = module.FUNCTION
    assert _FENCE in text
    return text


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_function_0002().replace(_FENCE, ""))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_function_0002())
