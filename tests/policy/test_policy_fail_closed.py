"""Property tests: whatever the facts (wrong types, NaN costs, unknown tools, garbage annotations),
evaluation never raises, and a plan is auto-approved or a call allowed by a rule only when that
rule's conditions really hold for well-formed facts. Anything else is a refusal or a gate."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.policy import (
    Allow,
    AutoApprove,
    CallFacts,
    DenyCall,
    DenyPlan,
    PlanFacts,
    Policy,
    RequireApproval,
    RequireCallApproval,
    decide_call,
    decide_plan,
    policy_from_data,
)
from agent_runtime.policy.engine import json_equal
from agent_runtime.policy.model import AllowCallRule, AutoApproveRule, CallMatch, PlanMatch, ToolMatch
from agent_runtime.tools.base import ToolInfo

NAMES = ["notes.read", "notes.write", "web.search", "gh.delete_repo", "odd", "a.b.c", ""]
GLOBS = ["notes.*", "*.read", "gh.delete_*", "*", "web.search", "nothing"]
GARBAGE: list[Any] = [None, 0, 1, "", "yes", 1.5, [], {}, object()]
MAYBE_BOOL = st.sampled_from([True, False, None, 0, 1, "true"])

# --- policies --------------------------------------------------------------------------------

tool_match = st.fixed_dictionaries(
    {},
    optional={
        "name": st.lists(st.sampled_from(GLOBS), min_size=1, max_size=2),
        "server": st.lists(st.sampled_from(["notes", "web", "gh"]), min_size=1, max_size=2),
        "read_only": st.booleans(),
        "destructive": st.booleans(),
        "idempotent": st.booleans(),
        "open_world": st.booleans(),
    },
)
who = {
    "tenant": st.lists(st.sampled_from(["acme", "globex"]), min_size=1, max_size=2),
    "roles": st.lists(st.sampled_from(["submitter", "admin", "viewer"]), min_size=1, max_size=2),
    "metadata": st.dictionaries(st.sampled_from(["env", "n"]), st.sampled_from(["prod", 1, True]), max_size=2),
}
plan_match = st.fixed_dictionaries(
    {},
    optional={
        "any_tool": tool_match,
        "all_tools": tool_match,
        "steps": st.just({"min": 1, "max": 3}) | st.just({"max": 2}),
        "cost_usd": st.just({"max": 1.0}) | st.just({"min": 0.5}),
        **who,
    },
)
plan_rule: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "decision": st.sampled_from(["auto_approve", "auto_approve", "require_approval", "deny"]),
        "match": plan_match,
        "allow_risky": st.booleans(),
    }
).map(lambda r: r if r["decision"] == "auto_approve" else {k: v for k, v in r.items() if k != "allow_risky"})
arg_matcher = st.sampled_from(
    [{"equals": True}, {"glob": "/etc/*"}, {"regex": "rm -rf"}, {"in": ["prod", 1]}, {"equals": None}]
)
call_match = st.fixed_dictionaries(
    {},
    optional={
        "name": st.lists(st.sampled_from(GLOBS), min_size=1, max_size=2),
        "destructive": st.booleans(),
        "read_only": st.booleans(),
        "open_world": st.booleans(),
        "arguments": st.dictionaries(st.sampled_from(["path", "force"]), arg_matcher, min_size=1, max_size=2),
        **who,
    },
)
call_rule = st.fixed_dictionaries(
    {"decision": st.sampled_from(["allow", "allow", "require_call_approval", "deny"]), "match": call_match}
)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    plan_rules: list[dict[str, Any]] = draw(st.lists(plan_rule, max_size=4))
    call_rules: list[dict[str, Any]] = draw(st.lists(call_rule, max_size=4))
    return policy_from_data(
        {
            "plan_rules": [{"id": f"p{i}", **r} for i, r in enumerate(plan_rules)],
            "call_rules": [{"id": f"c{i}", **r} for i, r in enumerate(call_rules)],
        }
    )


# --- facts, often malformed ------------------------------------------------------------------

infos = st.builds(
    lambda name, ro, de, idem, ow: ToolInfo(
        server_id=name.partition(".")[0],
        name=name.partition(".")[2],
        description="",
        input_schema={},
        read_only=ro,
        destructive=de,
        idempotent=idem,
        open_world=ow,
    ),
    st.sampled_from(NAMES),
    MAYBE_BOOL,
    MAYBE_BOOL,
    MAYBE_BOOL,
    MAYBE_BOOL,
)
catalogs = st.dictionaries(st.sampled_from(NAMES), infos, max_size=len(NAMES))
plans = st.lists(st.lists(st.sampled_from(NAMES), max_size=3), min_size=1, max_size=4).map(
    lambda steps: Plan(
        summary="s",
        steps=[PlanStep(id=f"s{i}", title="t", instruction="i", tools=t, depends_on=[]) for i, t in enumerate(steps)],
    )
)
# Mostly well-formed facts, so that rules really match; a fair share of malformed ones.
tenants = st.sampled_from(["acme", "acme", "globex", "other", *GARBAGE[:3]])
roles = st.one_of(
    st.frozensets(st.sampled_from(["submitter", "admin", "viewer"])),
    st.frozensets(st.sampled_from(["submitter", "admin"]), min_size=1),
    st.sampled_from([None, "admin", 3, ["admin"]]),
)
metadata: st.SearchStrategy[Any] = st.one_of(
    st.dictionaries(st.sampled_from(["env", "n"]), st.sampled_from(["prod", 1, True, None])),
    st.fixed_dictionaries({"env": st.just("prod"), "n": st.sampled_from([1, True])}),
    st.sampled_from([None, [], "env=prod"]),
)
costs = st.one_of(
    st.floats(min_value=0, max_value=2),
    st.floats(min_value=0, max_value=2),
    st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(["1", True, -1]),
)
arguments: st.SearchStrategy[Any] = st.one_of(
    st.dictionaries(
        st.sampled_from(["path", "force"]), st.sampled_from(["/etc/passwd", "prod", True, 1, None, ["x"], "rm -rf /"])
    ),
    st.sampled_from([None, [], "path=/etc"]),
)
plan_facts = st.builds(
    PlanFacts,
    plan=st.one_of(plans, plans, plans, st.sampled_from(GARBAGE)),
    tenant=tenants,
    roles=roles,
    metadata=metadata,
    estimated_cost_usd=costs,
)


# --- an independent oracle for "this rule's conditions hold" ---------------------------------


def _who_holds(match: PlanMatch | CallMatch, tenant: Any, held: Any, meta: Any) -> bool:
    if match.tenant is not None and not (isinstance(tenant, str) and tenant in match.tenant):
        return False
    if match.roles is not None and (
        isinstance(held, str) or not isinstance(held, Iterable) or not set(match.roles) & {str(r) for r in held}
    ):
        return False
    if match.metadata is not None:
        if not isinstance(meta, Mapping):
            return False
        if not all(k in meta and json_equal(meta[k], v) for k, v in match.metadata.items()):
            return False
    return True


def _annotations_hold(m: ToolMatch, info: ToolInfo | None) -> bool:
    wanted = {
        "read_only": m.read_only,
        "destructive": m.destructive,
        "idempotent": m.idempotent,
        "open_world": m.open_world,
    }
    if all(v is None for v in wanted.values()):
        return True
    if info is None:  # an unknown tool can only match the risky values
        risky = {"read_only": False, "destructive": True, "idempotent": False, "open_world": True}
        return all(v is None or v == risky[k] for k, v in wanted.items())
    # A True the rule asks for must be a real True in the data (garbage never reads as safe).
    safe_true = {"read_only": info.read_only is True, "idempotent": info.idempotent is True}
    return all(v is not True or safe_true.get(k, True) for k, v in wanted.items())


def _non_risky(info: ToolInfo | None) -> bool:
    return info is not None and info.open_world is False and (info.read_only is True or info.destructive is False)


@settings(max_examples=250, deadline=None)
@given(policy=policies(), facts=plan_facts, catalog=catalogs)
def test_a_plan_is_auto_approved_only_by_a_rule_whose_conditions_hold(
    policy: Policy, facts: PlanFacts, catalog: dict[str, ToolInfo]
) -> None:
    decision = decide_plan(policy, facts, catalog)
    assert isinstance(decision, AutoApprove | RequireApproval | DenyPlan)
    if not isinstance(decision, AutoApprove):
        return
    rule = next(r for r in policy.plan_rules if r.id == decision.rule_id)
    assert isinstance(rule, AutoApproveRule)
    assert isinstance(facts.plan, Plan)
    tools = sorted(facts.plan.all_tools())
    if not rule.allow_risky:
        assert all(_non_risky(catalog.get(t)) for t in tools)
    m = rule.match
    assert _who_holds(m, facts.tenant, facts.roles, facts.metadata)
    if m.cost_usd is not None:
        cost = facts.estimated_cost_usd
        assert isinstance(cost, float | int) and not isinstance(cost, bool) and math.isfinite(cost)
        assert (m.cost_usd.min is None or cost >= m.cost_usd.min) and (m.cost_usd.max is None or cost <= m.cost_usd.max)
    if m.steps is not None:
        assert (m.steps.min or 0) <= len(facts.plan.steps) <= (m.steps.max or math.inf)
    if m.all_tools is not None:
        assert all(_annotations_hold(m.all_tools, catalog.get(t)) for t in tools)
    if m.any_tool is not None:
        assert any(_annotations_hold(m.any_tool, catalog.get(t)) for t in tools)


@settings(max_examples=120, deadline=None)
@given(policy=policies(), facts=plan_facts, catalog=catalogs)
def test_without_an_auto_approve_rule_nothing_is_ever_auto_approved(
    policy: Policy, facts: PlanFacts, catalog: dict[str, ToolInfo]
) -> None:
    strict = policy.model_copy(
        update={"plan_rules": [r for r in policy.plan_rules if not isinstance(r, AutoApproveRule)]}
    )
    assert not isinstance(decide_plan(strict, facts, catalog), AutoApprove)


call_facts = st.builds(
    CallFacts,
    tool=st.sampled_from([*NAMES, None, 3]),
    arguments=arguments,
    info=st.none() | infos,
    tenant=tenants,
    roles=roles,
    metadata=metadata,
)


@settings(max_examples=250, deadline=None)
@given(policy=policies(), facts=call_facts)
def test_a_call_is_allowed_only_by_an_allow_rule_that_holds_or_when_no_rule_applies(
    policy: Policy, facts: CallFacts
) -> None:
    closed = policy.model_copy(
        update={
            "call_rules": [
                *policy.call_rules,
                *policy_from_data({"call_rules": [{"id": "rest", "decision": "deny"}]}).call_rules,
            ]
        }
    )
    decision = decide_call(closed, facts)
    assert isinstance(decision, Allow | RequireCallApproval | DenyCall)
    if not isinstance(decision, Allow):
        return
    # The catch-all deny at the end means an allow can only come from an explicit allow rule.
    rule = next(r for r in closed.call_rules if r.id == decision.rule_id)
    assert isinstance(rule, AllowCallRule)
    m = rule.match
    assert isinstance(facts.tool, str)
    assert _who_holds(m, facts.tenant, facts.roles, facts.metadata)
    assert _annotations_hold(m, facts.info)
    if m.arguments is not None:
        assert isinstance(facts.arguments, Mapping)
        assert set(m.arguments) <= set(facts.arguments)


@settings(max_examples=120, deadline=None)
@given(policy=policies(), facts=call_facts)
def test_malformed_arguments_never_pass_a_rule_that_looks_at_arguments(policy: Policy, facts: CallFacts) -> None:
    looks = [r for r in policy.call_rules if r.match.arguments is not None and not isinstance(r, AllowCallRule)]
    if isinstance(facts.arguments, Mapping) or not looks or not isinstance(facts.tool, str):
        return
    decision = decide_call(policy, facts)
    # The engine reaches a strict rule that inspects the arguments, or stops earlier at another rule.
    assert not (isinstance(decision, Allow) and decision.rule_id is None)
