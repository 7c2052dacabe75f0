"""A fenced, event-writing transaction on one task: the typed operations it buffers.

Everything a state change writes (task fields, plan versions, steps, tool calls, approvals and the
events that describe them) goes through :class:`TaskTx`. Its methods only *buffer* typed operations
(the records below, no SQL); the backend writes them all at the end of the store's transaction, in
its one way (SQLite: kept statements, :mod:`agent_runtime.store.sqlite_writes`; PostgreSQL: one
document for ``agent_runtime_apply_v2``, :mod:`agent_runtime.store.pg_document`).

What every backend does with a transaction, in order:

1. (a new task only) insert its row;
2. update the task row: the buffered fields, ``updated_at``, and ``last_seq = last_seq + n`` for
   the ``n`` events, fenced by the lease (epoch and owner) when a holder writes, returning the row;
   no row returned means the fence refused and nothing is written;
3. the buffered operations, in order;
4. the events, numbered from the returned ``last_seq`` (allocated by the database, so a holder's
   write never collides with another writer's events).

A transaction that changes nothing writes nothing (no row update, no ``updated_at``, no event).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from agent_runtime.domain.events import Event, TaskEvent
from agent_runtime.domain.plan import Plan
from agent_runtime.domain.records import TaskRecord
from agent_runtime.domain.states import LEASED, TERMINAL, StepStatus, TaskStatus, ToolCallStatus, check_transition
from agent_runtime.store.rows import new_id


@dataclass(frozen=True, slots=True)
class NewPlan:
    """A plan version and its steps (all pending)."""

    version: int
    content_hash: str
    plan: dict[str, Any]
    author: str
    step_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StepUpdate:
    version: int
    step_id: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StepsWhere:
    """Set ``fields`` on every step of ``version`` whose status is one of ``statuses``."""

    version: int
    statuses: tuple[str, ...]
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewCall:
    row: dict[str, Any]
    """Every column of the ``tool_calls`` row."""


@dataclass(frozen=True, slots=True)
class CallUpdate:
    call_id: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallsWhere:
    """Set ``fields`` on every tool call of the task whose status is one of ``statuses``."""

    statuses: tuple[str, ...]
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewApproval:
    plan_version: int
    decision: str
    actor: str | None
    reason: str | None
    actor_roles: list[str] | None = None
    content_hash: str | None = None


Op = NewPlan | StepUpdate | StepsWhere | NewCall | CallUpdate | CallsWhere | NewApproval


class TaskTx:
    """Writes for one task inside one transaction. Obtain it from ``TaskStore.transaction``."""

    def __init__(self, task: TaskRecord, now: datetime, *, new: bool = False) -> None:
        self.task = task
        self.started_from = task
        self.now = now
        self.new = new
        """A task being created: its row is inserted first (``TaskStore.create_task``)."""
        self.ops: list[Op] = []
        self.fields: dict[str, Any] = {}
        """Task columns to set (the row update's values, besides ``updated_at`` and ``last_seq``)."""
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.wakes_workers = False
        """Set when the change makes the task claimable, so idle workers are woken."""
        self.leased = False
        """Set by :meth:`lease_to`: the commit leases the task (a hand-off)."""

    # -- task row ------------------------------------------------------------------------------

    def transition(self, target: TaskStatus, *, action: str | None = None, **fields: Any) -> None:
        """Change status (checked against the state table) and set other task fields."""
        check_transition(self.task.status, target, action=action)
        self.update(status=target, **fields)
        if target in TERMINAL:
            self.fields["finished_at"] = self.now
        if target not in LEASED:
            # Only planning and executing hold a lease; anything else waits as a row.
            self.fields.update(lease_owner=None, lease_expires_at=None)
        if target in (TaskStatus.QUEUED, TaskStatus.APPROVED):
            self.wakes_workers = True

    def lease_to(self, owner: str, expires_at: datetime) -> None:
        """Lease the task, in this transaction, to ``owner`` (a new epoch) instead of waking
        workers to claim it: the service's hand-off to this process's runner."""
        self.update(lease_owner=owner, lease_expires_at=expires_at, lease_epoch=self.task.lease_epoch + 1)
        self.wakes_workers = False
        self.leased = True

    def update(self, **fields: Any) -> None:
        self.fields.update(fields)
        known = {k: v for k, v in fields.items() if k in TaskRecord.__dataclass_fields__}
        self.task = replace(self.task, **known)

    def emit(self, event: TaskEvent) -> None:
        """Store ``event`` with this transaction: its ``type``, and its payload as the event's ``data``."""
        self.events.append((event.type, event.payload()))

    # -- plans and steps ---------------------------------------------------------------------

    def add_plan_version(self, plan: Plan, author: str) -> int:
        version = (self.task.current_plan_version or 0) + 1
        self.ops.append(
            NewPlan(
                version=version,
                content_hash=plan.content_hash(),
                plan=plan.model_dump(mode="json"),
                author=author,
                step_ids=tuple(step.id for step in plan.steps),
            )
        )
        self.update(current_plan_version=version)
        return version

    def update_step(self, version: int, step_id: str, **fields: Any) -> None:
        self.ops.append(StepUpdate(version, step_id, fields))

    def update_steps_where(self, version: int, statuses: set[StepStatus], **fields: Any) -> None:
        self.ops.append(StepsWhere(version, tuple(sorted(str(s) for s in statuses)), fields))

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
        self.ops.append(NewCall(row))
        return call_id

    def update_tool_call(self, call_id: str, **fields: Any) -> None:
        self.ops.append(CallUpdate(call_id, fields))

    def update_tool_calls_where(self, statuses: set[ToolCallStatus], **fields: Any) -> None:
        self.ops.append(CallsWhere(tuple(sorted(str(s) for s in statuses)), fields))

    def add_approval(
        self,
        version: int,
        decision: str,
        actor: str | None,
        reason: str | None,
        *,
        actor_roles: list[str] | None = None,
        content_hash: str | None = None,
    ) -> None:
        self.ops.append(NewApproval(version, decision, actor, reason, actor_roles, content_hash))

    # -- commit ---------------------------------------------------------------------------------

    @property
    def changed(self) -> bool:
        """Whether the transaction writes anything. One that changes nothing writes nothing: no
        row update, no ``updated_at``, no event (so a repeated command leaves no trace)."""
        return bool(self.new or self.fields or self.ops or self.events)

    def committed(self, row: TaskRecord) -> list[Event]:
        """The write returned ``row`` (the task as stored): take it as this transaction's view and
        number the events from the ``last_seq`` the database allocated."""
        self.task = row
        first = row.last_seq - len(self.events) + 1
        return [
            Event(task_id=row.id, seq=first + i, type=typ, data=data, created_at=self.now)
            for i, (typ, data) in enumerate(self.events)
        ]
