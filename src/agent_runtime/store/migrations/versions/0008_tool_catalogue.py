"""Tool catalogue: the last discovery of each tool server, so a start serves it at once.

One row per registry entry id: the hash of the entry's launch configuration the tools were listed
with, the tool list (JSON), when it was last listed successfully, when discovery was last tried and
its error (null when it succeeded). Replicas on PostgreSQL share the table (last write wins).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tool_catalogue",
        sa.Column("server_id", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.Column("tools", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("discovered_at", TS, nullable=True),
        sa.Column("attempted_at", TS, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("server_id"),
    )


def downgrade() -> None:
    op.drop_table("tool_catalogue")
