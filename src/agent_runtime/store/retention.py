"""Retention: deleting finished tasks with everything they own, and the singleton housekeeping
lease that lets one replica at a time sweep."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection

from agent_runtime.store import rows
from agent_runtime.store import schema as t


def take_housekeeping_lease(conn: Connection, name: str, owner: str, seconds: float) -> bool:
    """Take or renew the named singleton lease; False while another owner holds it."""
    now = rows.utcnow()
    expires = now + timedelta(seconds=seconds)
    row = conn.execute(sa.select(t.housekeeping).where(t.housekeeping.c.name == name)).mappings().first()
    if row is None:
        conn.execute(t.housekeeping.insert().values(name=name, owner=owner, expires_at=expires))
        return True
    current = rows.aware(row["expires_at"])
    if row["owner"] != owner and current is not None and current > now:
        return False
    conn.execute(t.housekeeping.update().where(t.housekeeping.c.name == name).values(owner=owner, expires_at=expires))
    return True


def prune_finished(conn: Connection, older_than: datetime) -> int:
    """Delete tasks finished before ``older_than`` (and their plans, steps, calls, approvals, events)."""
    ids_q = sa.select(t.tasks.c.id).where(t.tasks.c.finished_at.is_not(None), t.tasks.c.finished_at < older_than)
    ids = [r[0] for r in conn.execute(ids_q).all()]
    if ids:
        for table in (t.events, t.tool_calls, t.steps, t.approvals, t.plan_versions):
            conn.execute(table.delete().where(table.c.task_id.in_(ids)))
        conn.execute(t.tasks.delete().where(t.tasks.c.id.in_(ids)))
    return len(ids)
