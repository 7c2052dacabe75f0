"""The policy file's shape: rules, their match conditions and their decisions (pydantic models).

Every model forbids unknown keys, so a typo is an error at load time rather than a condition that
silently never applies. A rule's ``decision`` selects its model (a tagged union): ``sticky`` on a
``deny`` rule, or a decision nobody defined, is refused when the file is read.

```yaml
plan_rules:                       # evaluated in order; the first rule that matches decides
  - id: read-only
    match: {all_tools: {read_only: true}}
    decision: auto_approve
call_rules:
  - id: gate-deletes
    match: {name: ["github.delete_*"]}
    decision: require_call_approval
```
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from agent_runtime.domain.identity import GRANTS, Permission, parse_roles
from agent_runtime.settings import Budget

RULE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: Any) -> Any:
    """``90s``, ``30m``, ``2h``, ``1d`` or a number of seconds (``600``); anything else is left to pydantic
    (ISO 8601 ``PT2H``, ``HH:MM:SS``)."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a text such as 30m, 2h, 1d")
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2) or "s"])
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("a duration must be finite")
        return timedelta(seconds=value)
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]


def _roles(value: list[str]) -> list[str]:
    parse_roles(value)  # raises ValueError naming the unknown ones
    return value


def _approver_roles(value: list[str]) -> list[str]:
    roles = parse_roles(value)
    cannot = sorted(r.value for r in roles if Permission.DECIDE not in GRANTS[r])
    if cannot:
        raise ValueError(f"role(s) {', '.join(cannot)} cannot decide approvals (use approver or admin)")
    return value


# --- match conditions ------------------------------------------------------------------------


class ToolMatch(_Model):
    """Conditions on one tool; all that are set must hold. Annotations are the effective ones
    (``ToolInfo``: MCP hints, MCP defaults for missing hints, registry overrides)."""

    name: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    """Qualified names (``example.wait``) or fnmatch globs (``github.delete_*``, ``*.read_*``); any may match."""
    server: list[str] | None = Field(default=None, min_length=1)
    """Server ids; any may match."""
    read_only: bool | None = None
    destructive: bool | None = None
    idempotent: bool | None = None
    open_world: bool | None = None


class Range(_Model):
    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("set min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g})")
        return self


class _Who(_Model):
    """Conditions on who submitted the task and on its metadata."""

    tenant: list[str] | None = Field(default=None, min_length=1)
    """The submitter's tenant is one of these."""
    roles: list[str] | None = Field(default=None, min_length=1)
    """The submitter holds at least one of these roles."""
    metadata: dict[str, Any] | None = None
    """Each key is present in the task's metadata with exactly this (JSON) value."""

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _roles(value)


class PlanMatch(_Who):
    """Conditions on a plan; all that are set must hold. An empty ``match`` matches every plan."""

    any_tool: ToolMatch | None = None
    """At least one tool the plan names matches (a ``deny`` rule refuses exactly those tools)."""
    all_tools: ToolMatch | None = None
    """Every tool the plan names matches (true for a plan that names no tool)."""
    steps: Range | None = None
    """The number of steps is within the range (inclusive)."""
    cost_usd: Range | None = None
    """The plan's estimated cost in USD is within the range (inclusive)."""


class ArgMatch(_Model):
    """One matcher for one top-level argument: exactly one of ``equals``, ``glob``, ``regex``, ``in``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    equals: Any = None
    glob: str | None = None
    """fnmatch pattern, case-sensitive, against a string value (a non-string never matches)."""
    regex: str | None = None
    """Python regular expression searched (``re.search``) in a string value; anchor it with ``^…$``."""
    in_: list[Any] | None = Field(default=None, alias="in", min_length=1)
    """The value equals one of these (JSON equality: ``1`` is not ``true``)."""

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [k for k in ("equals", "glob", "regex", "in", "in_") if k in data]
            if len(given) != 1:
                raise ValueError(f"give exactly one of equals, glob, regex, in (got {', '.join(given) or 'none'})")
        return data

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @property
    def kind(self) -> Literal["equals", "glob", "regex", "in"]:
        if self.glob is not None:
            return "glob"
        if self.regex is not None:
            return "regex"
        if self.in_ is not None:
            return "in"
        return "equals"


class CallMatch(ToolMatch, _Who):
    """Conditions on one tool call: the tool, who submitted the task, and the call's arguments."""

    arguments: dict[str, ArgMatch] | None = None
    """Top-level argument name → matcher; all must hold, and a missing argument does not match."""


