"""Builders shared by the policy tests: plans, catalogue entries, facts, policies from YAML text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.policy import CallFacts, PlanFacts, Policy, policy_from_data
from agent_runtime.tools.base import ToolInfo


def plan(*steps: list[str] | tuple[str, list[str]], summary: str = "s") -> Plan:
    """A plan with one step per argument: a list of tool names (ids s1, s2, …) or (id, tools)."""
    built = []
    for index, step in enumerate(steps, start=1):
        step_id, tools = step if isinstance(step, tuple) else (f"s{index}", step)
        built.append(PlanStep(id=step_id, title=step_id, instruction=f"do {step_id}", tools=tools, depends_on=[]))
    return Plan(summary=summary, steps=built)


def tool(name: str, **annotations: Any) -> ToolInfo:
    server, _, short = name.partition(".")
    return ToolInfo(server_id=server, name=short, description="", input_schema={"type": "object"}, **annotations)


READ = {"read_only": True, "idempotent": True, "destructive": False, "open_world": False}
WRITE = {"read_only": False, "idempotent": False, "destructive": True, "open_world": False}

CATALOG = {
    "notes.read": tool("notes.read", **READ),
    "notes.list": tool("notes.list", **READ),
    "notes.write": tool("notes.write", **WRITE),
    "notes.append": tool("notes.append", read_only=False, destructive=False, open_world=False),
    "web.search": tool("web.search", read_only=True, idempotent=True, destructive=False, open_world=True),
    "gh.delete_repo": tool("gh.delete_repo", read_only=False, destructive=True, open_world=True),
}


def policy(text: str) -> Policy:
    return policy_from_data(yaml.safe_load(text), source="test.yaml")


def plan_facts(
    p: Plan,
    *,
    tenant: str = "acme",
    roles: frozenset[str] = frozenset({"submitter"}),
    metadata: dict[str, Any] | None = None,
    cost: float | None = None,
) -> PlanFacts:
    return PlanFacts(plan=p, tenant=tenant, roles=roles, metadata=metadata or {}, estimated_cost_usd=cost)


def call_facts(
    name: str,
    arguments: dict[str, Any] | None = None,
    *,
    tenant: str = "acme",
    roles: frozenset[str] = frozenset({"submitter"}),
    metadata: dict[str, Any] | None = None,
    catalog: Mapping[str, ToolInfo] | None = None,
) -> CallFacts:
    return CallFacts(
        tool=name,
        arguments=arguments or {},
        info=(CATALOG if catalog is None else catalog).get(name),
        tenant=tenant,
        roles=roles,
        metadata=metadata or {},
    )
