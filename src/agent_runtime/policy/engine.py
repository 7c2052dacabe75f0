"""Rule evaluation: pure functions from a policy and facts to a decision. No I/O, never raises.

Rules are tried in order and the first that matches decides. The engine **fails closed**:

* an exception while evaluating (facts of the wrong type, a tool name that is not text, …) is a
  ``deny`` carrying the reason, never a pass;
* a rule whose decision the engine does not know is a ``deny``;
* a condition whose value is unknown (no cost estimate) does not hold for a permissive rule
  (``auto_approve``, ``allow``) and does hold for a strict one (``require_approval``, ``deny``,
  ``require_call_approval``);
* a tool missing from the catalogue has the MCP defaults: not read-only, destructive, open-world;
* ``auto_approve`` never applies to a plan with a destructive or open-world tool unless the rule
  says ``allow_risky: true`` (evaluation goes on with the next rule).

With no matching rule a plan needs approval (``approvals.required`` approvers) and a call is made.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from agent_runtime.policy.decisions import (
    Allow,
    AutoApprove,
    CallDecision,
    CallFacts,
    DenyCall,
    DenyPlan,
    PlanDecision,
    PlanFacts,
    Refusal,
    RequireApproval,
    RequireCallApproval,
)
from agent_runtime.policy.model import (
    AllowCallRule,
    ArgMatch,
    AutoApproveRule,
    CallMatch,
    DenyCallRule,
    DenyPlanRule,
    PlanMatch,
    Policy,
    Range,
    RequireApprovalRule,
    RequireCallApprovalRule,
    ToolMatch,
)
from agent_runtime.settings import ApprovalSettings
from agent_runtime.tools.base import ToolInfo

Tri = bool | None
"""A condition's outcome: holds, does not hold, or unknown (``None``)."""
_MAX_REASON = 300


@dataclass(frozen=True, slots=True)
class ToolView:
    """A tool as the rules see it: its name and its effective annotations (risky when unknown)."""

    name: str
    server: str
    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool

    @property
    def risky(self) -> bool:
        return self.destructive or self.open_world

    @classmethod
    def of(cls, name: str, info: ToolInfo | None) -> ToolView:
        if not isinstance(name, str):
            raise TypeError(f"tool name is {type(name).__name__}, not text")
        server = name.partition(".")[0]
        if info is None:
            return cls(name, server, read_only=False, destructive=True, idempotent=False, open_world=True)
        read_only = info.read_only is True
        return cls(
            name,
            server,
            read_only=read_only,
            destructive=not read_only and info.destructive is not False,
            idempotent=info.idempotent is True,
            open_world=info.open_world is not False,
        )


# --- plans -----------------------------------------------------------------------------------


