"""Initial schema: tasks, plan versions, steps, tool calls, approvals, events, housekeeping leases.

Revision ID: 0001
Revises:
"""

from alembic import op

from agent_runtime.store.schema import metadata

revision = "0001"
down_revision = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
