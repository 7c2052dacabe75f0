"""Events of a task's execution: steps, tool calls, attention, retries and the final outcome."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from agent_runtime.domain.events.base import ErrorBody, EventRecord
from agent_runtime.domain.states import TaskStatus


class ExecutionStarted(EventRecord):
    """The first claim of an approved task."""

    type: Literal["execution_started"] = "execution_started"
    plan_version: int
    content_hash: str


class TaskResumed(EventRecord):
    """A worker took over an interrupted task, or execution restarted after a resolve."""

    type: Literal["task_resumed"] = "task_resumed"
    phase: Literal["planning", "executing"]
    worker: str


class StepStarted(EventRecord):
    """A step began (or resumed)."""

    type: Literal["step_started"] = "step_started"
    step_id: str
    resumed: bool


class TextDelta(EventRecord):
    """Text the executor model streamed (batched: about 256 characters or 50 ms per event)."""

    type: Literal["text_delta"] = "text_delta"
    step_id: str
    text: str


class ToolCallStarted(EventRecord):
    """A tool call is about to be sent (recorded before it is)."""

    type: Literal["tool_call_started"] = "tool_call_started"
    call_id: str
    step_id: str
    tool: str
    arguments: dict[str, Any]
    retry: bool


class ToolProgress(EventRecord):
    """The tool server reported MCP progress."""

    type: Literal["tool_progress"] = "tool_progress"
    call_id: str
    step_id: str
    progress: float
    total: float | None
    message: str | None


class ToolCallCompleted(EventRecord):
    """A result came back (including ``isError`` results)."""

    type: Literal["tool_call_completed"] = "tool_call_completed"
    call_id: str
    step_id: str
    tool: str
    is_error: bool
    result: str = Field(description="The result's text, cut to its first 2000 characters.")
    truncated: bool
    duration_ms: float


class ToolCallFailed(EventRecord):
    """A transport failure, server crash or timeout."""

    type: Literal["tool_call_failed"] = "tool_call_failed"
    call_id: str
    step_id: str
    tool: str
    code: str
    error: str


class ToolCallRefused(EventRecord):
    """The model asked for a tool the step does not list."""

    type: Literal["tool_call_refused"] = "tool_call_refused"
    call_id: str
    step_id: str
    tool: str
    reason: str


class ToolCallInDoubt(EventRecord):
    """On takeover: a call was in flight with no recorded result."""

    type: Literal["tool_call_in_doubt"] = "tool_call_in_doubt"
    call_id: str
    step_id: str
    tool: str
    safe_to_repeat: bool


class NeedsAttention(EventRecord):
    """An in-doubt call may not be repeated automatically: an operator must resolve it."""

    type: Literal["needs_attention"] = "needs_attention"
    tool_call_id: str
    tool: str
    step_id: str
    reason: str


class AttentionResolved(EventRecord):
    """An operator resolved an in-doubt call (``POST …/resolve``)."""

    type: Literal["attention_resolved"] = "attention_resolved"
    tool_call_id: str
    action: Literal["retry", "skip", "fail"]
    actor: str | None


class TaskRetried(EventRecord):
    """An operator retried a failed task from where it failed (``POST …/retry``): the task is
    ``approved`` again under the same plan version; ``steps`` run again, the others keep their outputs."""

    type: Literal["task_retried"] = "task_retried"
    plan_version: int
    steps: list[str]
    actor: str | None


class StepCompleted(EventRecord):
    """A step's final answer."""

    type: Literal["step_completed"] = "step_completed"
    step_id: str
    output: str


class StepFailed(EventRecord):
    """A step failed (turn or call limit, its tool server would not start)."""

    type: Literal["step_failed"] = "step_failed"
    step_id: str
    error: ErrorBody


class TaskCompleted(EventRecord):
    """All steps are done; final."""

    type: Literal["task_completed"] = "task_completed"
    summary: str


class TaskFailed(EventRecord):
    """Planning or execution failed, or an operator failed an in-doubt call; final."""

    type: Literal["task_failed"] = "task_failed"
    error: ErrorBody


class TaskCancelled(EventRecord):
    """The task was cancelled (``POST …/cancel``); final."""

    type: Literal["task_cancelled"] = "task_cancelled"
    reason: str | None
    previous_status: TaskStatus
    actor: str | None = None


class StepRetrying(EventRecord):
    """A step failed and its ``on_failure`` retries it: attempt ``attempt`` of ``attempts`` failed
    with ``error``; the next one starts at ``retry_at`` (a durable wait: a takeover keeps it)."""

    type: Literal["step_retrying"] = "step_retrying"
    step_id: str
    attempt: int
    attempts: int
    error: ErrorBody
    retry_at: datetime


class StepSkipped(EventRecord):
    """A step failed (after its attempts) and its ``on_failure`` skips it: the steps that depend on
    it still run, told it was skipped."""

    type: Literal["step_skipped"] = "step_skipped"
    step_id: str
    error: ErrorBody
    attempts: int


class ReplanRequested(EventRecord):
    """A step failed and its ``on_failure`` is ``replan``: the task goes back to ``queued`` and the
    planner writes a new version of the steps not yet completed (replan ``replan`` of ``max_replans``)."""

    type: Literal["replan_requested"] = "replan_requested"
    step_id: str
    error: ErrorBody
    attempts: int
    replan: int
    max_replans: int


class VerificationCompleted(EventRecord):
    """After the last step, the executor's model judged whether the request was met (``verify``)."""

    type: Literal["verification_completed"] = "verification_completed"
    met: bool
    reason: str
