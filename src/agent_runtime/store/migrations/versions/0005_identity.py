"""Identity and access: tasks belong to a tenant and a submitter, approvals record the approver's
roles and the plan hash they name, and API keys are stored (hashed).

Tasks created before this revision belong to tenant ``default`` and have no recorded submitter.
On PostgreSQL, ``agent_runtime_apply_v2`` (0004) is redefined to write the new columns: a new task's
``tenant`` and ``submitted_by``, an approval's ``actor_roles`` and ``content_hash``.

Revision ID: 0005
Revises: 0004
"""

import importlib
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"

_V2: Any = importlib.import_module("agent_runtime.store.migrations.versions.0004_apply_v2")
_EDITS = (
    (
        """        INSERT INTO tasks (id, status, prompt, metadata, created_at, updated_at, lease_epoch, last_seq)
        VALUES (v_task, n->>'status', n->>'prompt', n->'metadata', (n->>'created_at')::timestamptz,
                (n->>'created_at')::timestamptz, 0, 0);""",
        """        INSERT INTO tasks (id, status, prompt, metadata, created_at, updated_at, lease_epoch, last_seq,
                           tenant, submitted_by)
        VALUES (v_task, n->>'status', n->>'prompt', n->'metadata', (n->>'created_at')::timestamptz,
                (n->>'created_at')::timestamptz, 0, 0, coalesce(n->>'tenant', 'default'), n->>'submitted_by');""",
    ),
    (
        """            INSERT INTO approvals (task_id, plan_version, decision, actor, reason, created_at)
            VALUES (v_task, (o->>'v')::integer, o->>'decision', o->>'actor', o->>'reason', v_now);""",
        """            INSERT INTO approvals (task_id, plan_version, decision, actor, reason, created_at,
                                   actor_roles, content_hash)
            VALUES (v_task, (o->>'v')::integer, o->>'decision', o->>'actor', o->>'reason', v_now,
                    o->'roles', o->>'hash');""",
    ),
)


def _function() -> str:
    text: str = _V2.FUNCTION
    for old, new in _EDITS:
        assert old in text, old
        text = text.replace(old, new)
    return text


JSON_TYPE = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("tasks", sa.Column("tenant", sa.String(length=200), nullable=False, server_default="default"))
    op.add_column("tasks", sa.Column("submitted_by", sa.String(length=200), nullable=True))
    op.create_index("ix_tasks_tenant_id", "tasks", ["tenant", "id"])
    op.add_column("approvals", sa.Column("actor_roles", JSON_TYPE, nullable=True))
    op.add_column("approvals", sa.Column("content_hash", sa.String(length=80), nullable=True))
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("roles", JSON_TYPE, nullable=False),
        sa.Column("description", sa.String(length=400), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_function())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_V2.FUNCTION)
    op.drop_table("api_keys")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("content_hash")
        batch.drop_column("actor_roles")
    op.drop_index("ix_tasks_tenant_id", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("submitted_by")
        batch.drop_column("tenant")
