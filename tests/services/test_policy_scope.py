"""Approval scope across plan versions, gates reopened and the planner's spending: a sticky rule
keeps an earlier approval for a replanned version within its scope; a call gate that pauses the
task again keeps its expiry; a revision is held to the budget, and a failed planning still counts
what its model calls spent.

Through the real service (HTTP, the real OpenAI SDK against the wire fake, the example MCP server
as a process), on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_runtime.domain.plan import Plan
from agent_runtime.domain.records import ApprovalRecord, PlanVersionRecord
from agent_runtime.llm.factory import build_llm_client
from agent_runtime.runtime import Overrides
from agent_runtime.services.approvals import carried_approvers
from agent_runtime.testing import ScriptedModel, ToolCalls
from agent_runtime.testing.fake_server import resolved_for
from tests.services.test_policy import _calls, _service, _types
from tests.support.harness import live_service, make_settings, read_stream, write_registry
from tests.support.identity import bearer, make_key, submit_as


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


KEYS = {"mode": "keys", "bootstrap_admin_key": False, "key_cache_seconds": 0}


def _step(sid: str, tool: str, deps: list[str] | None = None) -> dict[str, Any]:
    return {"id": sid, "title": sid, "instruction": f"do {sid}", "tools": [tool], "depends_on": deps or []}


def _replanning() -> ScriptedModel:
    """v1: s1 (add), s2 (echo: asks for three calls, over the limit of two, and asks for a replan),
    s3 (multiply, after s2). The replan keeps s3 as it was (only its dependency on the failed s2
    goes) when the request says "narrow", else it writes a new step with a new tool."""
    first = {"summary": "add, echo, multiply", "on_failure": {"action": "replan"}, "steps": [
        _step("s1", "example.add"), _step("s2", "example.echo", ["s1"]), _step("s3", "example.multiply", ["s2"]),
    ]}  # fmt: skip

    def plan(conversation: str) -> dict[str, Any]:
        if "Steps not yet done:" not in conversation:
            return first
        if "narrow" in conversation:
            return {"summary": "multiply only", "steps": [_step("s3", "example.multiply", ["s1"])]}
        prefix = conversation.split("New step ids start with:\n", 1)[1].split("\n", 1)[0]
        return {"summary": "list instead", "steps": [_step(f"{prefix}a", "example.list_notes", ["s1"])]}

    def calls(_conversation: str, step: str) -> ToolCalls:
        if step == "s1":
            return [("example.add", {"a": 2, "b": 3})]
        if step == "s2":
            return [("example.echo", {"text": "x"})] * 3
        if step == "s3":
            return [("example.multiply", {"a": 5, "b": 2})]
        return [("example.list_notes", {})]

    return ScriptedModel(plan, calls)


STICKY = """
plan_rules:
  - id: reviewed
    match: {}
    decision: require_approval
    roles: [approver]
    sticky: true
