"""The task and step state machines as tables and pure functions.

Every status change in the service goes through :func:`check_transition`; the store refuses to
write a change the table does not allow.
"""

from __future__ import annotations

from enum import StrEnum

from agent_runtime.errors import InvalidStateError


class TaskStatus(StrEnum):
    QUEUED = "queued"
    """Waiting for a worker to plan it (new, or a revision was asked for)."""
    PLANNING = "planning"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    """Approved, waiting for a worker to execute it."""
    EXECUTING = "executing"
    NEEDS_ATTENTION = "needs_attention"
    """Paused for a person: a side-effecting tool call is in doubt (retry, skip or fail it), a tool
    call waits at a policy gate (approve, deny or edit it), or the budget ran out (raise it)."""
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class ToolCallStatus(StrEnum):
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    """The call could not be made or the transport failed (a tool's own isError is COMPLETED)."""
    REFUSED = "refused"
    """The model asked for a tool the approved plan does not allow for this step."""
    IN_DOUBT = "in_doubt"
    """Started, no recorded result, and its worker died."""
    SKIPPED = "skipped"
    """An operator chose to skip an in-doubt call with a stated result."""
    CANCELLED = "cancelled"
    AWAITING_DECISION = "awaiting_decision"
    """A policy rule gated the call before it was sent; an approver approves, denies or edits it.
    The decision is recorded on the call (its ``result.decision``) and used once."""


S = TaskStatus

TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.QUEUED: frozenset({S.PLANNING, S.FAILED, S.CANCELLED}),
    S.PLANNING: frozenset({S.AWAITING_APPROVAL, S.FAILED, S.CANCELLED, S.NEEDS_ATTENTION}),
    S.AWAITING_APPROVAL: frozenset({S.AWAITING_APPROVAL, S.APPROVED, S.REJECTED, S.QUEUED, S.CANCELLED}),
    S.APPROVED: frozenset({S.EXECUTING, S.FAILED, S.CANCELLED}),
    S.EXECUTING: frozenset({S.COMPLETED, S.FAILED, S.NEEDS_ATTENTION, S.CANCELLED, S.QUEUED}),
    S.NEEDS_ATTENTION: frozenset({S.APPROVED, S.FAILED, S.CANCELLED, S.QUEUED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset({S.APPROVED}),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
}
"""Allowed ``from → to`` changes. ``awaiting_approval → awaiting_approval`` is an operator edit
(a new plan version); ``awaiting_approval → queued`` is a revision request. ``queued`` and
``approved`` may fail directly when a worker cannot even start on them. ``failed → approved`` is a
retry from where execution failed (``POST /v1/tasks/{id}/retry``): the only way out of a final state.
``executing → queued`` is a replan: a step whose ``on_failure`` is ``replan`` failed, and the task
goes back to the planner for its steps not yet completed (``agents/replan.py``). ``planning →
needs_attention`` is a spent budget before a revision's or a replan's model call; raising it goes
``needs_attention → queued`` (planning again)."""

TERMINAL: frozenset[TaskStatus] = frozenset({S.COMPLETED, S.FAILED, S.REJECTED, S.CANCELLED})
"""Final states: the task's stream ends there. ``failed`` is final unless an operator retries it."""

CLAIMABLE: frozenset[TaskStatus] = frozenset({S.QUEUED, S.PLANNING, S.APPROVED, S.EXECUTING})
"""States a worker can claim. ``planning``/``executing`` are claimable only once their lease expired."""

LEASED: frozenset[TaskStatus] = frozenset({S.PLANNING, S.EXECUTING})
"""States in which a worker holds the task's lease."""


def can_transition(current: TaskStatus, target: TaskStatus) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: TaskStatus, target: TaskStatus, *, action: str | None = None) -> None:
    """Raise :class:`InvalidStateError` (carrying the current state) unless the change is allowed."""
    if not can_transition(current, target):
        what = action or f"move to {target.value}"
        raise InvalidStateError(
            f"cannot {what}: task is {current.value}",
            details={"current_status": current.value, "requested": target.value},
        )


def is_terminal(status: TaskStatus) -> bool:
    return status in TERMINAL
