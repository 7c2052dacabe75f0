"""Table definitions (SQLAlchemy Core). Migrations in ``migrations/`` create exactly these.

Columns that may hold free text (model output, tool names, client text) are ``Escaped*`` types:
NUL-safe on PostgreSQL (``store/pg_text.py``), plain text on SQLite."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from agent_runtime.store.pg_text import EscapedString, EscapedText

metadata = sa.MetaData()

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("prompt", EscapedText(), nullable=False),
    sa.Column("metadata", JSONType, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("current_plan_version", sa.Integer),
    sa.Column("approved_plan_version", sa.Integer),
    sa.Column("result", JSONType),
    sa.Column("error", JSONType),
    sa.Column("revision_feedback", EscapedText()),
    sa.Column("lease_owner", sa.String(200)),
    sa.Column("lease_expires_at", TS),
    sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("finished_at", TS),
    # Identity (migration 0005): set once when the task is created, never updated.
    sa.Column("tenant", EscapedString(200), nullable=False, server_default="default"),
    sa.Column("submitted_by", EscapedString(200)),
    # Policies, gates and budgets (migration 0006).
    sa.Column("gate", JSONType),
    sa.Column("gate_expires_at", TS),
    sa.Column("usage", JSONType),
    sa.Column("budget", JSONType),
    sa.Column("estimate", JSONType),
    sa.Column("submitter_roles", JSONType),
    # Agent profiles and sessions (migration 0008): set when the task is created, never updated.
    sa.Column("profile", sa.String(64)),
    sa.Column("profile_hash", sa.String(80)),
    sa.Column("profile_content", JSONType),
    sa.Column("session_id", sa.String(128)),
)
sa.Index("ix_tasks_session_id", tasks.c.session_id, tasks.c.id)
sa.Index("ix_tasks_gate_expires_at", tasks.c.gate_expires_at)
sa.Index("ix_tasks_tenant_id", tasks.c.tenant, tasks.c.id)
sa.Index("ix_tasks_status_lease", tasks.c.status, tasks.c.lease_expires_at)
sa.Index("ix_tasks_finished_at", tasks.c.finished_at)

plan_versions = sa.Table(
    "plan_versions",
    metadata,
    sa.Column("task_id", sa.String(40), sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("content_hash", sa.String(80), nullable=False),
    sa.Column("plan", JSONType, nullable=False),
    sa.Column("author", EscapedString(200), nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("task_id", sa.String(40), sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("plan_version", sa.Integer, primary_key=True),
    sa.Column("step_id", sa.String(40), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("output", EscapedText()),
    sa.Column("error", JSONType),
    sa.Column("started_at", TS),
    sa.Column("finished_at", TS),
)

tool_calls = sa.Table(
    "tool_calls",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("task_id", sa.String(40), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("plan_version", sa.Integer, nullable=False),
    sa.Column("step_id", sa.String(40), nullable=False),
    sa.Column("turn", sa.Integer, nullable=False),
    sa.Column("call_index", sa.Integer, nullable=False),
    sa.Column("tool_name", EscapedString(200), nullable=False),
    sa.Column("arguments", JSONType, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("result", JSONType),
    sa.Column("is_error", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("lease_epoch", sa.Integer, nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
)
sa.Index("ix_tool_calls_task_step", tool_calls.c.task_id, tool_calls.c.step_id)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String(40), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("plan_version", sa.Integer, nullable=False),
    sa.Column("decision", sa.String(32), nullable=False),
    sa.Column("actor", EscapedString(200)),
    sa.Column("reason", EscapedText()),
    sa.Column("created_at", TS, nullable=False),
    # Identity (migration 0005): the approver's roles and the plan content hash the decision names.
    sa.Column("actor_roles", JSONType),
    sa.Column("content_hash", sa.String(80)),
)
sa.Index("ix_approvals_task", approvals.c.task_id)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("tenant", EscapedString(200), nullable=False),
    sa.Column("roles", JSONType, nullable=False),
    sa.Column("description", sa.String(400)),
    sa.Column("created_by", sa.String(200)),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS),
    sa.Column("revoked_at", TS),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("task_id", sa.String(40), sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("type", sa.String(48), nullable=False),
    sa.Column("data", JSONType, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

housekeeping = sa.Table(
    "housekeeping_leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(200)),
    sa.Column("expires_at", TS),
)

# Webhooks (migration ``*_webhooks.py``). A trigger on ``events`` copies every notifiable event (its key and
# type; the payload stays in ``events``) into the outbox in the transaction that stores it; the
# deliverer fans each outbox row out to one delivery per subscribed endpoint (``dispatched_at``
# set) and sends the deliveries (services/webhooks.py). Both go with their task (FK cascade).
webhook_outbox = sa.Table(
    "webhook_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String(40), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("type", sa.String(48), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("dispatched_at", TS),
    sa.UniqueConstraint("task_id", "seq", name="uq_webhook_outbox_event"),
)
sa.Index(
    "ix_webhook_outbox_undispatched",
    webhook_outbox.c.id,
    sqlite_where=webhook_outbox.c.dispatched_at.is_(None),
    postgresql_where=webhook_outbox.c.dispatched_at.is_(None),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("outbox_id", sa.Integer, sa.ForeignKey("webhook_outbox.id", ondelete="CASCADE"), nullable=False),
    sa.Column("task_id", sa.String(40), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("type", sa.String(48), nullable=False),
    sa.Column("endpoint_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", TS, nullable=False),
    sa.Column("last_attempt_at", TS),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.String(500)),
    sa.Column("delivered_at", TS),
    sa.Column("claim_owner", sa.String(200)),
    sa.Column("claim_expires_at", TS),
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("outbox_id", "endpoint_id", name="uq_webhook_deliveries_endpoint"),
)
sa.Index("ix_webhook_deliveries_due", webhook_deliveries.c.status, webhook_deliveries.c.next_attempt_at)
sa.Index("ix_webhook_deliveries_task", webhook_deliveries.c.task_id, webhook_deliveries.c.id)

# The tool catalogue (migration ``*_tool_catalogue.py``): each server's last discovery, served at
# start-up while a background discovery refreshes it (tools/catalog.py, store/catalogue.py).
tool_catalogue = sa.Table(
    "tool_catalogue",
    metadata,
    sa.Column("server_id", sa.String(64), primary_key=True),
    sa.Column("entry_hash", sa.String(64), nullable=False),
    sa.Column("tools", JSONType, nullable=False),
    sa.Column("discovered_at", TS),
    sa.Column("attempted_at", TS, nullable=False),
    sa.Column("error", EscapedText()),
)
