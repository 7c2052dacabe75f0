"""Approval policies, call-time gates, budgets and estimates: six task columns.

* ``gate``: what the decision the task waits for requires (the policy rule that asked for it,
  the roles that may decide, how many distinct approvers, what happens on expiry); null when no
  decision is pending or no rule applied.
* ``gate_expires_at``: when that decision expires (indexed: the expiry sweep reads it).
* ``usage``: tokens, cost, LLM and tool calls spent so far (written with each LLM call's record).
* ``budget``: the task's effective budget (config defaults, overridden by the matching rule).
* ``estimate``: the current plan version's estimate (tokens, cost, wall time).
* ``submitter_roles``: the submitter's roles when it submitted (policy rules may match them).

On PostgreSQL, ``agent_runtime_apply_v2`` (0004, 0005) is redefined to set the new columns.

Revision ID: 0006
Revises: 0005
"""

import importlib
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"

_V2: Any = importlib.import_module("agent_runtime.store.migrations.versions.0004_apply_v2")
_IDENTITY: Any = importlib.import_module("agent_runtime.store.migrations.versions.0005_identity")
NEW_TASK_COLUMNS: dict[str, str] = {
    "gate": "json",
    "gate_expires_at": "ts",
    "usage": "json",
    "budget": "json",
    "estimate": "json",
    "submitter_roles": "json",
}
TASK_COLUMNS: dict[str, str] = {**_V2.TASK_COLUMNS, **NEW_TASK_COLUMNS}
STEP_COLUMNS: dict[str, str] = _V2.STEP_COLUMNS
CALL_COLUMNS: dict[str, str] = _V2.CALL_COLUMNS
NEW_CALL_COLUMNS: dict[str, str] = _V2.NEW_CALL_COLUMNS
_ANCHOR = "        updated_at = v_now,\n        last_seq = last_seq + v_n"


def _function() -> str:
    text: str = _IDENTITY._function()
    assert _ANCHOR in text, _ANCHOR
    return text.replace(_ANCHOR, "        " + _V2._sets(NEW_TASK_COLUMNS, "s", 8) + ",\n" + _ANCHOR)


JSON_TYPE = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("gate", JSON_TYPE, nullable=True))
        batch.add_column(sa.Column("gate_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("usage", JSON_TYPE, nullable=True))
        batch.add_column(sa.Column("budget", JSON_TYPE, nullable=True))
        batch.add_column(sa.Column("estimate", JSON_TYPE, nullable=True))
        batch.add_column(sa.Column("submitter_roles", JSON_TYPE, nullable=True))
    op.create_index("ix_tasks_gate_expires_at", "tasks", ["gate_expires_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_function())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_IDENTITY._function())
    op.drop_index("ix_tasks_gate_expires_at", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        for name in reversed(NEW_TASK_COLUMNS):
            batch.drop_column(name)
