"""Events of the approval policy at run time: call gates, expiry, model usage and budgets."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from agent_runtime.domain.events.base import EventRecord


class CallApprovalRequired(EventRecord):
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


class CallDecided(EventRecord):
    """An approver approved, denied or edited a gated tool call (or it expired: ``approval_expired``)."""

    type: Literal["call_decided"] = "call_decided"
    call_id: str
    decision: Literal["approve", "deny", "edit"]
    actor: str | None
    reason: str | None = None
    tool: str = Field(description="The tool that will be called (an edit may name another)")
    arguments: dict[str, Any] = Field(description="The arguments it will be called with (after an edit)")


class ApprovalExpired(EventRecord):
    """A plan approval or a call gate waited past its ``expire_after``; ``action`` was taken."""

    type: Literal["approval_expired"] = "approval_expired"
    kind: Literal["plan", "call"]
    rule: str | None
    action: Literal["reject", "cancel", "approve"]
    plan_version: int | None = None
    call_id: str | None = None


class LLMUsage(EventRecord):
    """One model call's tokens and cost, recorded durably (the task's budget counts them)."""

    type: Literal["llm_usage"] = "llm_usage"
    role: Literal["planner", "executor"]
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    step_id: str | None = None


class BudgetExceeded(EventRecord):
    """The task reached a budget limit: it is paused (``needs_attention``) before spending more,
    until an approver raises the budget (``POST …/budget``) or cancels it."""

    type: Literal["budget_exceeded"] = "budget_exceeded"
    limit: str = Field(description="Which limit: input_tokens, output_tokens, cost_usd, tool_calls or wall_seconds")
    spent: dict[str, float]
    budget: dict[str, float]


class BudgetRaised(EventRecord):
    """An approver raised a paused task's budget; execution continues."""

    type: Literal["budget_raised"] = "budget_raised"
    actor: str | None
    budget: dict[str, float]
