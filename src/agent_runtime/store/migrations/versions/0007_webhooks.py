"""Webhooks: an outbox filled by a trigger on ``events``, and one delivery row per endpoint.

The trigger ``agent_runtime_webhook_outbox`` copies each stored event whose type can be sent to a
webhook (``domain.notifications.NOTIFIABLE_EVENTS`` as of this revision) into ``webhook_outbox``
in the same transaction, whichever write path stored it (SQLite's kept statements, PostgreSQL's
``agent_runtime_apply_v2``): an event is never stored without its outbox row, and neither write
path had to change. The deliverer (services/webhooks.py) fans outbox rows out to
``webhook_deliveries`` and sends them.

Events stored before this revision are not sent.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"

TYPES = (
    "approval_required",
    "call_approval_required",
    "needs_attention",
    "budget_exceeded",
    "approval_expired",
    "task_completed",
    "task_failed",
    "task_cancelled",
    "task_rejected",
)
_IN = ", ".join(f"'{t}'" for t in TYPES)
_COPY = (
    "INSERT INTO webhook_outbox (task_id, seq, type, created_at) "
    "VALUES (NEW.task_id, NEW.seq, NEW.type, NEW.created_at)"
)

SQLITE_TRIGGER = f"""
CREATE TRIGGER agent_runtime_webhook_outbox AFTER INSERT ON events
WHEN NEW.type IN ({_IN})
BEGIN
    {_COPY};
END
"""

PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION agent_runtime_webhook_outbox() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    {_COPY};
    RETURN NULL;
END
$fn$
"""

PG_TRIGGER = f"""
CREATE TRIGGER agent_runtime_webhook_outbox AFTER INSERT ON events
FOR EACH ROW WHEN (NEW.type IN ({_IN}))
EXECUTE FUNCTION agent_runtime_webhook_outbox()
"""

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=48), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("dispatched_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "seq", name="uq_webhook_outbox_event"),
    )
    op.create_index(
        "ix_webhook_outbox_undispatched",
        "webhook_outbox",
        ["id"],
        sqlite_where=sa.text("dispatched_at IS NULL"),
        postgresql_where=sa.text("dispatched_at IS NULL"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=48), nullable=False),
        sa.Column("endpoint_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_attempt_at", TS, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("claim_owner", sa.String(length=200), nullable=True),
        sa.Column("claim_expires_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["outbox_id"], ["webhook_outbox.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("outbox_id", "endpoint_id", name="uq_webhook_deliveries_endpoint"),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_deliveries_task", "webhook_deliveries", ["task_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS agent_runtime_webhook_outbox"
        + (" ON events" if op.get_bind().dialect.name == "postgresql" else "")
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS agent_runtime_webhook_outbox()")
    op.drop_index("ix_webhook_deliveries_task", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhook_outbox_undispatched", table_name="webhook_outbox")
    op.drop_table("webhook_outbox")
