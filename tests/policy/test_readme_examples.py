"""The policy examples in README.md load and decide what the README says they decide."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from agent_runtime.policy import (
    Allow,
    AutoApprove,
    DenyCall,
    DenyPlan,
    Policy,
    RequireApproval,
    RequireCallApproval,
    decide_call,
    decide_plan,
    policy_from_data,
)
from agent_runtime.settings import Budget
from agent_runtime.tools.registry import Registry
from tests.policy.helpers import READ, WRITE, call_facts, plan, plan_facts, tool

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def example(name: str) -> Policy:
    for block in BLOCK.findall(README.read_text(encoding="utf-8")):
        if block.startswith(f"# policy.yaml: {name}\n"):
            return policy_from_data(yaml.safe_load(block), source=f"README example {name!r}")
    raise AssertionError(f"README has no policy example {name!r}")


CATALOG = {
    "example.read_note": tool("example.read_note", **READ),
    "example.list_notes": tool("example.list_notes", **READ),
    "example.write_note": tool("example.write_note", **WRITE),
    "files.write_file": tool("files.write_file", read_only=False, destructive=True, open_world=False),
    "time.get_current_time": tool("time.get_current_time", read_only=True, open_world=True),
}


def test_the_read_only_example() -> None:
    p = example("read-only auto-approve")
    reads = decide_plan(p, plan_facts(plan(["example.read_note"], ["example.list_notes"])), CATALOG)
    assert reads == AutoApprove(rule_id="read-only", budget=Budget(tool_calls=50))
    assert reads.actor == "policy:read-only"
    writes = decide_plan(p, plan_facts(plan(["example.read_note", "example.write_note"])), CATALOG)
    assert isinstance(writes, RequireApproval) and writes.rule_id is None
    open_world = decide_plan(p, plan_facts(plan(["time.get_current_time"])), CATALOG)
    assert isinstance(open_world, RequireApproval)


def test_the_registry_snippet_that_vouches_for_a_tool_is_valid() -> None:
    text = README.read_text(encoding="utf-8")
    snippet = next(b for b in BLOCK.findall(text) if "vouched_by" in b and "id: time" in b)
    registry = Registry.from_data(yaml.safe_load("servers:\n" + snippet), base_dir=README.parent)
    override = registry.servers[0].tool_overrides()["get_current_time"]
    assert (override.open_world, override.vouched_by) == (False, "alice, SEC-142")


def test_the_destructive_call_gate_example() -> None:
    p = example("destructive call gate")
    refused = decide_call(p, call_facts("files.write_file", {"path": "/etc/hosts"}, catalog=CATALOG))
    assert refused == DenyCall(rule_id="no-system-paths", reason="system paths are off limits")
    gated = decide_call(p, call_facts("example.write_note", {"name": "n", "text": "t"}, catalog=CATALOG))
    assert isinstance(gated, RequireCallApproval)
    assert (gated.rule_id, gated.roles, gated.on_expiry) == ("gate-destructive", frozenset({"admin"}), "reject")
    assert gated.expire_after is not None and gated.expire_after.total_seconds() == 1800
    assert decide_call(p, call_facts("example.read_note", {"name": "n"}, catalog=CATALOG)) == Allow(None)


def test_the_cost_cap_example() -> None:
    p = example("cost cap")
    reads = plan(["example.read_note"])
    expensive = decide_plan(p, plan_facts(reads, cost=25), CATALOG)
    assert isinstance(expensive, DenyPlan) and expensive.rule_id == "too-expensive"
    assert "split the task" in expensive.message()
    costly = decide_plan(p, plan_facts(reads, cost=5), CATALOG)
    assert isinstance(costly, RequireApproval)
    assert (costly.rule_id, costly.count, costly.roles, costly.budget) == (
        "costly",
        2,
        frozenset({"admin"}),
        Budget(cost_usd=20),
    )
    assert decide_plan(p, plan_facts(reads, cost=0.4), CATALOG) == AutoApprove("cheap-read-only", Budget(cost_usd=2))
    writes = decide_plan(p, plan_facts(plan(["example.write_note"]), cost=0.4), CATALOG)
    assert isinstance(writes, RequireApproval) and writes.rule_id is None
    unknown = decide_plan(p, plan_facts(reads, cost=None), CATALOG)
    assert isinstance(unknown, DenyPlan) and unknown.rule_id == "too-expensive"
