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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from agent_runtime.domain.plan import Plan
from agent_runtime.domain.states import TaskStatus


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


# -- the records -------------------------------------------------------------------------------
#
# One record per event type: a ``type`` literal and the payload fields, in the order they are
# stored. ``TaskTx.emit`` takes a record and stores ``record.type`` and ``record.payload()`` as
# the event's ``type`` and ``data``. The README's event catalogue is tested against these records
# (tests/domain/test_events.py), and ``TaskEvent`` is the schema of an event's ``type`` + ``data``.


class _Record(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", use_enum_values=True, json_schema_serialization_defaults_required=True
    )

    def payload(self) -> dict[str, Any]:
        """The stored ``data``: every field but ``type``, in declaration order."""
        return self.model_dump(mode="json", exclude=_TYPE_ONLY)


_TYPE_ONLY = {"type"}


class ErrorBody(BaseModel):
    """An error as tasks and steps record it: a stable code, a message and, sometimes, details."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    message: str
    details: dict[str, Any] | None = Field(default=None, exclude_if=lambda v: v is None)


class TaskCreated(_Record):
    """A task was submitted."""

    type: Literal["task_created"] = "task_created"
    status: TaskStatus


class PlanningStarted(_Record):
    """A worker started planning (``revision``: the operator asked for a revised plan)."""

    type: Literal["planning_started"] = "planning_started"
    revision: bool


class PlanInvalid(_Record):
    """The model's plan failed the checks (it gets one repair attempt)."""

    type: Literal["plan_invalid"] = "plan_invalid"
    problems: list[str]


class PlanProposed(_Record):
    """A plan version was stored."""

    type: Literal["plan_proposed"] = "plan_proposed"
    plan_version: int
    content_hash: str
    author: str
    offline_test: bool
    attempts: int
    plan: Plan
    estimate: PlanEstimate | None = None
    profile: str | None = None
    """The agent profile the plan was made under (and the executor will run under)."""
    profile_hash: str | None = None
    """That profile's content hash, as the task snapshotted it at submit."""


class PlanEstimate(BaseModel):
    """What a plan version is expected to cost (see ``policy.estimate``)."""

    model_config = ConfigDict(extra="forbid")
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = Field(description="None when a model's price is unknown")
    wall_seconds: float
    tool_calls: int
    basis: str = Field(description="How it was estimated: from the history of similar steps, or the heuristic")


class ApprovalRequired(_Record):
    """The current plan version waits for approval (after ``plan_proposed`` and ``plan_edited``)."""

    type: Literal["approval_required"] = "approval_required"
    plan_version: int
    rule: str | None = Field(default=None, description="The policy rule that asked for approval (None: the default)")
    roles: list[str] = Field(default_factory=list, description="Roles that may approve (empty: any approver)")
    required: int = Field(default=1, description="Distinct approvers needed")
    expires_at: datetime | None = None
    on_expiry: Literal["reject", "cancel", "approve"] | None = None


class PlanEdited(_Record):
    """An operator replaced the plan (``PUT …/plan``)."""

    type: Literal["plan_edited"] = "plan_edited"
    plan_version: int
    based_on: int
    content_hash: str
    actor: str | None


class RevisionRequested(_Record):
    """An operator asked for a revised plan (``POST …/revise``)."""

    type: Literal["revision_requested"] = "revision_requested"
    plan_version: int
    feedback: str
    actor: str | None


class TaskApproved(_Record):
    """A plan version was approved (``POST …/approve``)."""

    type: Literal["task_approved"] = "task_approved"
    plan_version: int
    actor: str | None
    content_hash: str
    approvers: list[str] = Field(description="Every distinct approver of this version and hash")


class ApprovalRecorded(_Record):
    """One of ``approvals.required`` distinct approvals of a plan version; the task still waits."""

    type: Literal["approval_recorded"] = "approval_recorded"
    plan_version: int
    actor: str | None
    content_hash: str
    approvals: int
    required: int


class ApprovalsDiscarded(_Record):
    """A new plan version (edit or revision) replaced one that had partial approvals; they no longer count."""

    type: Literal["approvals_discarded"] = "approvals_discarded"
    plan_version: int
    approvers: list[str]


class TaskRejected(_Record):
    """The plan was rejected (``POST …/reject``); final."""

    type: Literal["task_rejected"] = "task_rejected"
    plan_version: int
    reason: str | None
    actor: str | None


class ExecutionStarted(_Record):
    """The first claim of an approved task."""

    type: Literal["execution_started"] = "execution_started"
    plan_version: int
    content_hash: str


class TaskResumed(_Record):
    """A worker took over an interrupted task, or execution restarted after a resolve."""

    type: Literal["task_resumed"] = "task_resumed"
    phase: Literal["planning", "executing"]
    worker: str


class StepStarted(_Record):
    """A step began (or resumed)."""

    type: Literal["step_started"] = "step_started"
    step_id: str
    resumed: bool


class TextDelta(_Record):
    """Text the executor model streamed (batched: about 256 characters or 50 ms per event)."""

    type: Literal["text_delta"] = "text_delta"
    step_id: str
    text: str


class ToolCallStarted(_Record):
    """A tool call is about to be sent (recorded before it is)."""

    type: Literal["tool_call_started"] = "tool_call_started"
    call_id: str
    step_id: str
    tool: str
    arguments: dict[str, Any]
    retry: bool


class ToolProgress(_Record):
    """The tool server reported MCP progress."""

    type: Literal["tool_progress"] = "tool_progress"
    call_id: str
    step_id: str
    progress: float
    total: float | None
    message: str | None


