"""A fenced, event-writing transaction on one task.

Everything a state change writes (task fields, plan versions, steps, tool calls, approvals and the
events that describe them) goes through :class:`TaskTx`. The methods only *buffer* statements;
:meth:`TaskTx.flush` writes them all, in one synchronous burst, inside the store's transaction.
The first statement of the burst is the task row update, conditional on the lease (epoch and owner) and the
sequence number the transaction started from, so a worker that lost its lease has its whole
transaction refused by the database before anything else is written. A transaction that changes
nothing writes nothing (no row update, no ``updated_at``, no event).

On PostgreSQL a lease holder's transaction that only updates steps and tool calls, inserts tool
calls and emits events (the execution journal's records) can instead be written as one JSON
document by the ``agent_runtime_apply`` function (migration 0002): :meth:`TaskTx.apply_document`.
Every buffered write therefore also keeps a typed description; writes without one (plan versions,
approvals, bulk updates) keep the statement path.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Executable

from agent_runtime.domain.events import Event, TaskEvent
from agent_runtime.domain.plan import Plan
from agent_runtime.domain.records import Lease, TaskRecord
from agent_runtime.domain.states import LEASED, TERMINAL, StepStatus, TaskStatus, ToolCallStatus, check_transition
from agent_runtime.store import schema as t
from agent_runtime.store.prepared import execute
from agent_runtime.store.rows import new_id


def _kinds(table: sa.Table, keys: frozenset[str]) -> dict[str, str]:
    """Column name -> how ``agent_runtime_apply`` reads it from JSON (``keys`` are not settable)."""
    out: dict[str, str] = {}
    for col in table.columns:
        if col.name in keys:
            continue
        typ = col.type
        if isinstance(typ, sa.JSON):
            out[col.name] = "json"
        elif isinstance(typ, sa.DateTime):
            out[col.name] = "ts"
        elif isinstance(typ, sa.Boolean):
            out[col.name] = "bool"
        elif isinstance(typ, sa.Integer):
            out[col.name] = "int"
        elif isinstance(typ, sa.String):
            out[col.name] = "text"
        else:  # pragma: no cover - a new column type needs a new kind in the function too
            raise TypeError(f"{table.name}.{col.name}: no JSON kind for {typ!r}")
    return out


# What agent_runtime_apply (migration 0002) can write; a test checks these against the function.
TASK_KINDS = _kinds(t.tasks, frozenset({"id", "updated_at", "last_seq", "tenant", "submitted_by"}))
"""``tenant`` and ``submitted_by`` are set once at creation (migration 0005), never by a lease holder."""
STEP_KINDS = _kinds(t.steps, frozenset({"task_id", "plan_version", "step_id"}))
CALL_KINDS = _kinds(t.tool_calls, frozenset({"id", "task_id"}))
NEW_CALL_KINDS = _kinds(t.tool_calls, frozenset())


_CALL_INSERT = t.tool_calls.insert()
_EVENTS_INSERT = t.events.insert()
_PLAN_INSERT = t.plan_versions.insert()
_STEPS_INSERT = t.steps.insert()
_APPROVAL_INSERT = t.approvals.insert()


class _Untyped(Exception):
    """A value the one-statement path cannot carry exactly; the statement path writes it instead."""


def _encode(kinds: dict[str, str], fields: dict[str, Any]) -> dict[str, Any]:
    """Column values as JSON values the function casts back to the column's type.

    Only values the statement path would accept as they are: anything else raises ``_Untyped`` so
    that path handles it (and fails the same way it always did). ``None`` is JSON null: SQL NULL,
    or JSON null in a JSONB column, as SQLAlchemy writes it."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        kind = kinds.get(name)
        if kind is None:
            raise _Untyped(name)
        if value is None or kind == "json":
            out[name] = value
        elif kind == "text" and isinstance(value, str):
            out[name] = str(value)
        elif kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            out[name] = int(value)
        elif kind == "bool" and isinstance(value, bool):
            out[name] = value
        elif kind == "ts" and isinstance(value, datetime) and value.utcoffset() is not None:
            out[name] = value.isoformat()
        else:
            raise _Untyped(name)
    return out


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
        self._ops: list[tuple[Executable, list[dict[str, Any]] | None, tuple[Any, ...] | None]] = []
        """(statement, parameter rows, typed description for ``apply_document`` or None)."""
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

    def lease_to(self, owner: str, expires_at: datetime) -> None:
        """Lease the task, in this transaction, to ``owner`` (this process's runner: see
        ``TaskStore.dispatcher``) instead of waking workers to claim it."""
        self.update(lease_owner=owner, lease_expires_at=expires_at, lease_epoch=self.task.lease_epoch + 1)
        self.wakes_workers = False

    def update(self, **fields: Any) -> None:
        self._fields.update(fields)
        known = {k: v for k, v in fields.items() if k in TaskRecord.__dataclass_fields__}
        self.task = replace(self.task, **known)

    def emit(self, event: TaskEvent) -> None:
        """Store ``event`` with this transaction: its ``type``, and its payload as the event's ``data``."""
        self._events.append((event.type, event.payload()))

    # -- plans and steps ---------------------------------------------------------------------

    def add_plan_version(self, plan: Plan, author: str) -> int:
        version = (self.task.current_plan_version or 0) + 1
        self._op(
            _PLAN_INSERT,
            [
                {
                    "task_id": self.task.id,
                    "version": version,
                    "content_hash": plan.content_hash(),
                    "plan": plan.model_dump(mode="json"),
                    "author": author,
                    "created_at": self.now,
                }
            ],
        )
        self._op(
            _STEPS_INSERT,
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
        self._op(_step_update(tuple(sorted(fields))), [params], ("step", version, step_id, fields))

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
        self._op(_CALL_INSERT, [row], ("new_call", row))
        return call_id

    def update_tool_call(self, call_id: str, **fields: Any) -> None:
        params = {"k_id": call_id, "k_task": self.task.id, **fields}
        self._op(_call_update(tuple(sorted(fields))), [params], ("call", call_id, fields))

    def update_tool_calls_where(self, statuses: set[ToolCallStatus], **fields: Any) -> None:
        self._op(
            t.tool_calls.update()
            .where(t.tool_calls.c.task_id == self.task.id)
            .where(t.tool_calls.c.status.in_([str(s) for s in statuses]))
            .values(**fields)
        )

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
        row = {
            "task_id": self.task.id,
            "plan_version": version,
            "decision": decision,
            "actor": actor,
            "reason": reason,
            "created_at": self.now,
            "actor_roles": actor_roles,
            "content_hash": content_hash,
        }
        self._op(_APPROVAL_INSERT, [row])

    def _op(
        self, statement: Executable, rows: list[dict[str, Any]] | None = None, typed: tuple[Any, ...] | None = None
    ) -> None:
        """Buffer a write: a kept statement with its parameter ``rows``, or (``rows`` None) a
        statement built for this call with its values in it."""
        self._ops.append((statement, rows, typed))

    # -- commit ---------------------------------------------------------------------------------

    @property
    def changed(self) -> bool:
        """Whether the transaction writes anything. One that changes nothing writes nothing: no
        row update, no ``updated_at``, no event (so a repeated command leaves no trace)."""
        return bool(self._fields or self._ops or self._events)

    def prepare(self) -> tuple[list[Event], dict[str, Any]]:
        """The events this transaction stores (numbered) and the values its task row update sets."""
        first = self.task.last_seq + 1
        stored = [
            Event(task_id=self.task.id, seq=first + i, type=typ, data=data, created_at=self.now)
            for i, (typ, data) in enumerate(self._events)
        ]
        values = dict(self._fields)
        values["updated_at"] = self.now
        values["last_seq"] = self.task.last_seq + len(stored)
        return stored, values

    def flush(self, conn: Connection, fence: Lease | None) -> tuple[list[Event], bool]:
        """Write the task row (fenced), then every buffered statement, then the events.

        Returns (events, ok); ``ok`` is False when the fence refused the write (nothing was written).
        A transaction that changed nothing writes nothing.
        """
        if not self.changed:
            return [], True
        stored, values = self.prepare()
        stmt = _task_update(tuple(sorted(values)), fence is not None)
        params = {"k_id": self.task.id, "k_seq": self.started_from.last_seq, **values}
        if fence is not None:
            params.update(k_epoch=fence.epoch, k_owner=fence.owner)
        if execute(conn, stmt, params).rowcount != 1:
            return [], False
        for statement, rows, _ in self._ops:
            if rows is None:  # built for this call, with its values in it
                conn.execute(statement)
            elif rows:
                execute(conn, statement, rows)
        if stored:
            execute(
                conn,
                _EVENTS_INSERT,
                [
                    {"task_id": e.task_id, "seq": e.seq, "type": e.type, "data": e.data, "created_at": e.created_at}
                    for e in stored
                ],
            )
        self.committed(values)
        return stored, True

    def committed(self, values: dict[str, Any]) -> None:
        """Record that ``values`` (from :meth:`prepare`) were written."""
        self.task = replace(self.task, last_seq=values["last_seq"], updated_at=self.now)

    def apply_document(
        self, fence: Lease, stored: list[Event], values: dict[str, Any], notify: tuple[str, str] | None
    ) -> str | None:
        """The JSON argument of ``agent_runtime_apply`` (PostgreSQL, migration 0002) for this
        transaction, fenced by ``fence``; ``notify`` is a (channel, payload) to NOTIFY in it.

        None when some buffered write has no typed form or some value could not be carried exactly:
        :meth:`flush` writes those."""
        ops: list[dict[str, Any]] = []
        try:
            for _, _, typed in self._ops:
                if typed is None:
                    return None
                if typed[0] == "step":
                    ops.append({"k": "step", "v": typed[1], "s": typed[2], "f": _encode(STEP_KINDS, typed[3])})
                elif typed[0] == "call":
                    ops.append({"k": "call", "id": typed[1], "f": _encode(CALL_KINDS, typed[2])})
                else:
                    ops.append({"k": "new_call", "f": _encode(NEW_CALL_KINDS, typed[1])})
            fields = {k: v for k, v in values.items() if k not in ("updated_at", "last_seq")}
            doc: dict[str, Any] = {
                "id": self.task.id,
                "seq": self.started_from.last_seq,
                "epoch": fence.epoch,
                "owner": fence.owner,
                "updated_at": _encode({"t": "ts"}, {"t": self.started_from.updated_at})["t"],
                "now": _encode({"t": "ts"}, {"t": self.now})["t"],
                "last_seq": values["last_seq"],
                "set": _encode(TASK_KINDS, fields),
                "ops": ops,
                "events": [{"seq": e.seq, "type": e.type, "data": e.data} for e in stored],
            }
            if notify is not None:
                doc["channel"], doc["notify"] = notify
            return json.dumps(doc, separators=(",", ":"), allow_nan=False)
        except (_Untyped, TypeError, ValueError):  # not JSON-serialisable: the statement path says why
            return None
