"""Row → record conversion. Timestamps come back timezone-aware UTC from every backend."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agent_runtime.domain.events import Event
from agent_runtime.domain.plan import Plan
from agent_runtime.domain.records import (
    ApprovalRecord,
    PlanVersionRecord,
    StepRecord,
    TaskRecord,
    ToolCallRecord,
)
from agent_runtime.domain.states import StepStatus, TaskStatus, ToolCallStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


_last_id_ms = 0
_id_counter = 0


def new_id(prefix: str) -> str:
    """Time-ordered id: ids sort by creation time, which keeps cursor pagination simple.

    Milliseconds, then a counter for ids made within the same millisecond in this process, then
    randomness (ids made by different processes in the same millisecond sort arbitrarily)."""
    global _last_id_ms, _id_counter
    now = time.time_ns() // 1_000_000
    if now > _last_id_ms:
        _last_id_ms, _id_counter = now, 0
    else:
        _id_counter += 1
        if _id_counter > 0xFFFF:  # 65,536 ids in one millisecond: borrow the next one
            _last_id_ms, _id_counter = _last_id_ms + 1, 0
    return f"{prefix}_{_last_id_ms:012x}{_id_counter:04x}{secrets.token_hex(4)}"


def aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _req(value: datetime | None) -> datetime:
    out = aware(value)
    assert out is not None
    return out


def task(row: Mapping[Any, Any]) -> TaskRecord:
    return TaskRecord(
        id=row["id"],
        status=TaskStatus(row["status"]),
        prompt=row["prompt"],
        metadata=row["metadata"] or {},
        created_at=_req(row["created_at"]),
        updated_at=_req(row["updated_at"]),
        current_plan_version=row["current_plan_version"],
        approved_plan_version=row["approved_plan_version"],
        result=row["result"],
        error=row["error"],
        revision_feedback=row["revision_feedback"],
        lease_owner=row["lease_owner"],
        lease_expires_at=aware(row["lease_expires_at"]),
        lease_epoch=row["lease_epoch"],
        last_seq=row["last_seq"],
        tenant=row["tenant"],
        submitted_by=row["submitted_by"],
        gate=row["gate"],
        gate_expires_at=aware(row["gate_expires_at"]),
        usage=row["usage"],
        budget=row["budget"],
        estimate=row["estimate"],
        submitter_roles=row["submitter_roles"],
        profile=row["profile"],
        profile_hash=row["profile_hash"],
        profile_content=row["profile_content"],
        session_id=row["session_id"],
    )


def plan_version(row: Mapping[Any, Any]) -> PlanVersionRecord:
    return PlanVersionRecord(
        task_id=row["task_id"],
        version=row["version"],
        content_hash=row["content_hash"],
        plan=Plan.model_validate(row["plan"]),
        author=row["author"],
        created_at=_req(row["created_at"]),
    )


def step(row: Mapping[Any, Any]) -> StepRecord:
    return StepRecord(
        task_id=row["task_id"],
        plan_version=row["plan_version"],
        step_id=row["step_id"],
        position=row["position"],
        status=StepStatus(row["status"]),
        output=row["output"],
        error=row["error"],
        started_at=aware(row["started_at"]),
        finished_at=aware(row["finished_at"]),
    )


def tool_call(row: Mapping[Any, Any]) -> ToolCallRecord:
    return ToolCallRecord(
        id=row["id"],
        task_id=row["task_id"],
        plan_version=row["plan_version"],
        step_id=row["step_id"],
        turn=row["turn"],
        call_index=row["call_index"],
        tool_name=row["tool_name"],
        arguments=row["arguments"] or {},
        status=ToolCallStatus(row["status"]),
        result=row["result"],
        is_error=bool(row["is_error"]),
        started_at=_req(row["started_at"]),
        finished_at=aware(row["finished_at"]),
    )


def approval(row: Mapping[Any, Any]) -> ApprovalRecord:
    return ApprovalRecord(
        task_id=row["task_id"],
        plan_version=row["plan_version"],
        decision=row["decision"],
        actor=row["actor"],
        reason=row["reason"],
        created_at=_req(row["created_at"]),
        actor_roles=row["actor_roles"],
        content_hash=row["content_hash"],
    )


def event(row: Mapping[Any, Any]) -> Event:
    data: dict[str, Any] = row["data"] or {}
    return Event(
        task_id=row["task_id"], seq=row["seq"], type=row["type"], data=data, created_at=_req(row["created_at"])
    )