class ToolCallCompleted(_Record):
    """A result came back (including ``isError`` results)."""

    type: Literal["tool_call_completed"] = "tool_call_completed"
    call_id: str
    step_id: str
    tool: str
    is_error: bool
    result: str = Field(description="The result's text, cut to its first 2000 characters.")
    truncated: bool
    duration_ms: float


class ToolCallFailed(_Record):
    """A transport failure, server crash or timeout."""

    type: Literal["tool_call_failed"] = "tool_call_failed"
    call_id: str
    step_id: str
    tool: str
    code: str
    error: str


class ToolCallRefused(_Record):
    """The model asked for a tool the step does not list."""

    type: Literal["tool_call_refused"] = "tool_call_refused"
    call_id: str
    step_id: str
    tool: str
    reason: str


class ToolCallInDoubt(_Record):
    """On takeover: a call was in flight with no recorded result."""

    type: Literal["tool_call_in_doubt"] = "tool_call_in_doubt"
    call_id: str
    step_id: str
    tool: str
    safe_to_repeat: bool


class NeedsAttention(_Record):
    """An in-doubt call may not be repeated automatically: an operator must resolve it."""

    type: Literal["needs_attention"] = "needs_attention"
    tool_call_id: str
    tool: str
    step_id: str
    reason: str


class AttentionResolved(_Record):
    """An operator resolved an in-doubt call (``POST …/resolve``)."""

    type: Literal["attention_resolved"] = "attention_resolved"
    tool_call_id: str
    action: Literal["retry", "skip", "fail"]
    actor: str | None


class TaskRetried(_Record):
    """An operator retried a failed task from where it failed (``POST …/retry``): the task is
    ``approved`` again under the same plan version; ``steps`` run again, the others keep their outputs."""

    type: Literal["task_retried"] = "task_retried"
    plan_version: int
    steps: list[str]
    actor: str | None


class StepCompleted(_Record):
    """A step's final answer."""

    type: Literal["step_completed"] = "step_completed"
    step_id: str
    output: str


class StepFailed(_Record):
    """A step failed (turn or call limit, its tool server would not start)."""

    type: Literal["step_failed"] = "step_failed"
    step_id: str
    error: ErrorBody


class TaskCompleted(_Record):
    """All steps are done; final."""

    type: Literal["task_completed"] = "task_completed"
    summary: str


class TaskFailed(_Record):
    """Planning or execution failed, or an operator failed an in-doubt call; final."""

    type: Literal["task_failed"] = "task_failed"
    error: ErrorBody


class TaskCancelled(_Record):
    """The task was cancelled (``POST …/cancel``); final."""

    type: Literal["task_cancelled"] = "task_cancelled"
    reason: str | None
    previous_status: TaskStatus
    actor: str | None = None


class CallApprovalRequired(_Record):
    """A policy rule stopped a tool call before it was sent: it waits for an approver's decision
    (``POST …/calls/{call_id}/decision``); the task is ``needs_attention`` meanwhile."""

    type: Literal["call_approval_required"] = "call_approval_required"
    call_id: str
    step_id: str
    tool: str
    arguments: dict[str, Any]
    rule: str
    roles: list[str]
    expires_at: datetime | None = None
    on_expiry: Literal["reject", "cancel"] | None = None


class CallDecided(_Record):
    """An approver approved, denied or edited a gated tool call (or it expired: ``approval_expired``)."""

    type: Literal["call_decided"] = "call_decided"
    call_id: str
    decision: Literal["approve", "deny", "edit"]
    actor: str | None
    reason: str | None = None
    tool: str = Field(description="The tool that will be called (an edit may name another)")
    arguments: dict[str, Any] = Field(description="The arguments it will be called with (after an edit)")


class ApprovalExpired(_Record):
    """A plan approval or a call gate waited past its ``expire_after``; ``action`` was taken."""

    type: Literal["approval_expired"] = "approval_expired"
    kind: Literal["plan", "call"]
    rule: str | None
    action: Literal["reject", "cancel", "approve"]
    plan_version: int | None = None
    call_id: str | None = None


class LLMUsage(_Record):
    """One model call's tokens and cost, recorded durably (the task's budget counts them)."""

    type: Literal["llm_usage"] = "llm_usage"
    role: Literal["planner", "executor"]
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    step_id: str | None = None


class BudgetExceeded(_Record):
    """The task reached a budget limit: it is paused (``needs_attention``) before spending more,
    until an approver raises the budget (``POST …/budget``) or cancels it."""

    type: Literal["budget_exceeded"] = "budget_exceeded"
    limit: str = Field(description="Which limit: input_tokens, output_tokens, cost_usd, tool_calls or wall_seconds")
    spent: dict[str, float]
    budget: dict[str, float]


class BudgetRaised(_Record):
    """An approver raised a paused task's budget; execution continues."""

    type: Literal["budget_raised"] = "budget_raised"
    actor: str | None
    budget: dict[str, float]


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
    | BudgetRaised,
    Field(discriminator="type"),
]
"""Any event's ``type`` and payload, told apart by ``type``."""

TASK_EVENT: TypeAdapter[TaskEvent] = TypeAdapter(TaskEvent)


def parse_event(type_: str, data: dict[str, Any]) -> TaskEvent:
    """The typed record of a stored event's ``type`` and ``data`` (validated: not for hot paths)."""
    return TASK_EVENT.validate_python({**data, "type": type_})
