"""Agent profiles and sessions: four task columns, set when the task is created.

* ``profile``, ``profile_hash``, ``profile_content``: the agent profile the task runs under, as it
  was when the task was submitted (a reload of the profiles file never changes it).
* ``session_id``: the client's conversation the task belongs to (indexed with ``id``: a session's
  tasks are read in id order).

Tasks created before this revision have none (they run under the built-in profile).
On PostgreSQL, ``agent_runtime_apply_v2`` (0004-0006) is redefined to set the new columns.

Revision ID: 0009
Revises: 0008
"""

import importlib
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"

_V2: Any = importlib.import_module("agent_runtime.store.migrations.versions.0004_apply_v2")
_POLICY: Any = importlib.import_module("agent_runtime.store.migrations.versions.0006_policy")
NEW_TASK_COLUMNS: dict[str, str] = {
    "profile": "text",
    "profile_hash": "text",
    "profile_content": "json",
    "session_id": "text",
}
TASK_COLUMNS: dict[str, str] = {**_POLICY.TASK_COLUMNS, **NEW_TASK_COLUMNS}
STEP_COLUMNS: dict[str, str] = _POLICY.STEP_COLUMNS
CALL_COLUMNS: dict[str, str] = _POLICY.CALL_COLUMNS
NEW_CALL_COLUMNS: dict[str, str] = _POLICY.NEW_CALL_COLUMNS
_ANCHOR = "        updated_at = v_now,\n        last_seq = last_seq + v_n"


def _function() -> str:
    text: str = _POLICY._function()
    assert _ANCHOR in text, _ANCHOR
    return text.replace(_ANCHOR, "        " + _V2._sets(NEW_TASK_COLUMNS, "s", 8) + ",\n" + _ANCHOR)


JSON_TYPE = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("profile", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("profile_hash", sa.String(length=80), nullable=True))
        batch.add_column(sa.Column("profile_content", JSON_TYPE, nullable=True))
        batch.add_column(sa.Column("session_id", sa.String(length=128), nullable=True))
    op.create_index("ix_tasks_session_id", "tasks", ["session_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_function())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POLICY._function())
    op.drop_index("ix_tasks_session_id", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        for name in reversed(NEW_TASK_COLUMNS):
            batch.drop_column(name)