def decide_plan(
    policy: Policy,
    facts: PlanFacts,
    tools: Mapping[str, ToolInfo],
    *,
    approvals: ApprovalSettings | None = None,
) -> PlanDecision:
    """Decide what a proposed plan version needs. ``tools`` is the catalogue by qualified name;
    ``approvals`` gives the default approver count (``approvals.required``)."""
    rule_id = "(policy)"
    try:
        required = (approvals or ApprovalSettings()).required
        views = [ToolView.of(name, tools.get(name)) for name in sorted(facts.plan.all_tools())]
        risky = [v.name for v in views if v.risky]
        skipped: list[str] = []
        rules = list(policy.plan_rules)
        for index, rule in enumerate(rules):
            rule_id = rule.id
            outcome, matched_tools = _plan_match(rule.match, facts, views)
            if not _applies(outcome, permissive=isinstance(rule, AutoApproveRule)):
                continue
            if isinstance(rule, AutoApproveRule):
                if risky and not rule.allow_risky:
                    skipped.append(
                        f"rule {rule.id!r} does not auto-approve a plan with destructive or open-world "
                        f"tools ({', '.join(risky)}) without allow_risky: true"
                    )
                    continue
                return AutoApprove(rule_id=rule.id, budget=rule.budget)
            if isinstance(rule, RequireApprovalRule):
                return RequireApproval(
                    rule_id=rule.id,
                    count=rule.count or required,
                    roles=frozenset(rule.roles) if rule.roles is not None else None,
                    expire_after=rule.expire_after,
                    on_expiry=rule.on_expiry or "reject",
                    sticky=rule.sticky,
                    budget=rule.budget,
                    skipped=tuple(skipped),
                )
            if isinstance(rule, DenyPlanRule):
                refusals = _refusals(rule, matched_tools, views)
                for later in rules[index + 1 :]:
                    if isinstance(later, DenyPlanRule):
                        rule_id = later.id
                        later_outcome, later_tools = _plan_match(later.match, facts, views)
                        if _applies(later_outcome, permissive=False):
                            refusals.extend(_refusals(later, later_tools, views))
                return DenyPlan(rule_id=rule.id, refusals=tuple(refusals))
            return _unknown_plan_decision(rule_id, rule)
        return RequireApproval(rule_id=None, count=required, skipped=tuple(skipped))
    except Exception as exc:  # fail closed: bad runtime data is a refusal, never a pass
        reason = f"policy evaluation failed in rule {rule_id!r}: {_describe(exc)}"
        return DenyPlan(rule_id=rule_id, refusals=(Refusal(rule_id, None, reason),), error=True)


def _unknown_plan_decision(rule_id: str, rule: object) -> DenyPlan:
    reason = f"unknown decision {getattr(rule, 'decision', None)!r}; refused (fail closed)"
    return DenyPlan(rule_id=rule_id, refusals=(Refusal(rule_id, None, reason),), error=True)


def _refusals(rule: DenyPlanRule, matched_tools: list[str], views: list[ToolView]) -> list[Refusal]:
    if rule.match.any_tool is not None:
        tools: list[str | None] = list(matched_tools)
    elif rule.match.all_tools is not None and views:
        tools = [v.name for v in views]
    else:
        tools = [None]
    return [Refusal(rule.id, tool, rule.reason) for tool in tools]


def _plan_match(match: PlanMatch, facts: PlanFacts, views: list[ToolView]) -> tuple[Tri, list[str]]:
    conditions: list[Tri] = []
    matched: list[str] = []
    if match.any_tool is not None:
        matched = [v.name for v in views if _tool_matches(match.any_tool, v)]
        conditions.append(bool(matched))
    if match.all_tools is not None:
        conditions.append(all(_tool_matches(match.all_tools, v) for v in views))
    if match.steps is not None:
        conditions.append(_in_range(match.steps, len(facts.plan.steps)))
    if match.cost_usd is not None:
        conditions.append(_in_range(match.cost_usd, facts.estimated_cost_usd))
    conditions.extend(_who(match.tenant, match.roles, match.metadata, facts.tenant, facts.roles, facts.metadata))
    return _all(conditions), matched


# --- calls -----------------------------------------------------------------------------------


def decide_call(policy: Policy, facts: CallFacts) -> CallDecision:
    """Decide whether a tool call may be sent now, must wait for an approver, or is refused.

    Call it again for a call an approver edited, with the tool and arguments of the edit: an edit
    that names another tool gets that tool's rules, never the gate the original call passed."""
    rule_id = "(policy)"
    try:
        view = ToolView.of(facts.tool, facts.info)
        for rule in policy.call_rules:
            rule_id = rule.id
            outcome = _call_match(rule.match, facts, view)
            if not _applies(outcome, permissive=isinstance(rule, AllowCallRule)):
                continue
            if isinstance(rule, AllowCallRule):
                return Allow(rule_id=rule.id)
            if isinstance(rule, RequireCallApprovalRule):
                return RequireCallApproval(
                    rule_id=rule.id,
                    roles=frozenset(rule.roles) if rule.roles is not None else None,
                    expire_after=rule.expire_after,
                    on_expiry=rule.on_expiry or "reject",
                )
            if isinstance(rule, DenyCallRule):
                return DenyCall(rule_id=rule.id, reason=rule.reason or f"refused by policy rule {rule.id!r}")
            reason = f"unknown decision {getattr(rule, 'decision', None)!r}; refused (fail closed)"
            return DenyCall(rule_id=rule_id, reason=reason, error=True)
        return Allow(rule_id=None)
    except Exception as exc:  # fail closed
        return DenyCall(
            rule_id=rule_id, reason=f"policy evaluation failed in rule {rule_id!r}: {_describe(exc)}", error=True
        )


