"""Approval policies in the running service: plan decisions, call-time gates, budgets, expiry.

Every test runs the real service (HTTP, the real OpenAI SDK against the wire fake, the example MCP
server as a process) with a policy file; the example server's own call log proves what ran."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_runtime.testing import ScriptedModel, one_step_plan, openai_overrides
from tests.support.databases import database_url
from tests.support.harness import Live, live_service, make_settings, read_stream, write_registry
from tests.support.identity import bearer, make_key, submit_as, wait_for_as
from tests.support.process import AGENT_RUNTIME

POLICY = """
plan_rules:
  - id: no-fail
    match: {any_tool: {name: [example.fail]}}
    decision: deny
    reason: failing on purpose is not allowed
  - id: read-only
    match: {all_tools: {read_only: true}}
    decision: auto_approve
call_rules:
  - id: notes-gate
    match: {name: [example.write_note]}
    decision: require_call_approval
  - id: echo-secret
    match: {name: [example.echo], arguments: {text: {glob: "secret*"}}}
    decision: require_call_approval
    roles: [admin]
"""


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def _service(
    tmp: Path, model: ScriptedModel, *, policy: str = POLICY, backend: str = "sqlite", **sections: Any
) -> AsyncIterator[tuple[Live, Path]]:
    log = tmp / "calls.jsonl"
    registry = write_registry(tmp, call_log=log)
    path = tmp / "policy.yaml"
    path.write_text(policy)
    async with database_url(backend, tmp) as url:
        settings = make_settings(
            tmp,
            registry=registry,
            database={"url": url, "auto_migrate": True},
            policy={"path": str(path), "expiry_check_seconds": 0.1, "estimate_history_seconds": 0},
            **sections,
        )
        async with live_service(settings, openai_overrides(model.fake())) as live:
            yield live, log


def _calls(log: Path) -> list[tuple[str, dict[str, Any]]]:
    if not log.exists():
        return []
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return [(e["tool"], e["arguments"]) for e in entries if e["event"] == "start"]


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [e["sse_event"] for e in events]


# -- plan decisions -----------------------------------------------------------------------------


async def test_a_read_only_plan_is_approved_by_the_policy_and_audited(tmp_path: Path, backend: str) -> None:
    model = ScriptedModel(one_step_plan("example.echo"), {"s1": [("example.echo", {"text": "hi"})]})
    async with _service(tmp_path, model, backend=backend) as (live, log):
        task_id = (await live.submit("echo hi"))["id"]
        events = await live.wait_for(task_id, "task_completed")
        trail = (await live.client.get(f"/v1/tasks/{task_id}/approvals")).json()
        task = await live.task(task_id)
    approved = next(e for e in events if e["type"] == "task_approved")
    assert approved["data"]["actor"] == "policy:read-only"
    assert "approval_required" not in _types(events)
    assert [(a["decision"], a["actor"]) for a in trail] == [("approved", "policy:read-only")]
    assert _calls(log) == [("echo", {"text": "hi"})]
    proposed = next(e for e in events if e["type"] == "plan_proposed")
    assert proposed["data"]["estimate"]["basis"] in {"heuristic", "history", "mixed"}
    assert task["usage"]["input_tokens"] > 0 and task["estimate"] is not None


async def test_a_plan_with_a_destructive_tool_waits_with_its_risk_shown(tmp_path: Path) -> None:
    model = ScriptedModel(one_step_plan("example.write_note"), {"s1": []})
    async with _service(tmp_path, model) as (live, _log):
        task_id = (await live.submit("write a note"))["id"]
        events = await live.wait_for(task_id, "approval_required")
        inbox = (await live.client.get("/v1/approvals")).json()["items"]
    required = events[-1]["data"]
    assert required["rule"] is None and required["required"] == 1  # no rule matched: the default
    item = next(i for i in inbox if i["task_id"] == task_id)
    assert item["kind"] == "plan"
    assert item["risk"] == ["destructive"] and item["risky_tools"] == ["example.write_note"]
    assert item["estimate"]["input_tokens"] > 0


async def test_a_deny_rule_drives_the_planners_repair(tmp_path: Path, backend: str) -> None:
    def plan(conversation: str) -> dict[str, Any]:
        # First the forbidden tool; told which rule refused it, the planner picks another.
        return one_step_plan("example.echo" if "refuses tool 'example.fail'" in conversation else "example.fail")

    model = ScriptedModel(plan, {"s1": [("example.echo", {"text": "repaired"})]})
    async with _service(tmp_path, model, backend=backend) as (live, log):
        task_id = (await live.submit("try to fail"))["id"]
        events = await live.wait_for(task_id, "task_completed")
    invalid = next(e for e in events if e["type"] == "plan_invalid")
    assert any("no-fail" in p and "example.fail" in p for p in invalid["data"]["problems"])
    proposed = next(e for e in events if e["type"] == "plan_proposed")
    assert proposed["data"]["attempts"] == 2
    assert proposed["data"]["plan"]["steps"][0]["tools"] == ["example.echo"]
    assert _calls(log) == [("echo", {"text": "repaired"})]


# -- call gates ---------------------------------------------------------------------------------


def _gated_model(**extra: Any) -> ScriptedModel:
    plan = {
        "summary": "write then echo",
        "steps": [
            {
                "id": "s1",
                "title": "write",
                "instruction": "write the note",
                "tools": ["example.write_note", "example.echo"],
                "depends_on": [],
            }
        ],
    }
    return ScriptedModel(plan, {"s1": [("example.write_note", {"name": "n1", "text": "hello"})]}, **extra)


async def _at_gate(live: Live, task_id: str) -> dict[str, Any]:
    assert (await live.approve(task_id, 1)).status_code == 202
    events = await live.wait_for(task_id, "call_approval_required")
    gate: dict[str, Any] = events[-1]["data"]
    assert (await live.task(task_id))["status"] == "needs_attention"
    return gate


async def test_a_gated_call_waits_then_runs_once_approved(tmp_path: Path, backend: str) -> None:
    async with _service(tmp_path, _gated_model(), backend=backend) as (live, log):
        task_id = (await live.submit("write a note"))["id"]
        await live.wait_for(task_id, "approval_required")
        gate = await _at_gate(live, task_id)
        assert gate["tool"] == "example.write_note" and gate["arguments"] == {"name": "n1", "text": "hello"}
        assert gate["rule"] == "notes-gate"
        assert _calls(log) == []  # stopped before it was sent
        inbox = (await live.client.get("/v1/approvals")).json()["items"]
        item = next(i for i in inbox if i["task_id"] == task_id)
        assert item["kind"] == "call" and item["call"]["tool_call_id"] == gate["call_id"]
        decided = await live.client.post(
            f"/v1/tasks/{task_id}/calls/{gate['call_id']}/decision", json={"decision": "approve"}
        )
        assert decided.status_code == 200, decided.text
        again = await live.client.post(
            f"/v1/tasks/{task_id}/calls/{gate['call_id']}/decision", json={"decision": "approve"}
        )
        events = await read_stream(live.client, task_id, timeout=30)
    assert again.status_code == 409  # a decision is used once
    types = _types(events)
    assert types[-1] == "task_completed", types
    assert types.count("call_decided") == 1
    assert _calls(log) == [("write_note", {"name": "n1", "text": "hello"})]


async def test_a_denied_call_is_refused_and_the_model_carries_on(tmp_path: Path, backend: str) -> None:
    async with _service(tmp_path, _gated_model(), backend=backend) as (live, log):
        task_id = (await live.submit("write a note"))["id"]
        await live.wait_for(task_id, "approval_required")
        gate = await _at_gate(live, task_id)
        decided = await live.client.post(
            f"/v1/tasks/{task_id}/calls/{gate['call_id']}/decision",
            json={"decision": "deny", "reason": "not today"},
        )
        assert decided.status_code == 200, decided.text
        events = await read_stream(live.client, task_id, timeout=30)
    assert _types(events)[-1] == "task_completed"
    step = next(e for e in events if e["type"] == "step_completed")
    assert "not today" in step["data"]["output"]  # the model saw the refusal as the call's result
    assert _calls(log) == []


async def test_an_edit_is_checked_against_the_schema_and_the_policy_of_the_tool_it_names(
    tmp_path: Path, backend: str
) -> None:
    async with _service(tmp_path, _gated_model(), auth={"mode": "disabled"}, backend=backend) as (live, log):
        task_id = (await live.submit("write a note"))["id"]
        await live.wait_for(task_id, "approval_required")
        gate = await _at_gate(live, task_id)
        url = f"/v1/tasks/{task_id}/calls/{gate['call_id']}/decision"
        bad_schema = await live.client.post(url, json={"decision": "edit", "arguments": {"name": 5}})
        not_in_step = await live.client.post(url, json={"decision": "edit", "tool": "example.add", "arguments": {}})
        into_echo = await live.client.post(
            url, json={"decision": "edit", "tool": "example.echo", "arguments": {"text": "plain"}}
        )
        assert into_echo.status_code == 200, into_echo.text
        events = await read_stream(live.client, task_id, timeout=30)
    assert bad_schema.status_code == 422 and bad_schema.json()["error"]["details"]["field"] == "arguments"
    assert not_in_step.status_code == 422 and not_in_step.json()["error"]["details"]["field"] == "tool"
    assert _types(events)[-1] == "task_completed"
    started = [e["data"] for e in events if e["type"] == "tool_call_started"]
    assert [(s["tool"], s["arguments"]) for s in started] == [("example.echo", {"text": "plain"})]
    assert _calls(log) == [("echo", {"text": "plain"})]


async def test_an_edit_into_a_gated_tool_needs_that_rules_roles(tmp_path: Path, backend: str) -> None:
    keys = {"mode": "keys", "bootstrap_admin_key": False, "key_cache_seconds": 0}
    async with _service(tmp_path, _gated_model(), auth=keys, backend=backend) as (live, log):
        submitter = await make_key(live, "sam", "acme", "submitter")
        approver = await make_key(live, "ann", "acme", "approver")
        admin = await make_key(live, "ada", "acme", "admin")
        task_id = await submit_as(live, submitter, "write a note")
        ok = await live.client.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": 1}, headers=bearer(approver))
        assert ok.status_code == 202, ok.text
        events = await wait_for_as(live.client, approver, task_id, "call_approval_required")
        url = f"/v1/tasks/{task_id}/calls/{events[-1]['data']['call_id']}/decision"
        secret = {"decision": "edit", "tool": "example.echo", "arguments": {"text": "secret stuff"}}
        refused = await live.client.post(url, json=secret, headers=bearer(approver))
        allowed = await live.client.post(url, json=secret, headers=bearer(admin))
        assert allowed.status_code == 200, allowed.text
        await wait_for_as(live.client, admin, task_id, "task_completed")
    assert refused.status_code == 403 and refused.json()["error"]["details"]["required_roles"] == ["admin"]
    assert _calls(log) == [("echo", {"text": "secret stuff"})]


# -- expiry -------------------------------------------------------------------------------------


async def test_a_call_gate_expires_once_and_the_call_is_refused(tmp_path: Path, backend: str) -> None:
    policy = """