"""


async def test_a_sticky_rule_keeps_the_approval_for_a_replan_within_the_approved_scope(
    tmp_path: Path, backend: str
) -> None:
    limits = {"max_tool_calls_per_step": 2}
    async with _service(tmp_path, _replanning(), policy=STICKY, backend=backend, auth=KEYS, limits=limits) as (
        live,
        log,
    ):
        sam = await make_key(live, "sam", "acme", "submitter")
        ann = await make_key(live, "ann", "acme", "approver")
        narrow = await submit_as(live, sam, "add, echo, multiply; narrow on failure")
        wide = await submit_as(live, sam, "add, echo, multiply")
        async with httpx.AsyncClient(base_url=str(live.client.base_url), headers=bearer(ann), timeout=30) as as_ann:
            for task_id in (narrow, wide):
                approved = await as_ann.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": 1})
                assert approved.status_code == 202, approved.text
            kept = await read_stream(as_ann, narrow, until="task_completed")
            held = await read_stream(as_ann, wide, until="replan_requested")
            held += await read_stream(as_ann, wide, after=held[-1]["sse_id"], until="approval_required")
            trail = (await as_ann.get(f"/v1/tasks/{narrow}/approvals")).json()
            inbox = (await as_ann.get("/v1/approvals")).json()["items"]
            again = await as_ann.post(f"/v1/tasks/{wide}/approve", json={"plan_version": 2})
            wide_done = await read_stream(as_ann, wide, until="task_completed")

    # v2 of the narrow task is s1 (done) and s3 as approved: ann's approval of v1 carries over.
    approvals = [e["data"] for e in kept if e["type"] == "task_approved"]
    assert [(a["plan_version"], a["actor"], a["approvers"]) for a in approvals] == [
        (1, "ann", ["ann"]),
        (2, "policy:reviewed", ["ann"]),
    ]
    assert _types(kept).count("approval_required") == 1  # v1's only
    assert [(a["plan_version"], a["decision"], a["actor"]) for a in trail] == [
        (1, "approved", "ann"),
        (2, "approved", "policy:reviewed"),
    ]
    assert "carry over" in trail[1]["comment"] and "ann" in trail[1]["comment"]
    # The wide task's v2 adds a step with a new tool: it waits, in ann's inbox, and ann approves it.
    assert [(i["task_id"], i["plan_version"]) for i in inbox] == [(wide, 2)]
    assert again.status_code == 202 and again.json()["status"] == "approved", again.text
    assert [e["data"]["actor"] for e in wide_done if e["type"] == "task_approved"] == ["ann", "ann"]
    tools = [tool for tool, _ in _calls(log)]
    assert tools.count("multiply") == 1 and tools.count("list_notes") == 1


def _version(version: int, plan: Plan) -> PlanVersionRecord:
    return PlanVersionRecord("task_1", version, plan.content_hash(), plan, "planner:x", datetime.now(UTC))


def _approval(version: PlanVersionRecord, actor: str, roles: list[str] | None) -> ApprovalRecord:
    return ApprovalRecord("task_1", version.version, "approved", actor, None, datetime.now(UTC), roles,
                          version.content_hash)  # fmt: skip


def test_only_a_persons_approval_with_the_rules_roles_of_a_covering_version_carries_over() -> None:
    wide = Plan.model_validate({"summary": "s", "steps": [_step("a", "example.echo"), _step("b", "example.add")]})
    narrow = Plan.model_validate({"summary": "s", "steps": [_step("a", "example.echo")]})
    other = Plan.model_validate({"summary": "s", "steps": [_step("a", "example.multiply")]})
    v1, v2 = _version(1, wide), _version(2, other)
    records = [
        _approval(v1, "ann", ["approver"]),
        _approval(v1, "policy:read-only", None),  # the policy's own approval is nobody's
        _approval(v1, "bob", ["submitter"]),  # without the rule's role
        _approval(v2, "cat", ["approver"]),  # of a version that does not cover the new one
        _approval(v1, "ann", ["approver"]),  # counted once
        replace(_approval(v1, "dan", ["approver"]), content_hash="sha256:other"),  # of another content
    ]
    assert carried_approvers(records, narrow, [v1, v2], ["approver"]) == ["ann"]
    assert carried_approvers(records, narrow, [v1, v2]) == ["ann", "bob"]
    assert carried_approvers(records, wide.model_copy(update={"summary": "t"}), [v2], ["approver"]) == []


def _two_gated_notes() -> ScriptedModel:
    plan = {
        "summary": "two notes at once",
        "steps": [_step("s1", "example.write_note"), _step("s2", "example.write_note")],
    }

    def calls(_conversation: str, step: str) -> ToolCalls:
        return [("example.write_note", {"name": step, "text": "hello"})]

    return ScriptedModel(plan, calls)


async def test_a_second_gated_call_opens_its_gate_with_the_rules_expiry(tmp_path: Path, backend: str) -> None:
    policy = """
call_rules:
  - id: notes-gate
    match: {name: [example.write_note]}
    decision: require_call_approval
    expire_after: 30m
    on_expiry: cancel