# --- plan rules ------------------------------------------------------------------------------


class _Rule(_Model):
    id: str = Field(pattern=RULE_ID)
    description: str = ""


class _PlanRule(_Rule):
    match: PlanMatch = Field(default_factory=PlanMatch)


class _BudgetingRule(_PlanRule):
    budget: Budget | None = None
    """Limits for tasks whose plan this rule decided, replacing the ``budgets:`` defaults it sets
    (not on ``deny``: a refused plan runs nothing)."""


class AutoApproveRule(_BudgetingRule):
    decision: Literal["auto_approve"]
    allow_risky: bool = False
    """Without it, the rule never applies to a plan with a destructive or open-world tool (a tool
    without hints counts as both, per the MCP defaults); evaluation goes on with the next rule."""


class RequireApprovalRule(_BudgetingRule):
    decision: Literal["require_approval"]
    roles: list[str] | None = Field(default=None, min_length=1)
    """Roles an approver must hold (one of); default: anyone who may decide (approver, admin)."""
    count: int | None = Field(default=None, ge=1, le=10)
    """Distinct approvers needed; default: ``approvals.required``."""
    expire_after: Duration | None = None
    on_expiry: Literal["reject", "cancel", "approve"] | None = None
    """What happens when ``expire_after`` passes without a decision; default ``reject``. ``approve``
    applies only when written here."""
    sticky: bool = False
    """A new plan version whose steps and tools are a subset of an approved version keeps its approval."""

    @field_validator("roles")
    @classmethod
    def _deciding_roles(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _approver_roles(value)

    @model_validator(mode="after")
    def _expiry(self) -> RequireApprovalRule:
        _check_expiry(self.expire_after, self.on_expiry)
        return self


class DenyPlanRule(_PlanRule):
    decision: Literal["deny"]
    reason: str = ""
    """Told to the planner (with the rule id and the refused tools) for its repair attempt."""


PlanRule = Annotated[AutoApproveRule | RequireApprovalRule | DenyPlanRule, Field(discriminator="decision")]


# --- call rules ------------------------------------------------------------------------------


class _CallRule(_Rule):
    match: CallMatch = Field(default_factory=CallMatch)


class AllowCallRule(_CallRule):
    decision: Literal["allow"]


class RequireCallApprovalRule(_CallRule):
    decision: Literal["require_call_approval"]
    roles: list[str] | None = Field(default=None, min_length=1)
    """Roles the approver of the call must hold (one of); default: anyone who may decide."""
    expire_after: Duration | None = None
    on_expiry: Literal["reject", "cancel"] | None = None
    """``reject`` (default): the call is refused and the model told so; ``cancel``: the task is cancelled."""

    @field_validator("roles")
    @classmethod
    def _deciding_roles(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _approver_roles(value)

    @model_validator(mode="after")
    def _expiry(self) -> RequireCallApprovalRule:
        _check_expiry(self.expire_after, self.on_expiry)
        return self


class DenyCallRule(_CallRule):
    decision: Literal["deny"]
    reason: str = ""
    """Given to the model as the refused call's result."""


CallRule = Annotated[AllowCallRule | RequireCallApprovalRule | DenyCallRule, Field(discriminator="decision")]


def _check_expiry(expire_after: timedelta | None, on_expiry: str | None) -> None:
    if expire_after is not None and expire_after <= timedelta(0):
        raise ValueError("expire_after must be positive")
    if on_expiry is not None and expire_after is None:
        raise ValueError("on_expiry needs expire_after")


# --- the file --------------------------------------------------------------------------------


class Policy(_Model):
    """A whole policy file. With no rule, every plan waits for approval and every call is made."""

    version: Literal[1] = 1
    plan_rules: list[PlanRule] = Field(default_factory=list)
    call_rules: list[CallRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> Policy:
        for kind, rules in (("plan_rules", self.plan_rules), ("call_rules", self.call_rules)):
            seen: dict[str, int] = {}
            for index, rule in enumerate(rules):
                if rule.id in seen:
                    raise ValueError(f"{kind}[{index}]: id {rule.id!r} is already used by {kind}[{seen[rule.id]}]")
                seen[rule.id] = index
        return self


DEFAULT_POLICY = Policy()
"""The built-in policy (``policy.path`` unset): no rules. Every plan waits for
``approvals.required`` approvers, every call the approved plan allows is made."""