call_rules:
  - id: notes-gate
    match: {name: [example.write_note]}
    decision: require_call_approval
    expire_after: 1s
    on_expiry: reject
"""
    async with _service(tmp_path, _gated_model(), policy=policy, backend=backend) as (live, log):
        task_id = (await live.submit("write a note"))["id"]
        await live.wait_for(task_id, "approval_required")
        gate = await _at_gate(live, task_id)
        assert gate["expires_at"] is not None
        events = await read_stream(live.client, task_id, timeout=30)
    types = _types(events)
    assert types.count("approval_expired") == 1 and types[-1] == "task_completed", types
    expired = next(e for e in events if e["type"] == "approval_expired")["data"]
    assert expired == {**expired, "kind": "call", "action": "reject", "call_id": gate["call_id"]}
    assert _calls(log) == []


async def test_a_plan_approval_expires_into_a_rejection(tmp_path: Path) -> None:
    policy = """
plan_rules:
  - id: hurry
    match: {}
    decision: require_approval
    expire_after: 0.5s
    on_expiry: reject
"""
    model = ScriptedModel(one_step_plan("example.echo"), {"s1": []})
    async with _service(tmp_path, model, policy=policy) as (live, _log):
        task_id = (await live.submit("echo"))["id"]
        events = await read_stream(live.client, task_id, timeout=30)
        task = await live.task(task_id)
    assert _types(events)[-2:] == ["approval_expired", "task_rejected"]
    assert task["status"] == "rejected" and task["error"]["code"] == "approval_expired"


# -- budgets ------------------------------------------------------------------------------------


async def test_a_budget_breach_pauses_the_task_until_an_approver_raises_it(tmp_path: Path, backend: str) -> None:
    plan = {
        "summary": "three echoes",
        "steps": [{"id": "s1", "title": "echo", "instruction": "echo", "tools": ["example.echo"], "depends_on": []}],
    }
    model = ScriptedModel(plan, {"s1": [("example.echo", {"text": str(i)}) for i in range(3)]})
    policy = "plan_rules:\n  - {id: ro, match: {all_tools: {read_only: true}}, decision: auto_approve}\n"
    async with _service(tmp_path, model, policy=policy, backend=backend, budgets={"tool_calls": 2}) as (live, log):
        task_id = (await live.submit("echo three times"))["id"]
        events = await live.wait_for(task_id, "budget_exceeded")
        paused = await live.task(task_id)
        assert paused["status"] == "needs_attention" and paused["gate"]["kind"] == "budget"
        assert _calls(log) == []  # the turn's three calls would overrun: none of them ran
        too_low = await live.client.post(f"/v1/tasks/{task_id}/budget", json={"tool_calls": 2})
        raised = await live.client.post(f"/v1/tasks/{task_id}/budget", json={"tool_calls": 5})
        assert raised.status_code == 200, raised.text
        done = await read_stream(live.client, task_id, after=events[-1]["sse_id"], timeout=30)
    exceeded = events[-1]["data"]
    assert exceeded["limit"] == "tool_calls" and exceeded["spent"]["tool_calls"] == 0
    assert too_low.status_code == 422 and too_low.json()["error"]["details"]["field"] == "tool_calls"
    assert _types(done)[0] == "budget_raised" and _types(done)[-1] == "task_completed"
    assert [a["text"] for _tool, a in _calls(log)] == ["0", "1", "2"]


# -- the file -----------------------------------------------------------------------------------


async def test_a_malformed_policy_is_refused_on_reload_and_the_old_one_stays(tmp_path: Path) -> None:
    model = ScriptedModel(one_step_plan("example.echo"), {"s1": []})
    async with _service(tmp_path, model, auth={"mode": "disabled"}) as (live, _log):
        (tmp_path / "policy.yaml").write_text("plan_rules:\n  - id: x\n    decision: auto_aprove\n")
        refused = await live.client.post("/v1/admin/reload-policy")
        task_id = (await live.submit("echo"))["id"]
        events = await live.wait_for(task_id, "task_completed")
    assert refused.status_code == 422, refused.text
    message = refused.json()["error"]["message"]
    assert "policy.yaml" in message and "plan_rules[0]" in message and "decision" in message
    assert next(e for e in events if e["type"] == "task_approved")["data"]["actor"] == "policy:read-only"


async def test_a_sticky_rule_keeps_approvals_for_a_version_that_only_narrows_the_plan(
    tmp_path: Path, backend: str
) -> None:
    policy = """
