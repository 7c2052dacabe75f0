"""The event catalogue. Every event is stored with a gap-free per-task sequence number.

Each event type has a typed record below (a ``type`` literal and its payload fields); the records
are joined in :data:`TaskEvent`, a union told apart by ``type``. Writers emit records
(``TaskTx.emit``); a stored :class:`Event` keeps the payload as a plain dict (its ``data``), so
readers on hot paths (the stream, the runner's cancel watch) read it without validation, and
:meth:`Event.record` parses it back into its record where types help.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from agent_runtime.domain.events.base import ErrorBody, EventRecord
from agent_runtime.domain.events.execution import (
    AttentionResolved,
    ExecutionStarted,
    NeedsAttention,
    ReplanRequested,
    StepCompleted,
    StepFailed,
    StepRetrying,
    StepSkipped,
    StepStarted,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskResumed,
    TaskRetried,
    TextDelta,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallInDoubt,
    ToolCallRefused,
    ToolCallStarted,
    ToolProgress,
    VerificationCompleted,
)
from agent_runtime.domain.events.governance import (
    ApprovalExpired,
    BudgetExceeded,
    BudgetRaised,
    CallApprovalRequired,
    CallDecided,
    LLMUsage,
)
from agent_runtime.domain.events.planning import (
    ApprovalRecorded,
    ApprovalRequired,
    ApprovalsDiscarded,
    PlanEdited,
    PlanEstimate,
    PlanInvalid,
    PlanningStarted,
    PlanProposed,
    RevisionRequested,
    TaskApproved,
    TaskCreated,
    TaskRejected,
)

__all__ = [
    "ApprovalExpired",
    "ApprovalRecorded",
    "ApprovalRequired",
    "ApprovalsDiscarded",
    "AttentionResolved",
    "BudgetExceeded",
    "BudgetRaised",
    "CallApprovalRequired",
    "CallDecided",
    "ErrorBody",
    "Event",
    "EventType",
    "ExecutionStarted",
    "LLMUsage",
    "NeedsAttention",
    "PlanEdited",
    "PlanEstimate",
    "PlanInvalid",
    "PlanProposed",
    "PlanningStarted",
    "EventRecord",
    "ReplanRequested",
    "RevisionRequested",
    "StepCompleted",
    "StepFailed",
    "StepRetrying",
    "StepSkipped",
    "StepStarted",
    "TASK_EVENT",
    "TERMINAL_EVENTS",
    "TaskApproved",
    "TaskCancelled",
    "TaskCompleted",
    "TaskCreated",
    "TaskEvent",
    "TaskFailed",
    "TaskRejected",
    "TaskResumed",
    "TaskRetried",
    "TextDelta",
    "ToolCallCompleted",
    "ToolCallFailed",
    "ToolCallInDoubt",
    "ToolCallRefused",
    "ToolCallStarted",
    "ToolProgress",
    "VerificationCompleted",
    "parse_event",
]


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
    TASK_RETRIED = "task_retried"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    TASK_COMPLETED = "task_completed"
    TASK_FAILED = "task_failed"
    TASK_CANCELLED = "task_cancelled"
    CALL_APPROVAL_REQUIRED = "call_approval_required"
    CALL_DECIDED = "call_decided"
    APPROVAL_EXPIRED = "approval_expired"
    LLM_USAGE = "llm_usage"
    BUDGET_EXCEEDED = "budget_exceeded"
    BUDGET_RAISED = "budget_raised"
    STEP_RETRYING = "step_retrying"
    STEP_SKIPPED = "step_skipped"
    REPLAN_REQUESTED = "replan_requested"
    VERIFICATION_COMPLETED = "verification_completed"


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

    def record(self) -> TaskEvent:
        """This event's typed record (validated: not for hot paths)."""
        return parse_event(self.type, self.data)

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "seq": self.seq,
            "type": self.type,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
        }


TaskEvent = Annotated[
    TaskCreated
    | PlanningStarted
    | PlanInvalid
    | PlanProposed
    | ApprovalRequired
    | PlanEdited
    | RevisionRequested
    | TaskApproved
    | ApprovalRecorded
    | ApprovalsDiscarded
    | TaskRejected
    | ExecutionStarted
    | TaskResumed
    | StepStarted
    | TextDelta
    | ToolCallStarted
    | ToolProgress
    | ToolCallCompleted
    | ToolCallFailed
    | ToolCallRefused
    | ToolCallInDoubt
    | NeedsAttention
    | AttentionResolved
    | TaskRetried
    | StepCompleted
    | StepFailed
    | TaskCompleted
    | TaskFailed
    | TaskCancelled
    | CallApprovalRequired
    | CallDecided
    | ApprovalExpired
    | LLMUsage
    | BudgetExceeded
    | BudgetRaised
    | StepRetrying
    | StepSkipped
    | ReplanRequested
    | VerificationCompleted,
    Field(discriminator="type"),
]
"""Any event's ``type`` and payload, told apart by ``type``."""

TASK_EVENT: TypeAdapter[TaskEvent] = TypeAdapter(TaskEvent)


def parse_event(type_: str, data: dict[str, Any]) -> TaskEvent:
    """The typed record of a stored event's ``type`` and ``data`` (validated: not for hot paths)."""
    return TASK_EVENT.validate_python({**data, "type": type_})