"""
    async with _service(tmp_path, _two_gated_notes(), policy=policy, backend=backend) as (live, log):
        task_id = (await live.submit("write two notes"))["id"]
        await live.wait_for(task_id, "approval_required")
        await live.approve(task_id, 1)
        first = await read_stream(live.client, task_id, until="call_approval_required", timeout=30)
        gate = first[-1]["data"]
        decided = await live.client.post(
            f"/v1/tasks/{task_id}/calls/{gate['call_id']}/decision", json={"decision": "approve"}
        )
        assert decided.status_code == 200, decided.text
        second = await read_stream(
            live.client, task_id, after=first[-1]["sse_id"], until="call_approval_required", timeout=30
        )
        reopened = second[-1]["data"]
        task = await live.task(task_id)
        decided = await live.client.post(
            f"/v1/tasks/{task_id}/calls/{reopened['call_id']}/decision", json={"decision": "approve"}
        )
        assert decided.status_code == 200, decided.text
        done = await read_stream(live.client, task_id, after=second[-1]["sse_id"], timeout=30)
    assert reopened["call_id"] != gate["call_id"] and reopened["tool"] == "example.write_note"
    for opened in (gate, reopened):
        assert opened["rule"] == "notes-gate" and opened["on_expiry"] == "cancel"
        assert opened["expires_at"] is not None
    assert task["gate"]["on_expiry"] == "cancel" and task["gate_expires_at"] is not None
    assert _types(done)[-1] == "task_completed"
    assert sorted(args["name"] for _tool, args in _calls(log)) == ["s1", "s2"]


# -- the planner's spending ---------------------------------------------------------------------


async def test_a_revision_that_finds_the_budget_spent_pauses_before_the_planner_call(
    tmp_path: Path, backend: str
) -> None:
    policy = """
plan_rules:
  - id: tight
    match: {}
    decision: require_approval
    budget: {input_tokens: 1}
"""
    model = ScriptedModel({"summary": "echo", "steps": [_step("s1", "example.echo")]}, {"s1": []})
    async with _service(tmp_path, model, policy=policy, backend=backend) as (live, _log):
        task_id = (await live.submit("echo"))["id"]
        proposed = await live.wait_for(task_id, "approval_required")
        revised = await live.client.post(f"/v1/tasks/{task_id}/revise", json={"feedback": "shorter"})
        assert revised.status_code == 202, revised.text
        paused = await read_stream(live.client, task_id, after=proposed[-1]["sse_id"], until="budget_exceeded")
        task = await live.task(task_id)
        inbox = (await live.client.get("/v1/approvals")).json()["items"]
        raised = await live.client.post(f"/v1/tasks/{task_id}/budget", json={"input_tokens": 1_000_000})
        assert raised.status_code == 200, raised.text
        replanned = await read_stream(live.client, task_id, after=paused[-1]["sse_id"], until="approval_required")
        v2 = await live.task(task_id)
        approved = await live.approve(task_id, 2)
        assert approved.status_code == 202, approved.text
        done = await read_stream(live.client, task_id, after=replanned[-1]["sse_id"])
    spent_on_v1 = sum(e["data"]["input_tokens"] for e in proposed if e["type"] == "llm_usage")
    assert spent_on_v1 > 1
    assert _types(paused)[-3:] == ["revision_requested", "planning_started", "budget_exceeded"]
    assert paused[-1]["data"]["limit"] == "input_tokens"
    assert paused[-1]["data"]["spent"]["input_tokens"] == spent_on_v1  # no planner call was made
    assert task["status"] == "needs_attention" and task["gate"] == {
        **task["gate"],
        "kind": "budget",
        "phase": "planning",
    }
    item = next(i for i in inbox if i["task_id"] == task_id)
    assert item["kind"] == "budget" and item["plan_version"] == 1
    assert raised.json()["status"] == "queued"
    assert _types(replanned)[:2] == ["budget_raised", "planning_started"] and "plan_proposed" in _types(replanned)
    assert v2["current_plan_version"] == 2
    assert v2["budget"]["input_tokens"] == 1_000_000  # the new version's rule did not lower the raise
    assert v2["usage"]["input_tokens"] > spent_on_v1
    assert _types(done)[-1] == "task_completed"


async def test_a_planning_that_fails_still_records_what_its_model_calls_spent(tmp_path: Path, backend: str) -> None:
    model = ScriptedModel({"summary": "nope", "steps": [_step("s1", "example.nope")]}, {})
    async with _service(tmp_path, model, backend=backend) as (live, _log):
        task_id = (await live.submit("use a tool that does not exist"))["id"]
        events = await read_stream(live.client, task_id)
        task = await live.task(task_id)
    types = _types(events)
    assert types[-1] == "task_failed" and task["error"]["code"] == "plan_invalid"
    # Each call is recorded with the job's next write (here the plan_invalid that follows it).
    assert types.count("llm_usage") == 2
    assert types.index("llm_usage") < types.index("plan_invalid")
    used = [e["data"] for e in events if e["type"] == "llm_usage"]
    assert all(u["role"] == "planner" and u["input_tokens"] > 0 for u in used)
    assert task["usage"]["input_tokens"] == sum(u["input_tokens"] for u in used)


async def test_an_auto_approve_rule_passed_over_for_a_risky_tool_is_named_and_an_edit_carries_its_estimate(
    tmp_path: Path,
) -> None:
    policy = """
