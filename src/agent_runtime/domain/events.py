"""The event catalogue. Every event is stored with a gap-free per-task sequence number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    TASK_CREATED = "task_created"
    PLANNING_STARTED = "planning_started"
    PLAN_PROPOSED = "plan_proposed"
    PLAN_INVALID = "plan_invalid"
    APPROVAL_REQUIRED = "approval_required"
    PLAN_EDITED = "plan_edited"
    REVISION_REQUESTED = "revision_requested"
    TASK_APPROVED = "task_approved"
    APPROVAL_RECORDED = "approval_recorded"
    """One of ``approvals.required`` distinct approvals of a plan version (the task still waits)."""
    APPROVALS_DISCARDED = "approvals_discarded"
    """A new plan version replaced one that had partial approvals; they no longer count."""
    TASK_REJECTED = "task_rejected"
    EXECUTION_STARTED = "execution_started"
    TASK_RESUMED = "task_resumed"
    STEP_STARTED = "step_started"
    TEXT_DELTA = "text_delta"
    TOOL_CALL_STARTED = "tool_call_started"
    TOOL_PROGRESS = "tool_progress"
    TOOL_CALL_COMPLETED = "tool_call_completed"
    TOOL_CALL_FAILED = "tool_call_failed"
    TOOL_CALL_REFUSED = "tool_call_refused"
    TOOL_CALL_IN_DOUBT = "tool_call_in_doubt"
    NEEDS_ATTENTION = "needs_attention"
    ATTENTION_RESOLVED = "attention_resolved"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    TASK_COMPLETED = "task_completed"
    TASK_FAILED = "task_failed"
    TASK_CANCELLED = "task_cancelled"


TERMINAL_EVENTS: frozenset[str] = frozenset(
    {
        EventType.TASK_COMPLETED,
        EventType.TASK_FAILED,
        EventType.TASK_CANCELLED,
        EventType.TASK_REJECTED,
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    """A stored event. ``seq`` is the SSE ``id``; it starts at 1 and has no gaps within a task."""

    task_id: str
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "seq": self.seq,
            "type": self.type,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
        }
