"""SQLite: a :class:`~agent_runtime.store.tx.TaskTx` written as kept statements, inline.

Each operation kind maps to one statement built once per set of columns (cached) and run through
:func:`agent_runtime.store.prepared.execute`, straight on the pysqlite connection. The order is
the one :mod:`agent_runtime.store.tx` describes: insert (new task), the fenced row update
``RETURNING`` the row (events numbered from its ``last_seq``), the operations, the events.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from agent_runtime.domain.events import Event
from agent_runtime.domain.records import Lease
from agent_runtime.domain.states import StepStatus
from agent_runtime.store import rows
from agent_runtime.store import schema as t
from agent_runtime.store.prepared import execute
from agent_runtime.store.tx import (
    CallsWhere,
    CallUpdate,
    NewApproval,
    NewCall,
    NewPlan,
    Op,
    StepsWhere,
    StepUpdate,
    TaskTx,
)

_TASK_INSERT = t.tasks.insert()
_CALL_INSERT = t.tool_calls.insert()
_EVENTS_INSERT = t.events.insert()
_PLAN_INSERT = t.plan_versions.insert()
_STEPS_INSERT = t.steps.insert()
_APPROVAL_INSERT = t.approvals.insert()


def write(conn: Connection, tx: TaskTx, fence: Lease | None) -> list[Event] | None:
    """Write ``tx``; its events as stored, or None when the fence refused (nothing written)."""
    if not tx.changed:
        return []
    task = tx.started_from
    if tx.new:
        row = {
            "id": task.id, "status": task.status, "prompt": task.prompt, "metadata": task.metadata,
            "created_at": task.created_at, "updated_at": task.updated_at, "lease_epoch": 0, "last_seq": 0,
            "tenant": task.tenant, "submitted_by": task.submitted_by,
        }  # fmt: skip
        execute(conn, _TASK_INSERT, row)
    values = {**tx.fields, "updated_at": tx.now}
    params = {"k_id": task.id, "k_n": len(tx.events), **values}
    if fence is not None:
        params.update(k_epoch=fence.epoch, k_owner=fence.owner)
    returned = execute(conn, _task_update(tuple(sorted(values)), fence is not None), params).first()
    if returned is None:
        return None
    for op in tx.ops:
        _write_op(conn, task.id, tx, op)
    events = tx.committed(rows.task(returned))
    if events:
        execute(
            conn,
            _EVENTS_INSERT,
            [
                {"task_id": e.task_id, "seq": e.seq, "type": e.type, "data": e.data, "created_at": e.created_at}
                for e in events
            ],
        )
    return events


def _write_op(conn: Connection, task_id: str, tx: TaskTx, op: Op) -> None:
    match op:
        case StepUpdate(version, step_id, fields):
            params = {"k_task": task_id, "k_version": version, "k_step": step_id, **fields}
            execute(conn, _step_update(tuple(sorted(fields))), params)
        case NewCall(row):
            execute(conn, _CALL_INSERT, [row])
        case CallUpdate(call_id, fields):
            execute(conn, _call_update(tuple(sorted(fields))), {"k_id": call_id, "k_task": task_id, **fields})
        case NewPlan(version, content_hash, plan, author, step_ids):
            execute(
                conn,
                _PLAN_INSERT,
                [{"task_id": task_id, "version": version, "content_hash": content_hash, "plan": plan,
                  "author": author, "created_at": tx.now}],
            )  # fmt: skip
            if step_ids:
                execute(
                    conn,
                    _STEPS_INSERT,
                    [
                        {"task_id": task_id, "plan_version": version, "step_id": step_id, "position": i,
                         "status": StepStatus.PENDING}
                        for i, step_id in enumerate(step_ids)
                    ],
                )  # fmt: skip
        case StepsWhere(version, statuses, fields):
            params = {"k_task": task_id, "k_version": version, **fields}
            execute(conn, _steps_where(statuses, tuple(sorted(fields))), params)
        case CallsWhere(statuses, fields):
            execute(conn, _calls_where(statuses, tuple(sorted(fields))), {"k_task": task_id, **fields})
        case NewApproval(version, decision, actor, reason, actor_roles, content_hash):
            approval: dict[str, Any] = {
                "task_id": task_id, "plan_version": version, "decision": decision, "actor": actor,
                "reason": reason, "created_at": tx.now, "actor_roles": actor_roles, "content_hash": content_hash,
            }  # fmt: skip
            execute(conn, _APPROVAL_INSERT, [approval])


def _sets(fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: sa.bindparam(name) for name in fields}


@lru_cache(maxsize=128)
def _task_update(fields: tuple[str, ...], fenced: bool) -> sa.Update:
    """The task row update: the fields, and ``:k_n`` more sequence numbers; fenced by the lease
    (epoch and owner) only; returns the row as stored."""
    stmt = (
        t.tasks.update()
        .where(t.tasks.c.id == sa.bindparam("k_id"))
        .values({**_sets(fields), "last_seq": t.tasks.c.last_seq + sa.bindparam("k_n", type_=sa.Integer)})
        .returning(*t.tasks.c)
    )
    if fenced:
        stmt = stmt.where(t.tasks.c.lease_epoch == sa.bindparam("k_epoch"))
        stmt = stmt.where(t.tasks.c.lease_owner == sa.bindparam("k_owner"))
    return stmt


@lru_cache(maxsize=64)
def _step_update(fields: tuple[str, ...]) -> sa.Update:
    return (
        t.steps.update()
        .where(t.steps.c.task_id == sa.bindparam("k_task"))
        .where(t.steps.c.plan_version == sa.bindparam("k_version"))
        .where(t.steps.c.step_id == sa.bindparam("k_step"))
        .values(_sets(fields))
    )


@lru_cache(maxsize=64)
def _call_update(fields: tuple[str, ...]) -> sa.Update:
    return (
        t.tool_calls.update()
        .where(t.tool_calls.c.id == sa.bindparam("k_id"))
        .where(t.tool_calls.c.task_id == sa.bindparam("k_task"))
        .values(_sets(fields))
    )


@lru_cache(maxsize=32)
def _steps_where(statuses: tuple[str, ...], fields: tuple[str, ...]) -> sa.Update:
    return (
        t.steps.update()
        .where(t.steps.c.task_id == sa.bindparam("k_task"))
        .where(t.steps.c.plan_version == sa.bindparam("k_version"))
        .where(sa.or_(*(t.steps.c.status == status for status in statuses)))
        .values(_sets(fields))
    )


@lru_cache(maxsize=32)
def _calls_where(statuses: tuple[str, ...], fields: tuple[str, ...]) -> sa.Update:
    return (
        t.tool_calls.update()
        .where(t.tool_calls.c.task_id == sa.bindparam("k_task"))
        .where(sa.or_(*(t.tool_calls.c.status == status for status in statuses)))
        .values(_sets(fields))
    )