plan_rules:
  - id: notes-ok
    match: {any_tool: {name: [example.write_note]}}
    decision: auto_approve
"""
    model = ScriptedModel({"summary": "note", "steps": [_step("s1", "example.write_note")]}, {"s1": []})
    edited = {"summary": "echo instead", "steps": [_step("s1", "example.echo")]}
    async with _service(tmp_path, model, policy=policy) as (live, _log):
        task_id = (await live.submit("write a note"))["id"]
        proposed = await live.wait_for(task_id, "approval_required")
        edit = await live.client.put(f"/v1/tasks/{task_id}/plan", json={"base_version": 1, "plan": edited})
        assert edit.status_code == 200, edit.text
        events = await read_stream(live.client, task_id, after=proposed[-1]["sse_id"], until="approval_required")
    passed_over = proposed[-1]["data"]["passed_over"]
    assert len(passed_over) == 1 and "'notes-ok'" in passed_over[0] and "allow_risky" in passed_over[0]
    plan_edited = next(e["data"] for e in events if e["type"] == "plan_edited")
    assert plan_edited["estimate"]["tool_calls"] >= 1 and plan_edited["estimate"]["basis"] == "heuristic"
    assert events[-1]["data"]["passed_over"] == []  # no auto_approve rule matched the edited plan


async def test_a_cost_limit_after_a_model_without_a_price_is_not_raised_in_vain(tmp_path: Path) -> None:
    model = ScriptedModel({"summary": "echo", "steps": [_step("s1", "example.echo")]}, {"s1": []})
    fake = model.fake()
    client = build_llm_client(resolved_for("openai", model="house-model"), http_client=fake.http_client())
    policy = "plan_rules:\n  - {id: ro, match: {all_tools: {read_only: true}}, decision: auto_approve}\n"
    log = tmp_path / "calls.jsonl"
    (tmp_path / "policy.yaml").write_text(policy)
    settings = make_settings(
        tmp_path,
        registry=write_registry(tmp_path, call_log=log),
        policy={"path": str(tmp_path / "policy.yaml"), "estimate_history_seconds": 0},
        budgets={"cost_usd": 1.0},
    )
    async with live_service(settings, Overrides(planner_llm=client, executor_llm=client)) as live:
        task_id = (await live.submit("echo"))["id"]
        paused = await live.wait_for(task_id, "budget_exceeded")
        raised = await live.client.post(f"/v1/tasks/{task_id}/budget", json={"cost_usd": 100})
        task = await live.task(task_id)
        cancelled = await live.client.post(f"/v1/tasks/{task_id}/cancel", json={"reason": "unpriced model"})
    assert paused[-1]["data"]["limit"] == "cost_usd" and paused[-1]["data"]["spent"]["unpriced_calls"] == 1
    assert raised.status_code == 409, raised.text
    error = raised.json()["error"]
    assert error["details"]["field"] == "cost_usd" and "without a price" in error["message"]
    assert task["status"] == "needs_attention" and task["budget"]["cost_usd"] == 1.0  # nothing changed
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