plan_rules:
  - id: two-eyes
    match: {}
    decision: require_approval
    count: 2
    sticky: true
"""
    plan: dict[str, Any] = {
        "summary": "write then read",
        "steps": [
            {"id": "s1", "title": "w", "instruction": "w", "tools": ["example.write_note"], "depends_on": []},
            {"id": "s2", "title": "r", "instruction": "r", "tools": ["example.read_note"], "depends_on": ["s1"]},
        ],
    }
    narrower = {**plan, "steps": plan["steps"][:1]}
    wider = {**plan, "steps": [*plan["steps"], {**plan["steps"][1], "id": "s3", "tools": ["example.echo"]}]}
    keys = {"mode": "keys", "bootstrap_admin_key": False, "key_cache_seconds": 0}
    model = ScriptedModel(plan, {"s1": []})
    async with _service(tmp_path, model, policy=policy, auth=keys, backend=backend) as (live, _log):
        sam = await make_key(live, "sam", "acme", "submitter")
        ann, bob, cat = [await make_key(live, who, "acme", "approver") for who in ("ann", "bob", "cat")]
        task_id = await submit_as(live, sam, "write and read")
        url = f"/v1/tasks/{task_id}"
        first = await live.client.post(f"{url}/approve", json={"plan_version": 1}, headers=bearer(ann))
        assert first.status_code == 202 and first.json()["status"] == "awaiting_approval"
        edit = await live.client.put(f"{url}/plan", json={"base_version": 1, "plan": narrower}, headers=bearer(bob))
        assert edit.status_code == 200, edit.text
        inbox = (await live.client.get("/v1/approvals", headers=bearer(cat))).json()["items"]
        assert [(i["plan_version"], i["approvals"], i["required"]) for i in inbox] == [(2, 1, 2)]  # ann's carried
        done = await live.client.post(f"{url}/approve", json={"plan_version": 2}, headers=bearer(cat))
        assert done.status_code == 202 and done.json()["status"] == "approved", done.text
        # A version that adds a tool needs a decision of its own: nothing carries over to it.
        task_2 = await submit_as(live, sam, "again")
        await live.client.post(f"/v1/tasks/{task_2}/approve", json={"plan_version": 1}, headers=bearer(ann))
        widened = await live.client.put(
            f"/v1/tasks/{task_2}/plan", json={"base_version": 1, "plan": wider}, headers=bearer(bob)
        )
        assert widened.status_code == 200, widened.text
        one = await live.client.post(f"/v1/tasks/{task_2}/approve", json={"plan_version": 2}, headers=bearer(cat))
        kept = await wait_for_as(live.client, cat, task_id, "task_approved")
        dropped = await wait_for_as(live.client, cat, task_2, "plan_edited")
    assert one.status_code == 202 and one.json()["status"] == "awaiting_approval"
    # The rule's count (2, not approvals.required) decides; a narrowing edit keeps ann's approval.
    assert "approvals_discarded" not in _types(kept)
    assert [e["data"]["approvers"] for e in dropped if e["type"] == "approvals_discarded"] == [["ann"]]


def test_a_malformed_policy_stops_the_start_naming_file_rule_and_key(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("call_rules:\n  - id: gate\n    match: {nmae: [example.write_note]}\n    decision: allow\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"},
                "tools": {"registry_path": str(write_registry(tmp_path))},
                "policy": {"path": "policy.yaml"},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_RUNTIME_", "OPENAI_", "ANTHROPIC_"))}
    done = subprocess.run(
        [str(AGENT_RUNTIME), "check-config", "--config", str(config)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 2, done.stderr
    assert "policy.yaml" in done.stderr and "call_rules[0]" in done.stderr and "nmae" in done.stderr


async def test_the_estimate_learns_from_completed_steps_with_the_same_tools(tmp_path: Path) -> None:
    model = ScriptedModel(one_step_plan("example.echo"), {"s1": [("example.echo", {"text": "hi"})]})
    async with _service(tmp_path, model) as (live, _log):
        first = (await live.submit("echo once"))["id"]
        first_events = await live.wait_for(first, "task_completed")
        done = await live.task(first)
        second = (await live.submit("echo again"))["id"]
        second_events = await live.wait_for(second, "plan_proposed")
    before = next(e for e in first_events if e["type"] == "plan_proposed")["data"]["estimate"]
    after = second_events[-1]["data"]["estimate"]
    assert before["basis"] == "heuristic" and after["basis"] == "history"
    assert done["result"]["usage"]["tool_calls"] == 1 and done["result"]["estimate"] == before
    assert after["tool_calls"] == 1  # learned: one call per such step


async def test_the_cli_lists_a_gate_decides_it_and_raises_a_budget(tmp_path: Path) -> None:
    from tests.operator_cli.cli_runner import CLI

    async with _service(tmp_path, _gated_model(), budgets={"tool_calls": 1}) as (live, log):
        cli = CLI(live.url)
        task_id = (await live.submit("write a note"))["id"]
        await live.wait_for(task_id, "approval_required")
        gate = await _at_gate(live, task_id)
        inbox = await cli("approvals")
        assert inbox.code == 0 and task_id in inbox.out and "call" in inbox.out and "example.write_note" in inbox.out
        shown = await cli("tasks", "show", task_id)
        assert f"agent-runtime tasks decide {task_id}" in shown.err
        bad = await cli("tasks", "decide", task_id, "--decision", "edit", "--arguments", "{not json")
        assert bad.code == 2 and "--arguments is not JSON" in bad.err
        edited = await cli(
            "tasks",
            "decide",
            task_id,
            "--decision",
            "edit",
            "--arguments",
            '{"name": "n1", "text": "edited"}',
            "--json",
        )
        assert edited.code == 0, edited.err
        assert edited.json()["status"] == "approved"
        events = await read_stream(live.client, task_id, timeout=30)
        raised = await cli("tasks", "budget", task_id, "--tool-calls", "5")
    assert gate["call_id"] in {e["data"].get("call_id") for e in events}
    assert _types(events)[-1] == "task_completed"
    assert raised.code == 1 and "not paused by its budget" in raised.err  # it was not: the edit ran
    assert _calls(log) == [("write_note", {"name": "n1", "text": "edited"})]


async def test_the_policys_events_reach_a_webhook_signed(tmp_path: Path) -> None:
    from standardwebhooks.webhooks import Webhook

    from tests.support.webhook_receiver import Receiver, serve_receiver

    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    rx = Receiver()
    policy = POLICY.replace(
        "    decision: require_call_approval\n", "    decision: require_call_approval\n    expire_after: 30m\n", 1
    )
    events = ["approval_required", "call_approval_required", "budget_exceeded", "task_completed"]
    async with serve_receiver(rx) as url:
        hook = {"id": "ops", "url": url, "events": events, "secret": secret, "timeout_seconds": 5}
        async with _service(tmp_path, _gated_model(), policy=policy, webhooks={"endpoints": [hook]}) as (live, _log):
            task_id = (await live.submit("write a note"))["id"]
            await live.wait_for(task_id, "approval_required")
            gate = await _at_gate(live, task_id)
            await rx.wait_for(lambda r: len(r.delivered()) >= 2)
            decided = await live.client.post(
                f"/v1/tasks/{task_id}/calls/{gate['call_id']}/decision", json={"decision": "approve"}
            )
            assert decided.status_code == 200, decided.text
            await rx.wait_for(lambda r: len(r.delivered()) >= 3)
    sent = [Webhook(secret).verify(r.body, r.headers) for r in rx.delivered()]
    assert [s["type"] for s in sent] == ["approval_required", "call_approval_required", "task_completed"]
    call = sent[1]["data"]["payload"]
    assert (call["call_id"], call["tool"], call["rule"]) == (gate["call_id"], "example.write_note", "notes-gate")
    assert call["expires_at"] is not None and call["arguments"] == {"name": "n1", "text": "hello"}
