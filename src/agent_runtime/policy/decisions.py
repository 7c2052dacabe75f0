"""What the engine is given (facts) and what it answers (decisions): frozen records, no behaviour.

Every decision names the rule that made it (``rule_id``; ``None`` only for the default when no rule
matched), so the audit trail can say ``policy:<rule id>``. The ``decision`` field is the tag of the
union, for a ``match`` statement or a JSON payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any, Literal

from agent_runtime.domain.plan import Plan
from agent_runtime.settings import Budget
from agent_runtime.tools.base import ToolInfo

POLICY_ACTOR_PREFIX = "policy:"


# --- facts -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanFacts:
    """One plan version and its context, as the service knows them when the plan is proposed."""

    plan: Plan
    tenant: str
    roles: frozenset[str]
    """The submitter's role names."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """The task's metadata (a JSON object)."""
    estimated_cost_usd: float | None = None
    """``Estimate.cost_usd``; ``None`` when unknown (a cost condition is then "unknown": it never
    lets an ``auto_approve`` rule match, and never keeps a stricter rule from matching)."""


@dataclass(frozen=True, slots=True)
class CallFacts:
    """One tool call, before it is sent."""

    tool: str
    """The qualified name, ``server.tool``."""
    arguments: Mapping[str, Any]
    info: ToolInfo | None
    """The catalogue's entry for the tool; ``None`` (unknown) counts as destructive and open-world."""
    tenant: str
    roles: frozenset[str]
    metadata: Mapping[str, Any] = field(default_factory=dict)


# --- plan decisions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AutoApprove:
    rule_id: str
    budget: Budget | None = None
    decision: Literal["auto_approve"] = "auto_approve"

    @property
    def actor(self) -> str:
        """Who the approval is recorded as: ``policy:<rule id>``."""
        return POLICY_ACTOR_PREFIX + self.rule_id


@dataclass(frozen=True, slots=True)
class RequireApproval:
    rule_id: str | None
    """``None``: no rule matched; the defaults apply."""
    count: int
    """Distinct approvers needed."""
    roles: frozenset[str] | None = None
    """An approver must hold one of these; ``None``: anyone who may decide."""
    expire_after: timedelta | None = None
    on_expiry: Literal["reject", "cancel", "approve"] = "reject"
    sticky: bool = False
    budget: Budget | None = None
    skipped: tuple[str, ...] = ()
    """Why ``auto_approve`` rules that matched were passed over (risky tools), for the audit trail."""
    decision: Literal["require_approval"] = "require_approval"


@dataclass(frozen=True, slots=True)
class Refusal:
    """One rule refusing one tool (``tool`` is ``None`` when the rule refused the plan as a whole)."""

    rule_id: str
    tool: str | None
    reason: str

    def describe(self) -> str:
        what = f"tool {self.tool!r}" if self.tool is not None else "the plan"
        return f"policy rule {self.rule_id!r} refuses {what}" + (f": {self.reason}" if self.reason else "")


@dataclass(frozen=True, slots=True)
class DenyPlan:
    rule_id: str
    """The rule that decided (or, with ``error``, the rule being evaluated when it failed)."""
    refusals: tuple[Refusal, ...]
    """The deciding rule's refusals, then those of later ``deny`` rules that match too, so one
    repair can address them all."""
    error: bool = False
    """True: evaluation failed (bad runtime data, or a decision the engine does not know); the
    policy fails closed."""
    decision: Literal["deny"] = "deny"

    def message(self) -> str:
        """One text for the planner's repair attempt."""
        return "; ".join(r.describe() for r in self.refusals)


PlanDecision = AutoApprove | RequireApproval | DenyPlan


# --- call decisions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Allow:
    rule_id: str | None
    """``None``: no call rule matched (calls the approved plan allows are made by default)."""
    decision: Literal["allow"] = "allow"


@dataclass(frozen=True, slots=True)
class RequireCallApproval:
    rule_id: str
    roles: frozenset[str] | None = None
    expire_after: timedelta | None = None
    on_expiry: Literal["reject", "cancel"] = "reject"
    """``reject``: the call is refused and the model told so; ``cancel``: the task is cancelled."""
    decision: Literal["require_call_approval"] = "require_call_approval"


@dataclass(frozen=True, slots=True)
class DenyCall:
    rule_id: str
    reason: str
    """For the model (as the refused call's result) and the audit trail."""
    error: bool = False
    decision: Literal["deny"] = "deny"


CallDecision = Allow | RequireCallApproval | DenyCall


def decision_payload(decision: PlanDecision | CallDecision) -> dict[str, Any]:
    """A decision as JSON-ready data (for events and views): durations in seconds, role sets as
    sorted lists, a budget as the limits it sets, refusals as objects."""
    data: dict[str, Any] = {}
    for item in fields(decision):
        name, value = item.name, getattr(decision, item.name)
        if isinstance(value, timedelta):
            value = value.total_seconds()
        elif isinstance(value, frozenset):
            value = sorted(value)
        elif isinstance(value, Budget):
            value = value.model_dump(exclude_none=True)
        elif name == "refusals":
            value = [{"rule_id": r.rule_id, "tool": r.tool, "reason": r.reason} for r in value]
        elif isinstance(value, tuple):
            value = list(value)
        data[name] = value
    return data
