"""PostgreSQL: a :class:`~agent_runtime.store.tx.TaskTx` as one JSON document for
``agent_runtime_apply_v2`` (migration 0004), the one PostgreSQL write path of a task transaction.

The document::

    {"id": task, "now": ts, "epoch": int|null, "owner": str|null,   # fence: null for non-holders
     "new": {task columns}?,                                          # a new task: insert first
     "set": {task columns}, "ops": [{"k": kind, ...}], "events": [{"type", "data"}],
     "notify": {"channel", "work", "o"}?}                             # NOTIFY other replicas

Values are encoded per column kind (:data:`TASK_KINDS` and friends, derived from the schema; a
test checks the migration reads the same kinds) and cast back by the function, so they keep the
semantics of SQLAlchemy's statements: JSON ``null`` in a JSONB column stays JSON null, ``None``
elsewhere is SQL NULL. Every string's U+0000 and U+0001 are escaped (:mod:`.pg_text`). A value
the document cannot carry exactly (a naive timestamp, text that is
not a string, an unknown column, anything not JSON) raises ``TypeError`` naming the column.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agent_runtime.domain.records import Lease
from agent_runtime.store import pg_text
from agent_runtime.store import schema as t
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


def _kinds(table: sa.Table, keys: frozenset[str]) -> dict[str, str]:
    """Column name -> how the function reads it from JSON (``keys`` are not settable)."""
    out: dict[str, str] = {}
    for col in table.columns:
        if col.name in keys:
            continue
        typ = col.type.impl_instance if isinstance(col.type, sa.types.TypeDecorator) else col.type
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


TASK_KINDS = _kinds(t.tasks, frozenset({"id", "updated_at", "last_seq", "tenant", "submitted_by"}))
"""``tenant`` and ``submitted_by`` are set once, by the insert (``new``), never by an update."""
STEP_KINDS = _kinds(t.steps, frozenset({"task_id", "plan_version", "step_id"}))
CALL_KINDS = _kinds(t.tool_calls, frozenset({"id", "task_id"}))
NEW_CALL_KINDS = _kinds(t.tool_calls, frozenset())
_TS = {"t": "ts"}


def encode_values(kinds: dict[str, str], fields: dict[str, Any], where: str) -> dict[str, Any]:
    """Column values as JSON values the function casts back to the column's type."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        kind = kinds.get(name)
        if kind is None:
            raise TypeError(f"{where}.{name}: not a column this write may set")
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
            raise TypeError(f"{where}.{name}: {type(value).__name__} value is not a {kind} column value")
    return out


def _ts(value: datetime) -> Any:
    return encode_values(_TS, {"t": value}, "timestamp")["t"]


def _op(op: Op) -> dict[str, Any]:
    match op:
        case StepUpdate(version, step_id, fields):
            return {"k": "step", "v": version, "s": step_id, "f": encode_values(STEP_KINDS, fields, "steps")}
        case NewCall(row):
            return {"k": "new_call", "f": encode_values(NEW_CALL_KINDS, row, "tool_calls")}
        case CallUpdate(call_id, fields):
            return {"k": "call", "id": call_id, "f": encode_values(CALL_KINDS, fields, "tool_calls")}
        case NewPlan(version, content_hash, plan, author, step_ids):
            return {"k": "plan", "v": version, "hash": content_hash, "plan": plan, "author": author,
                    "steps": list(step_ids)}  # fmt: skip
        case StepsWhere(version, statuses, fields):
            return {"k": "steps_where", "v": version, "in": list(statuses),
                    "f": encode_values(STEP_KINDS, fields, "steps")}  # fmt: skip
        case CallsWhere(statuses, fields):
            return {"k": "calls_where", "in": list(statuses), "f": encode_values(CALL_KINDS, fields, "tool_calls")}
        case NewApproval(version, decision, actor, reason, actor_roles, content_hash):
            return {"k": "approval", "v": version, "decision": decision, "actor": actor, "reason": reason,
                    "roles": actor_roles, "hash": content_hash}  # fmt: skip


def document(tx: TaskTx, fence: Lease | None, notify: dict[str, Any] | None) -> str:
    """The JSON argument of ``agent_runtime_apply_v2`` for ``tx``, fenced by ``fence`` (a lease
    holder's write) or not (a writer holding the row lock); ``notify``: channel, work, origin."""
    task = tx.started_from
    doc: dict[str, Any] = {
        "id": task.id,
        "now": _ts(tx.now),
        "epoch": fence.epoch if fence is not None else None,
        "owner": fence.owner if fence is not None else None,
        "set": encode_values(TASK_KINDS, tx.fields, "tasks"),
        "ops": [_op(op) for op in tx.ops],
        "events": [{"type": typ, "data": data} for typ, data in tx.events],
    }
    if tx.new:
        doc["new"] = {
            "status": str(task.status), "prompt": task.prompt, "metadata": task.metadata,
            "created_at": _ts(task.created_at), "tenant": task.tenant, "submitted_by": task.submitted_by,
        }  # fmt: skip
    if notify is not None:
        doc["notify"] = notify
    try:
        text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:  # NaN or infinity: not JSON
        raise TypeError(f"task {task.id}: a value is not JSON: {exc}") from exc
    return pg_text.encode_json(text)  # NUL in model output or a tool result: escaped (store/pg_text.py)
