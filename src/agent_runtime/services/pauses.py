"""How a job pauses its task for a person: the status, the task's ``gate`` (what deciding it takes)
and the event, written in the job's transaction (a callable on :class:`TaskTx`, as the journal
commits them with the step records)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Literal

from agent_runtime.agents.execution import BudgetExceededError, CallGatedError, InDoubtError
from agent_runtime.domain.events import BudgetExceeded, CallApprovalRequired, NeedsAttention
from agent_runtime.domain.states import TaskStatus
from agent_runtime.store.tx import TaskTx

Pause = Callable[[TaskTx], None]


def call_gate(exc: CallGatedError) -> Pause:
    """At a policy gate: the call (recorded as awaiting a decision) and what deciding it takes are
    on the task (``gate``), with the expiry timer (``gate_expires_at``)."""
    check = exc.check

    def pause(tx: TaskTx) -> None:
        expires = tx.now + timedelta(seconds=check.expire_after_seconds) if check.expire_after_seconds else None
        gate = {"kind": "call", "call_id": exc.call_id, "rule": check.rule, "roles": list(check.roles),
                "on_expiry": check.on_expiry}  # fmt: skip
        tx.transition(TaskStatus.NEEDS_ATTENTION, gate=gate, gate_expires_at=expires)
        tx.emit(
            CallApprovalRequired(
                call_id=exc.call_id,
                step_id=exc.step_id,
                tool=exc.tool,
                arguments=exc.arguments,
                rule=check.rule or "",
                roles=list(check.roles),
                expires_at=expires,
                on_expiry=check.on_expiry if expires else None,
            )
        )

    return pause


def budget_gate(exc: BudgetExceededError, phase: Literal["planning", "executing"] = "executing") -> Pause:
    """The budget is spent: an approver raises it (back to ``approved``, or to ``queued`` when
    the planner was about to call its model: a revision or a replan) or cancels."""

    def pause(tx: TaskTx) -> None:
        gate = {"kind": "budget", "limit": exc.limit, "phase": phase}
        tx.transition(TaskStatus.NEEDS_ATTENTION, gate=gate, gate_expires_at=None)
        tx.emit(BudgetExceeded(limit=exc.limit, spent=exc.spent, budget=exc.budget))

    return pause


def in_doubt(exc: InDoubtError) -> Pause:
    """A call that may have had effects has no recorded result: an operator resolves it."""
    event = NeedsAttention(
        tool_call_id=exc.call.id, tool=exc.call.tool_name, step_id=exc.call.step_id, reason=exc.message
    )

    def pause(tx: TaskTx) -> None:
        tx.transition(TaskStatus.NEEDS_ATTENTION)
        tx.emit(event)

    return pause
