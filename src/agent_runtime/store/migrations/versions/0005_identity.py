"""Identity and access: tasks belong to a tenant and a submitter, approvals record the approver's
roles and the plan hash they name, and API keys are stored (hashed).

Tasks created before this revision belong to tenant ``default`` and have no recorded submitter.

Revision ID: 0005
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0003"

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


def downgrade() -> None:
    op.drop_table("api_keys")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("content_hash")
        batch.drop_column("actor_roles")
    op.drop_index("ix_tasks_tenant_id", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("submitted_by")
        batch.drop_column("tenant")
