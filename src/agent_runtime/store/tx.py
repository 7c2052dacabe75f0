"""A fenced, event-writing transaction on one task.

Everything a state change writes (task fields, plan versions, steps, tool calls, approvals and the
events that describe them) goes through :class:`TaskTx`. The methods only *buffer* statements;
:meth:`TaskTx.flush` writes them all, in one synchronous burst, inside the store's transaction.
The first statement of the burst is the task row update, conditional on the lease (epoch and owner) and the
sequence number the transaction started from, so a worker that lost its lease has its whole
transaction refused by the database before anything else is written.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Executable

from agent_runtime.domain.events import Event, EventType
from agent_runtime.domain.plan import Plan
from agent_runtime.domain.records import Lease, TaskRecord
from agent_runtime.domain.states import LEASED, TERMINAL, StepStatus, TaskStatus, ToolCallStatus, check_transition
from agent_runtime.store import schema as t
from agent_runtime.store.rows import new_id


@lru_cache(maxsize=64)
def _step_update(fields: tuple[str, ...]) -> sa.Update:
    return (
        t.steps.update()
        .where(t.steps.c.task_id == sa.bindparam("k_task"))
        .where(t.steps.c.plan_version == sa.bindparam("k_version"))
        .where(t.steps.c.step_id == sa.bindparam("k_step"))
        .values({name: sa.bindparam(name) for name in fields})
    )


@lru_cache(maxsize=128)
def _task_update(fields: tuple[str, ...], fenced: bool) -> sa.Update:
    """The task row update: conditional on the sequence number it started from (and the lease epoch)."""
    stmt = (
        t.tasks.update()
        .where(t.tasks.c.id == sa.bindparam("k_id"))
        .where(t.tasks.c.last_seq == sa.bindparam("k_seq"))
        .values({name: sa.bindparam(name) for name in fields})
    )
    if fenced:
        stmt = stmt.where(t.tasks.c.lease_epoch == sa.bindparam("k_epoch"))
        stmt = stmt.where(t.tasks.c.lease_owner == sa.bindparam("k_owner"))
    return stmt


@lru_cache(maxsize=64)
def _call_update(fields: tuple[str, ...]) -> sa.Update:
    return (
        t.tool_calls.update()
        .where(t.tool_calls.c.id == sa.bindparam("k_id"))
        .where(t.tool_calls.c.task_id == sa.bindparam("k_task"))
        .values({name: sa.bindparam(name) for name in fields})
    )


class TaskTx:
    """Writes for one task inside one transaction. Obtain it from ``TaskStore.transaction``."""

    def __init__(self, task: TaskRecord, now: datetime) -> None:
        self.task = task
        self.started_from = task
        self.now = now
        self._ops: list[tuple[Executable, list[dict[str, Any]] | None]] = []
        self._fields: dict[str, Any] = {}
        self._events: list[tuple[str, dict[str, Any]]] = []
        self.wakes_workers = False
        """Set when the change makes the task claimable, so idle workers are woken."""

    # -- task row ------------------------------------------------------------------------------

    def transition(self, target: TaskStatus, *, action: str | None = None, **fields: Any) -> None:
        """Change status (checked against the state table) and set other task fields."""
        check_transition(self.task.status, target, action=action)
        self.update(status=target, **fields)
        if target in TERMINAL:
            self._fields["finished_at"] = self.now
        if target not in LEASED:
            # Only planning and executing hold a lease; anything else waits as a row.
            self._fields.update(lease_owner=None, lease_expires_at=None)
        if target in (TaskStatus.QUEUED, TaskStatus.APPROVED):
            self.wakes_workers = True

    def update(self, **fields: Any) -> None:
        self._fields.update(fields)
        known = {k: v for k, v in fields.items() if k in TaskRecord.__dataclass_fields__}
        self.task = replace(self.task, **known)

    def emit(self, type_: EventType | str, data: dict[str, Any] | None = None) -> None:
        self._events.append((str(type_), data or {}))

    # -- plans and steps ---------------------------------------------------------------------

    def add_plan_version(self, plan: Plan, author: str) -> int:
        version = (self.task.current_plan_version or 0) + 1
        self._op(
            t.plan_versions.insert().values(
                task_id=self.task.id,
                version=version,
                content_hash=plan.content_hash(),
                plan=plan.model_dump(mode="json"),
                author=author,
                created_at=self.now,
            )
        )
        self._op(
            t.steps.insert(),
            [
                {
                    "task_id": self.task.id,
                    "plan_version": version,
                    "step_id": step.id,
                    "position": i,
                    "status": StepStatus.PENDING,
                }
                for i, step in enumerate(plan.steps)
            ],
        )
        self.update(current_plan_version=version)
        return version

    def update_step(self, version: int, step_id: str, **fields: Any) -> None:
        params = {"k_task": self.task.id, "k_version": version, "k_step": step_id, **fields}
        self._op(_step_update(tuple(sorted(fields))), [params])

    def update_steps_where(self, version: int, statuses: set[StepStatus], **fields: Any) -> None:
        self._op(
            t.steps.update()
            .where(t.steps.c.task_id == self.task.id)
            .where(t.steps.c.plan_version == version)
            .where(t.steps.c.status.in_([str(s) for s in statuses]))
            .values(**fields)
        )

    # -- tool calls and approvals -------------------------------------------------------------

    def add_tool_call(
        self,
        *,
        step_id: str,
        turn: int,
        call_index: int,
        tool_name: str,
        arguments: dict[str, Any],
        status: ToolCallStatus = ToolCallStatus.STARTED,
        result: dict[str, Any] | None = None,
        call_id: str | None = None,
    ) -> str:
        call_id = call_id or new_id("call")
        row = {
            "id": call_id,
            "task_id": self.task.id,
            "plan_version": self.task.approved_plan_version or 0,
            "step_id": step_id,
            "turn": turn,
            "call_index": call_index,
            "tool_name": tool_name,
            "arguments": arguments,
            "status": status,
            "result": result,
            "is_error": False,
            "lease_epoch": self.task.lease_epoch,
            "started_at": self.now,
            "finished_at": None if status == ToolCallStatus.STARTED else self.now,
        }
        self._op(t.tool_calls.insert(), [row])
        return call_id

    def update_tool_call(self, call_id: str, **fields: Any) -> None:
        params = {"k_id": call_id, "k_task": self.task.id, **fields}
        self._op(_call_update(tuple(sorted(fields))), [params])

    def update_tool_calls_where(self, statuses: set[ToolCallStatus], **fields: Any) -> None:
        self._op(
            t.tool_calls.update()
            .where(t.tool_calls.c.task_id == self.task.id)
            .where(t.tool_calls.c.status.in_([str(s) for s in statuses]))
            .values(**fields)
        )

    def add_approval(self, version: int, decision: str, actor: str | None, reason: str | None) -> None:
        self._op(
            t.approvals.insert().values(
                task_id=self.task.id,
                plan_version=version,
                decision=decision,
                actor=actor,
                reason=reason,
                created_at=self.now,
            )
        )

    def _op(self, statement: Executable, rows: list[dict[str, Any]] | None = None) -> None:
        self._ops.append((statement, rows))

    # -- commit ---------------------------------------------------------------------------------

    def flush(self, conn: Connection, fence: Lease | None) -> tuple[list[Event], bool]:
        """Write the task row (fenced), then every buffered statement, then the events.

        Returns (events, ok); ``ok`` is False when the fence refused the write (nothing was written).
        """
        first = self.task.last_seq + 1
        stored = [
            Event(task_id=self.task.id, seq=first + i, type=typ, data=data, created_at=self.now)
            for i, (typ, data) in enumerate(self._events)
        ]
        values = dict(self._fields)
        values["updated_at"] = self.now
        values["last_seq"] = self.task.last_seq + len(stored)
        stmt = _task_update(tuple(sorted(values)), fence is not None)
        params = {"k_id": self.task.id, "k_seq": self.started_from.last_seq, **values}
        if fence is not None:
            params.update(k_epoch=fence.epoch, k_owner=fence.owner)
        if conn.execute(stmt, params).rowcount != 1:
            return [], False
        for statement, rows in self._ops:
            if rows is None:
                conn.execute(statement)
            elif rows:
                conn.execute(statement, rows)
        if stored:
            conn.execute(
                t.events.insert(),
                [
                    {"task_id": e.task_id, "seq": e.seq, "type": e.type, "data": e.data, "created_at": e.created_at}
                    for e in stored
                ],
            )
        self.task = replace(self.task, last_seq=values["last_seq"], updated_at=self.now)
        return stored, True