def _call_match(match: CallMatch, facts: CallFacts, view: ToolView) -> Tri:
    conditions: list[Tri] = [_tool_matches(match, view)]
    conditions.extend(_who(match.tenant, match.roles, match.metadata, facts.tenant, facts.roles, facts.metadata))
    if match.arguments is not None:
        arguments = facts.arguments
        if not isinstance(arguments, Mapping):
            raise TypeError(f"the call's arguments are {type(arguments).__name__}, not an object")
        conditions.extend(
            name in arguments and arg_matches(matcher, arguments[name]) for name, matcher in match.arguments.items()
        )
    return _all(conditions)


def arg_matches(matcher: ArgMatch, value: Any) -> bool:
    """Whether one argument value satisfies one matcher (``glob``/``regex`` need text)."""
    kind = matcher.kind
    if kind == "glob":
        return isinstance(value, str) and fnmatchcase(value, matcher.glob or "")
    if kind == "regex":
        return isinstance(value, str) and re.search(matcher.regex or "", value) is not None
    if kind == "in":
        return any(json_equal(value, option) for option in matcher.in_ or ())
    return json_equal(value, matcher.equals)


# --- shared conditions -----------------------------------------------------------------------


def _tool_matches(match: ToolMatch, view: ToolView) -> bool:
    if match.name is not None and not any(fnmatchcase(view.name, pattern) for pattern in match.name):
        return False
    if match.server is not None and view.server not in match.server:
        return False
    return all(
        wanted is None or wanted == actual
        for wanted, actual in (
            (match.read_only, view.read_only),
            (match.destructive, view.destructive),
            (match.idempotent, view.idempotent),
            (match.open_world, view.open_world),
        )
    )


def _who(
    tenants: list[str] | None,
    roles: list[str] | None,
    metadata: dict[str, Any] | None,
    tenant: str,
    held: frozenset[str],
    task_metadata: Mapping[str, Any],
) -> list[Tri]:
    conditions: list[Tri] = []
    if tenants is not None:
        if not isinstance(tenant, str):
            raise TypeError(f"tenant is {type(tenant).__name__}, not text")
        conditions.append(tenant in tenants)
    if roles is not None:
        if isinstance(held, str) or not isinstance(held, Iterable):
            raise TypeError(f"roles are {type(held).__name__}, not a set of role names")
        names = {str(r) for r in held}
        conditions.append(any(role in names for role in roles))
    if metadata is not None:
        if not isinstance(task_metadata, Mapping):
            raise TypeError(f"metadata is {type(task_metadata).__name__}, not an object")
        conditions.extend(key in task_metadata and json_equal(task_metadata[key], v) for key, v in metadata.items())
    return conditions


def _in_range(bounds: Range, value: object) -> Tri:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None  # unknown
    if bounds.min is not None and value < bounds.min:
        return False
    return not (bounds.max is not None and value > bounds.max)


def _all(conditions: Iterable[Tri]) -> Tri:
    unknown = False
    for outcome in conditions:
        if outcome is False:
            return False
        if outcome is None:
            unknown = True
    return None if unknown else True


def _applies(outcome: Tri, *, permissive: bool) -> bool:
    """A permissive rule needs every condition to hold; a strict one also applies when unknown."""
    return outcome is True or (outcome is None and not permissive)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: ``true`` is not ``1``, ``"1"`` is not ``1``, ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return False


def _describe(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"
