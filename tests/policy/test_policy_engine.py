"""Rule evaluation: each match condition, first match wins, the risky-tool guard on auto-approve,
refusals that name rule and tool, call gates on arguments, and the defaults when nothing matches."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from pydantic import BaseModel

from agent_runtime.policy import (
    Allow,
    AutoApprove,
    DenyCall,
    DenyPlan,
    Policy,
    Refusal,
    RequireApproval,
    RequireCallApproval,
    decide_call,
    decide_plan,
    decision_payload,
)
from agent_runtime.policy.model import CallMatch, PlanMatch
from agent_runtime.settings import ApprovalSettings, Budget
from tests.policy.helpers import CATALOG, call_facts, plan, plan_facts, policy


def auto_if(match: str) -> Policy:
    """A policy that auto-approves (risky or not) exactly when ``match`` holds."""
    return policy(f"plan_rules:\n  - id: hit\n    decision: auto_approve\n    allow_risky: true\n    match: {match}\n")


def hits(p: Policy, facts: object) -> bool:
    decision = decide_plan(p, facts, CATALOG)  # type: ignore[arg-type]
    return isinstance(decision, AutoApprove) and decision.rule_id == "hit"


def test_with_no_rule_a_plan_waits_for_the_configured_number_of_approvers() -> None:
    decision = decide_plan(Policy(), plan_facts(plan(["notes.read"])), CATALOG, approvals=ApprovalSettings(required=2))
    assert decision == RequireApproval(rule_id=None, count=2)


def test_a_read_only_plan_is_auto_approved_and_recorded_as_the_rule() -> None:
    p = policy(
        "plan_rules:\n  - id: read-only\n    decision: auto_approve\n    match: {all_tools: {read_only: true}}\n"
    )
    decision = decide_plan(p, plan_facts(plan(["notes.read"], ["notes.list"])), CATALOG)
    assert decision == AutoApprove(rule_id="read-only")
    assert decision.actor == "policy:read-only"
    held = decide_plan(p, plan_facts(plan(["notes.read"], ["notes.write"])), CATALOG)
    assert isinstance(held, RequireApproval) and held.rule_id is None


def test_auto_approve_never_passes_a_destructive_or_open_world_tool_unless_the_rule_allows_risk() -> None:
    p = policy(
        "plan_rules:\n"
        "  - id: everything\n    decision: auto_approve\n"
        "  - id: fallback\n    decision: require_approval\n    count: 3\n"
    )
    for tools in (["notes.write"], ["web.search"], ["nobody.knows"]):  # destructive, open world, unknown
        decision = decide_plan(p, plan_facts(plan(tools)), CATALOG)
        assert isinstance(decision, RequireApproval), tools
        assert decision.rule_id == "fallback" and decision.count == 3
        assert "rule 'everything' does not auto-approve" in decision.skipped[0]
        assert tools[0] in decision.skipped[0]
    assert decide_plan(p, plan_facts(plan(["notes.read"])), CATALOG) == AutoApprove(rule_id="everything")
    risky = policy("plan_rules:\n  - id: yolo\n    decision: auto_approve\n    allow_risky: true\n")
    assert decide_plan(risky, plan_facts(plan(["gh.delete_repo"])), CATALOG) == AutoApprove(rule_id="yolo")


def test_the_first_matching_rule_wins() -> None:
    p = policy(
        "plan_rules:\n"
        "  - id: deny-deletes\n    decision: deny\n    match: {any_tool: {name: ['gh.delete_*']}}\n"
        "  - id: all\n    decision: auto_approve\n    allow_risky: true\n"
    )
    assert isinstance(decide_plan(p, plan_facts(plan(["gh.delete_repo"])), CATALOG), DenyPlan)
    assert isinstance(decide_plan(p, plan_facts(plan(["notes.write"])), CATALOG), AutoApprove)


@pytest.mark.parametrize(
    ("match", "matching", "other"),
    [
        ("{any_tool: {name: [notes.write]}}", ["notes.read", "notes.write"], ["notes.read"]),
        ("{any_tool: {name: ['notes.*']}}", ["notes.append"], ["web.search"]),
        ("{any_tool: {name: ['*.delete_*']}}", ["gh.delete_repo"], ["notes.write"]),
        ("{any_tool: {server: [web]}}", ["notes.read", "web.search"], ["notes.read"]),
        ("{any_tool: {read_only: false}}", ["notes.append"], ["notes.read", "web.search"]),
        ("{any_tool: {destructive: true}}", ["notes.write"], ["notes.append"]),
        ("{any_tool: {destructive: true}}", ["unknown.tool"], ["notes.read"]),
        ("{any_tool: {idempotent: true}}", ["notes.read"], ["notes.write"]),
        ("{any_tool: {open_world: true}}", ["web.search"], ["notes.write"]),
        ("{any_tool: {open_world: true}}", ["unknown.tool"], ["notes.append"]),
        ("{all_tools: {server: [notes]}}", ["notes.read", "notes.write"], ["notes.read", "web.search"]),
        ("{all_tools: {read_only: true, open_world: false}}", ["notes.read"], ["web.search"]),
        ("{all_tools: {read_only: true}}", ["notes.read"], ["unknown.read"]),
    ],
)
def test_tool_conditions(match: str, matching: list[str], other: list[str]) -> None:
    p = auto_if(match)
    assert hits(p, plan_facts(plan(matching)))
    assert not hits(p, plan_facts(plan(other)))


def test_step_count_condition_is_inclusive() -> None:
    p = auto_if("{steps: {min: 2, max: 3}}")
    assert [hits(p, plan_facts(plan(*([["notes.read"]] * n)))) for n in (1, 2, 3, 4)] == [False, True, True, False]


def test_cost_condition_and_an_unknown_cost() -> None:
    cheap = auto_if("{cost_usd: {max: 0.5}}")
    assert hits(cheap, plan_facts(plan(["notes.read"]), cost=0.5))
    assert not hits(cheap, plan_facts(plan(["notes.read"]), cost=0.51))
    for unknown in (None, float("nan"), float("inf")):
        assert not hits(cheap, plan_facts(plan(["notes.read"]), cost=unknown)), unknown
    # A strict rule applies when the cost is unknown: unknown never loosens the gate.
    strict = policy(
        "plan_rules:\n  - id: costly\n    decision: require_approval\n    count: 2\n    match: {cost_usd: {min: 10}}\n"
        "  - id: rest\n    decision: auto_approve\n"
    )
    assert decide_plan(strict, plan_facts(plan(["notes.read"]), cost=1), CATALOG) == AutoApprove(rule_id="rest")
    decision = decide_plan(strict, plan_facts(plan(["notes.read"]), cost=None), CATALOG)
    assert isinstance(decision, RequireApproval) and decision.rule_id == "costly" and decision.count == 2


def test_submitter_tenant_roles_and_task_metadata_conditions() -> None:
    by_tenant = auto_if("{tenant: [acme, globex]}")
    assert hits(by_tenant, plan_facts(plan(["notes.read"]), tenant="globex"))
    assert not hits(by_tenant, plan_facts(plan(["notes.read"]), tenant="initech"))
    by_role = auto_if("{roles: [admin]}")
    assert hits(by_role, plan_facts(plan(["notes.read"]), roles=frozenset({"submitter", "admin"})))
    assert not hits(by_role, plan_facts(plan(["notes.read"]), roles=frozenset({"submitter"})))
    by_meta = auto_if("{metadata: {env: staging, ticket: 42}}")
    assert hits(by_meta, plan_facts(plan(["notes.read"]), metadata={"env": "staging", "ticket": 42, "x": 1}))
    assert not hits(by_meta, plan_facts(plan(["notes.read"]), metadata={"env": "staging"}))
    assert not hits(by_meta, plan_facts(plan(["notes.read"]), metadata={"env": "staging", "ticket": "42"}))
    flag = auto_if("{metadata: {dry_run: true}}")
    assert hits(flag, plan_facts(plan(["notes.read"]), metadata={"dry_run": True}))
    assert not hits(flag, plan_facts(plan(["notes.read"]), metadata={"dry_run": 1}))


def test_conditions_combine_with_and() -> None:
    p = auto_if("{tenant: [acme], all_tools: {read_only: true}, steps: {max: 1}}")
    assert hits(p, plan_facts(plan(["notes.read"])))
    assert not hits(p, plan_facts(plan(["notes.read"]), tenant="other"))
    assert not hits(p, plan_facts(plan(["notes.read"], ["notes.read"])))
    assert not hits(p, plan_facts(plan(["notes.write"])))


def test_require_approval_carries_roles_count_expiry_stickiness_and_budget() -> None:
    p = policy(
        "plan_rules:\n  - id: gate\n    decision: require_approval\n    roles: [admin]\n    expire_after: 1h\n"
        "    sticky: true\n    budget: {cost_usd: 3}\n"
    )
    decision = decide_plan(p, plan_facts(plan(["notes.write"])), CATALOG, approvals=ApprovalSettings(required=2))
    assert decision == RequireApproval(
        rule_id="gate",
        count=2,  # from approvals.required when the rule gives none
        roles=frozenset({"admin"}),
        expire_after=timedelta(hours=1),
        on_expiry="reject",  # the default; approve only when written
        sticky=True,
        budget=Budget(cost_usd=3),
    )


def test_a_deny_names_every_refused_tool_and_every_deny_rule_that_matches() -> None:
    p = policy(
        "plan_rules:\n"
        "  - id: no-deletes\n    decision: deny\n    reason: deleting is done by hand\n"
        "    match: {any_tool: {name: ['*.delete_*']}}\n"
        "  - id: read-only\n    decision: auto_approve\n    match: {all_tools: {read_only: true}}\n"
        "  - id: no-web\n    decision: deny\n    match: {any_tool: {open_world: true}}\n"
        "  - id: small\n    decision: deny\n    match: {steps: {min: 3}}\n"
    )
    facts = plan_facts(plan(["notes.read", "gh.delete_repo"], ["web.search"]))
    decision = decide_plan(p, facts, CATALOG)
    assert decision == DenyPlan(
        rule_id="no-deletes",
        refusals=(
            Refusal("no-deletes", "gh.delete_repo", "deleting is done by hand"),
            Refusal("no-web", "gh.delete_repo", ""),
            Refusal("no-web", "web.search", ""),
        ),
    )
    assert decision.message() == (
        "policy rule 'no-deletes' refuses tool 'gh.delete_repo': deleting is done by hand; "
        "policy rule 'no-web' refuses tool 'gh.delete_repo'; policy rule 'no-web' refuses tool 'web.search'"
    )
    whole = decide_plan(p, plan_facts(plan(["notes.write"], ["notes.write"], ["notes.write"])), CATALOG)
    assert whole == DenyPlan(rule_id="small", refusals=(Refusal("small", None, ""),))
    assert whole.message() == "policy rule 'small' refuses the plan"


class FuturePlanRule(BaseModel):
    """A rule whose decision the engine does not know (as if the file model grew one and the engine did not)."""

    id: str
    decision: str
    match: PlanMatch = PlanMatch()


class FutureCallRule(BaseModel):
    id: str
    decision: str
    match: CallMatch = CallMatch()


def test_an_unknown_decision_is_a_refusal() -> None:
    plans = Policy.model_construct(
        version=1,
        plan_rules=[FuturePlanRule(id="rogue", decision="maybe")],  # type: ignore[list-item]
        call_rules=[],
    )
    decision = decide_plan(plans, plan_facts(plan(["notes.read"])), CATALOG)
    assert isinstance(decision, DenyPlan) and decision.error and decision.rule_id == "rogue"
    assert "unknown decision 'maybe'" in decision.message()
    calls = Policy.model_construct(
        version=1,
        plan_rules=[],
        call_rules=[FutureCallRule(id="rogue", decision="perhaps")],  # type: ignore[list-item]
    )
    denied = decide_call(calls, call_facts("notes.read"))
    assert isinstance(denied, DenyCall) and denied.error and "unknown decision 'perhaps'" in denied.reason


# --- calls -----------------------------------------------------------------------------------

GATE = policy(
    """
