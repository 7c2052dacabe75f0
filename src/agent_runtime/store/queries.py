"""Reads: plain functions over a SQLAlchemy ``Connection``, shared by both backends.

Hot reads use kept statements (built once, named parameters; see :mod:`agent_runtime.store.prepared`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from agent_runtime.domain.events import Event
from agent_runtime.domain.records import (
    ApprovalRecord,
    PlanVersionRecord,
    StepRecord,
    StepUsage,
    TaskRecord,
    ToolCallRecord,
)
from agent_runtime.domain.states import TaskStatus
from agent_runtime.errors import NotFoundError
from agent_runtime.store import rows
from agent_runtime.store import schema as t
from agent_runtime.store.prepared import execute

ExecutionState = tuple[TaskRecord, PlanVersionRecord | None, list[StepRecord], list[ToolCallRecord]]


def task(conn: Connection, task_id: str, *, for_update: bool = False) -> TaskRecord:
    row = execute(conn, _TASK_FOR_UPDATE if for_update else _TASK, {"id": task_id}).first()
    if row is None:
        raise NotFoundError(f"task {task_id} not found", details={"task_id": task_id})
    return rows.task(row)


def list_tasks(
    conn: Connection,
    status: TaskStatus | Collection[TaskStatus] | None,
    limit: int,
    cursor: str | None,
    *,
    tenant: str | None = None,
    submitted_by: str | None = None,
    session_id: str | None = None,
) -> list[TaskRecord]:
    """Newest first, up to ``limit`` tasks older than the id ``cursor`` (of ``tenant``/``submitted_by``/
    ``session_id`` if given) in ``status`` (one, or any of several)."""
    stmt = sa.select(t.tasks).order_by(t.tasks.c.id.desc()).limit(limit)
    if isinstance(status, TaskStatus):
        stmt = stmt.where(t.tasks.c.status == status)
    elif status is not None:
        stmt = stmt.where(t.tasks.c.status.in_([str(s) for s in status]))
    if tenant is not None:
        stmt = stmt.where(t.tasks.c.tenant == tenant)
    if submitted_by is not None:
        stmt = stmt.where(t.tasks.c.submitted_by == submitted_by)
    if session_id is not None:
        stmt = stmt.where(t.tasks.c.session_id == session_id)
    if cursor:
        stmt = stmt.where(t.tasks.c.id < cursor)
    return [rows.task(r) for r in conn.execute(stmt).mappings()]


def gates_due(conn: Connection, now: datetime, limit: int) -> list[str]:
    """Ids of tasks waiting on a decision whose expiry has passed, oldest expiry first."""
    stmt = (
        sa.select(t.tasks.c.id)
        .where(t.tasks.c.gate_expires_at <= now)
        .where(t.tasks.c.status.in_([TaskStatus.AWAITING_APPROVAL, TaskStatus.NEEDS_ATTENTION]))
        .order_by(t.tasks.c.gate_expires_at)
        .limit(limit)
    )
    return [r[0] for r in conn.execute(stmt)]


def step_history(conn: Connection, tasks: int) -> list[StepUsage]:
    """The completed steps of the ``tasks`` most recently completed tasks: their tools, the tokens
    of their model calls (``llm_usage`` events), their tool calls and their wall time."""
    recent = conn.execute(
        sa.select(t.tasks.c.id, t.tasks.c.approved_plan_version)
        .where(t.tasks.c.status == TaskStatus.COMPLETED, t.tasks.c.approved_plan_version.is_not(None))
        .order_by(t.tasks.c.finished_at.desc())
        .limit(tasks)
    ).all()
    if not recent:
        return []
    versions = {task_id: version for task_id, version in recent}
    ids = list(versions)
    tools: dict[tuple[str, str], frozenset[str]] = {}
    for row in conn.execute(
        sa.select(t.plan_versions.c.task_id, t.plan_versions.c.version, t.plan_versions.c.plan).where(
            t.plan_versions.c.task_id.in_(ids)
        )
    ):
        if versions.get(row.task_id) == row.version:
            for step in row.plan.get("steps", []):
                tools[(row.task_id, step["id"])] = frozenset(step.get("tools", []))
    tokens: dict[tuple[str, str], list[int]] = {}
    usage = sa.select(t.events.c.task_id, t.events.c.data).where(
        t.events.c.task_id.in_(ids), t.events.c.type == "llm_usage"
    )
    for task_id, data in conn.execute(usage):
        if data.get("step_id"):
            used = tokens.setdefault((task_id, data["step_id"]), [0, 0])
            used[0] += int(data.get("input_tokens") or 0)
            used[1] += int(data.get("output_tokens") or 0)
    calls: dict[tuple[str, str], int] = {}
    for task_id, step_id, count in conn.execute(
        sa.select(t.tool_calls.c.task_id, t.tool_calls.c.step_id, sa.func.count())
        .where(t.tool_calls.c.task_id.in_(ids), t.tool_calls.c.status != "refused")
        .group_by(t.tool_calls.c.task_id, t.tool_calls.c.step_id)
    ):
        calls[(task_id, step_id)] = int(count)
    out: list[StepUsage] = []
    done = sa.select(t.steps).where(t.steps.c.task_id.in_(ids), t.steps.c.status == "completed")
    for step in conn.execute(done).mappings():
        key = (step["task_id"], step["step_id"])
        if versions.get(step["task_id"]) != step["plan_version"] or key not in tools:
            continue
        started, finished = rows.aware(step["started_at"]), rows.aware(step["finished_at"])
        wall = (finished - started).total_seconds() if started and finished else 0.0
        used = tokens.get(key, [0, 0])
        out.append(StepUsage(tools[key], used[0], used[1], wall, calls.get(key, 0)))
    return out


def plan_versions(conn: Connection, task_id: str) -> list[PlanVersionRecord]:
    stmt = sa.select(t.plan_versions).where(t.plan_versions.c.task_id == task_id).order_by(t.plan_versions.c.version)
    return [rows.plan_version(r) for r in conn.execute(stmt).mappings()]


def plan_version(conn: Connection, task_id: str, version: int) -> PlanVersionRecord | None:
    row = execute(conn, _PLAN_VERSION, {"task_id": task_id, "version": version}).first()
    return rows.plan_version(row) if row is not None else None


def steps(conn: Connection, task_id: str, version: int) -> list[StepRecord]:
    return [rows.step(r) for r in execute(conn, _STEPS, {"task_id": task_id, "version": version}).rows]


def tool_calls(conn: Connection, task_id: str, step_id: str | None) -> list[ToolCallRecord]:
    if step_id is None:
        found = execute(conn, _CALLS, {"task_id": task_id})
    else:
        found = execute(conn, _STEP_CALLS, {"task_id": task_id, "step_id": step_id})
    return [rows.tool_call(r) for r in found.rows]


def execution_state(conn: Connection, task_id: str) -> ExecutionState:
    """Everything a worker needs to start or resume execution, in one read."""
    record = task(conn, task_id)
    version = record.approved_plan_version
    if version is None:
        return record, None, [], []
    return record, plan_version(conn, task_id, version), steps(conn, task_id, version), tool_calls(conn, task_id, None)


def approvals(conn: Connection, task_id: str) -> list[ApprovalRecord]:
    stmt = sa.select(t.approvals).where(t.approvals.c.task_id == task_id).order_by(t.approvals.c.id)
    return [rows.approval(r) for r in conn.execute(stmt).mappings()]


def events_after(conn: Connection, task_id: str, after: int, limit: int) -> list[Event]:
    params = {"task_id": task_id, "after": after, "limit": limit}
    return [rows.event(r) for r in execute(conn, _EVENTS_AFTER, params).rows]


def count_by_status(conn: Connection) -> dict[str, int]:
    stmt = sa.select(t.tasks.c.status, sa.func.count()).group_by(t.tasks.c.status)
    return {status: int(n) for status, n in conn.execute(stmt).all()}


# Kept statements (see ``store.prepared``): built once, with named parameters.
_TASK = sa.select(t.tasks).where(t.tasks.c.id == sa.bindparam("id"))
_TASK_FOR_UPDATE = _TASK.with_for_update()
_PLAN_VERSION = sa.select(t.plan_versions).where(
    t.plan_versions.c.task_id == sa.bindparam("task_id"), t.plan_versions.c.version == sa.bindparam("version")
)
_STEPS = (
    sa.select(t.steps)
    .where(t.steps.c.task_id == sa.bindparam("task_id"), t.steps.c.plan_version == sa.bindparam("version"))
    .order_by(t.steps.c.position)
)
_CALL_ORDER = (t.tool_calls.c.turn, t.tool_calls.c.call_index, t.tool_calls.c.started_at)
_CALLS = sa.select(t.tool_calls).where(t.tool_calls.c.task_id == sa.bindparam("task_id")).order_by(*_CALL_ORDER)
_STEP_CALLS = (
    sa.select(t.tool_calls)
    .where(t.tool_calls.c.task_id == sa.bindparam("task_id"), t.tool_calls.c.step_id == sa.bindparam("step_id"))
    .order_by(*_CALL_ORDER)
)
_EVENTS_AFTER = (
    sa.select(t.events)
    .where(t.events.c.task_id == sa.bindparam("task_id"), t.events.c.seq > sa.bindparam("after"))
    .order_by(t.events.c.seq)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