call_rules:
  - id: no-shell
    decision: deny
    reason: no shell access here
    match: {server: [shell]}
  - id: gate-deletes
    decision: require_call_approval
    roles: [admin]
    expire_after: 15m
    on_expiry: cancel
    match: {name: ["*.delete_*"]}
  - id: gate-forced-writes
    decision: require_call_approval
    match: {name: [notes.write], arguments: {force: {equals: true}}}
  - id: ok-reads
    decision: allow
    match: {read_only: true}
"""
)


def test_with_no_call_rule_a_call_is_allowed() -> None:
    assert decide_call(Policy(), call_facts("notes.write", {"text": "x"})) == Allow(rule_id=None)


def test_call_rules_gate_deny_and_allow_in_order() -> None:
    assert decide_call(GATE, call_facts("shell.run", {"cmd": "ls"})) == DenyCall(
        rule_id="no-shell", reason="no shell access here"
    )
    assert decide_call(GATE, call_facts("gh.delete_repo", {"name": "x"})) == RequireCallApproval(
        rule_id="gate-deletes", roles=frozenset({"admin"}), expire_after=timedelta(minutes=15), on_expiry="cancel"
    )
    assert decide_call(GATE, call_facts("notes.write", {"force": True})) == RequireCallApproval(
        rule_id="gate-forced-writes"
    )
    assert decide_call(GATE, call_facts("notes.write", {"force": 1})) == Allow(rule_id=None)  # 1 is not true
    assert decide_call(GATE, call_facts("notes.write", {})) == Allow(rule_id=None)  # a missing key does not match
    assert decide_call(GATE, call_facts("notes.read", {"name": "a"})) == Allow(rule_id="ok-reads")


def test_a_deny_rule_without_a_reason_says_which_rule_refused() -> None:
    p = policy("call_rules:\n  - id: nope\n    decision: deny\n")
    assert decide_call(p, call_facts("notes.read")) == DenyCall(rule_id="nope", reason="refused by policy rule 'nope'")


@pytest.mark.parametrize(
    ("matcher", "matching", "other"),
    [
        ("{equals: main}", "main", "Main"),
        ("{equals: 3}", 3.0, True),
        ("{equals: [1, {a: b}]}", [1, {"a": "b"}], [1, {"a": "c"}]),
        ("{glob: '/srv/*'}", "/srv/app", "/etc/passwd"),
        ("{glob: '*'}", "anything", 42),
        ("{regex: 'rm\\s+-rf'}", "sudo rm  -rf /", "rm -r"),
        ("{regex: '^prod-\\d+$'}", "prod-12", "prod-12x"),
        ("{regex: '.'}", "x", ["x"]),
        ("{in: [prod, staging]}", "prod", "dev"),
        ("{in: [1, 2]}", 2, True),
        ("{equals: null}", None, "null"),
    ],
)
def test_argument_matchers(matcher: str, matching: object, other: object) -> None:
    p = policy(f"call_rules:\n  - id: hit\n    decision: deny\n    match: {{arguments: {{target: {matcher}}}}}\n")
    assert decide_call(p, call_facts("notes.write", {"target": matching})) == DenyCall(
        "hit", "refused by policy rule 'hit'"
    )
    assert decide_call(p, call_facts("notes.write", {"target": other})) == Allow(rule_id=None)
    assert decide_call(p, call_facts("notes.write", {"other": matching})) == Allow(rule_id=None)


def test_call_rules_match_the_submitter_and_the_task_metadata() -> None:
    p = policy(
        "call_rules:\n  - id: prod\n    decision: require_call_approval\n"
        "    match: {tenant: [acme], roles: [submitter], metadata: {env: prod}}\n"
    )
    assert isinstance(decide_call(p, call_facts("notes.write", metadata={"env": "prod"})), RequireCallApproval)
    assert decide_call(p, call_facts("notes.write", metadata={"env": "dev"})) == Allow(rule_id=None)
    assert decide_call(p, call_facts("notes.write", metadata={"env": "prod"}, tenant="b")) == Allow(rule_id=None)
    admin_only = call_facts("notes.write", metadata={"env": "prod"}, roles=frozenset({"admin"}))
    assert decide_call(p, admin_only) == Allow(rule_id=None)


def test_an_unknown_tool_has_the_risky_defaults_at_call_time() -> None:
    p = policy("call_rules:\n  - id: gate\n    decision: require_call_approval\n    match: {destructive: true}\n")
    assert isinstance(decide_call(p, call_facts("nobody.knows")), RequireCallApproval)
    assert decide_call(p, call_facts("notes.read")) == Allow(rule_id=None)


def test_bad_runtime_data_is_a_refusal_naming_the_rule() -> None:
    p = policy("call_rules:\n  - id: args\n    decision: deny\n    match: {arguments: {path: {glob: '/etc/*'}}}\n")
    facts = call_facts("notes.write")
    bad = type(facts)(tool=facts.tool, arguments=["not", "an", "object"], info=None, tenant="acme", roles=frozenset())  # type: ignore[arg-type]
    decision = decide_call(p, bad)
    assert isinstance(decision, DenyCall) and decision.error and decision.rule_id == "args"
    assert "arguments are list, not an object" in decision.reason
    garbage_plan = decide_plan(auto_if("{tenant: [acme]}"), plan_facts(plan(["notes.read"]), tenant=None), CATALOG)  # type: ignore[arg-type]
    assert isinstance(garbage_plan, DenyPlan) and garbage_plan.error and garbage_plan.rule_id == "hit"
    not_a_plan = decide_plan(Policy(), plan_facts("not a plan"), CATALOG)  # type: ignore[arg-type]
    assert isinstance(not_a_plan, DenyPlan) and not_a_plan.error


def test_decisions_become_json_ready_payloads() -> None:
    gate = decide_plan(
        policy(
            "plan_rules:\n  - id: gate\n    decision: require_approval\n    roles: [admin, approver]\n"
            "    expire_after: 90s\n    budget: {cost_usd: 3}\n"
        ),
        plan_facts(plan(["notes.write"])),
        CATALOG,
    )
    assert decision_payload(gate) == {
        "rule_id": "gate",
        "count": 1,
        "roles": ["admin", "approver"],
        "expire_after": 90.0,
        "on_expiry": "reject",
        "sticky": False,
        "budget": {"cost_usd": 3.0},
        "skipped": [],
        "decision": "require_approval",
    }
    deny = decide_plan(
        policy("plan_rules:\n  - id: d\n    decision: deny\n    match: {any_tool: {server: [gh]}}\n"),
        plan_facts(plan(["gh.delete_repo"])),
        CATALOG,
    )
    assert decision_payload(deny) == {
        "rule_id": "d",
        "refusals": [{"rule_id": "d", "tool": "gh.delete_repo", "reason": ""}],
        "error": False,
        "decision": "deny",
    }
    assert json.loads(json.dumps(decision_payload(decide_call(GATE, call_facts("gh.delete_repo"))))) == {
        "rule_id": "gate-deletes",
        "roles": ["admin"],
        "expire_after": 900.0,
        "on_expiry": "cancel",
        "decision": "require_call_approval",
    }
