"""Approval policy paths the first suite left out, through the real service: rule roles on plan
approvals and call gates, expiry actions other than ``reject``, an edit into a denied tool, rule
budgets and every budget limit, rules on tenant, roles and metadata, ``allow_risky``, and a plan
expiry that falls due while the service is down.

Like ``test_policy.py`` (whose helpers these tests use): the real app over HTTP, the real OpenAI SDK
against the wire fake, the example MCP server as a process whose own call log proves what ran."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_runtime.testing import ScriptedModel, one_step_plan, openai_overrides
from tests.services.test_policy import POLICY, _at_gate, _calls, _gated_model, _service, _types
from tests.support.databases import database_url
from tests.support.harness import Live, live_service, make_settings, read_stream, write_registry
from tests.support.identity import bearer, make_key, wait_for_as

KEYS = {"mode": "keys", "bootstrap_admin_key": False, "key_cache_seconds": 0}
READ_ONLY = "plan_rules:\n  - {id: ro, match: {all_tools: {read_only: true}}, decision: auto_approve}\n"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _submit(live: Live, key: str | None, prompt: str, **extra: Any) -> str:
    response = await live.client.post("/v1/tasks", json={"prompt": prompt, **extra}, headers=bearer(key))
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    return task_id


async def _inbox(live: Live, key: str) -> list[str]:
    response = await live.client.get("/v1/approvals", headers=bearer(key))
    assert response.status_code == 200, response.text
    return [i["task_id"] for i in response.json()["items"]]


async def _stream_as(live: Live, key: str, task_id: str, **options: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=live.url, timeout=30, headers=bearer(key)) as client:
        return await read_stream(client, task_id, **options)


def _echo_model(*texts: str) -> ScriptedModel:
    return ScriptedModel(one_step_plan("example.echo"), {"s1": [("example.echo", {"text": t}) for t in texts]})


# -- roles --------------------------------------------------------------------------------------


async def test_a_plan_rule_with_roles_refuses_and_hides_the_task_from_an_approver_without_them(
    tmp_path: Path,
) -> None:
    policy = "plan_rules:\n  - {id: admins-only, match: {}, decision: require_approval, roles: [admin]}\n"
    async with _service(tmp_path, _echo_model("hi"), policy=policy, auth=KEYS) as (live, log):
        sam = await make_key(live, "sam", "acme", "submitter")
        ann = await make_key(live, "ann", "acme", "approver")
        ada = await make_key(live, "ada", "acme", "admin")
        task_id = await _submit(live, sam, "echo hi")
        required = (await wait_for_as(live.client, ann, task_id, "approval_required"))[-1]["data"]
        ann_inbox, ada_inbox = await _inbox(live, ann), await _inbox(live, ada)
        refused = await live.client.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": 1}, headers=bearer(ann))
        still = (await live.client.get(f"/v1/tasks/{task_id}", headers=bearer(ann))).json()
        approved = await live.client.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": 1}, headers=bearer(ada))
        assert approved.status_code == 202, approved.text
        events = await _stream_as(live, ada, task_id)
        trail = (await live.client.get(f"/v1/tasks/{task_id}/approvals", headers=bearer(ada))).json()
    assert (required["rule"], required["roles"]) == ("admins-only", ["admin"])
    assert task_id not in ann_inbox and task_id in ada_inbox
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "forbidden"
    assert refused.json()["error"]["details"]["required_roles"] == ["admin"]
    assert still["status"] == "awaiting_approval"
    assert approved.json()["status"] == "approved"
    assert [(a["decision"], a["actor"]) for a in trail] == [("approved", "ada")]
    assert _types(events)[-1] == "task_completed"
    assert _calls(log) == [("echo", {"text": "hi"})]


async def test_a_plan_rules_roles_also_bind_a_rejection_a_revision_request_and_an_edit(tmp_path: Path) -> None:
    # As a call gate's roles bind a deny, a plan rule's roles bind every decision on the plan.
    policy = "plan_rules:\n  - {id: admins-only, match: {}, decision: require_approval, roles: [admin]}\n"
    async with _service(tmp_path, _echo_model("hi"), policy=policy, auth=KEYS) as (live, _log):
        sam = await make_key(live, "sam", "acme", "submitter")
        ann = await make_key(live, "ann", "acme", "approver")
        ada = await make_key(live, "ada", "acme", "admin")
        task_id = await _submit(live, sam, "echo hi")
        await wait_for_as(live.client, ann, task_id, "approval_required")
        url = f"/v1/tasks/{task_id}"
        reject = await live.client.post(f"{url}/reject", json={"reason": "no"}, headers=bearer(ann))
        revise = await live.client.post(f"{url}/revise", json={"feedback": "again"}, headers=bearer(ann))
        plan = {"summary": "echo", "steps": [{"id": "s1", "title": "echo", "instruction": "echo hi",
                                               "tools": ["example.echo"], "depends_on": []}]}  # fmt: skip
        edit = await live.client.put(f"{url}/plan", json={"base_version": 1, "plan": plan}, headers=bearer(ann))
        still = (await live.client.get(url, headers=bearer(ann))).json()
        rejected = await live.client.post(f"{url}/reject", json={"reason": "no"}, headers=bearer(ada))
    for refused in (reject, revise, edit):
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["details"]["required_roles"] == ["admin"]
    assert still["status"] == "awaiting_approval" and still["current_plan_version"] == 1
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected", rejected.text


async def test_a_call_gates_roles_apply_to_a_direct_approve_and_to_a_deny(tmp_path: Path) -> None:
    # POLICY: the read-only plan passes on its own; echoing "secret*" waits for an admin.
    model = ScriptedModel(
        one_step_plan("example.echo"),
        lambda conversation, _step: [
            ("example.echo", {"text": "secret two" if "second" in conversation else "secret one"})
        ],
    )
    async with _service(tmp_path, model, policy=POLICY, auth=KEYS) as (live, log):
        sam = await make_key(live, "sam", "acme", "submitter")
        ann = await make_key(live, "ann", "acme", "approver")
        ada = await make_key(live, "ada", "acme", "admin")

        first = await _submit(live, sam, "first echo")
        gate = (await wait_for_as(live.client, ann, first, "call_approval_required"))[-1]["data"]
        url = f"/v1/tasks/{first}/calls/{gate['call_id']}/decision"
        ann_inbox, ada_inbox = await _inbox(live, ann), await _inbox(live, ada)
        ann_approve = await live.client.post(url, json={"decision": "approve"}, headers=bearer(ann))
        ann_deny = await live.client.post(url, json={"decision": "deny", "reason": "no"}, headers=bearer(ann))
        assert _calls(log) == []
        ada_deny = await live.client.post(url, json={"decision": "deny", "reason": "not now"}, headers=bearer(ada))
        assert ada_deny.status_code == 200, ada_deny.text
        denied = await _stream_as(live, ada, first)

        second = await _submit(live, sam, "second echo")
        gate_2 = (await wait_for_as(live.client, ada, second, "call_approval_required"))[-1]["data"]
        ada_approve = await live.client.post(
            f"/v1/tasks/{second}/calls/{gate_2['call_id']}/decision", json={"decision": "approve"}, headers=bearer(ada)
        )
        assert ada_approve.status_code == 200, ada_approve.text
        approved = await _stream_as(live, ada, second)
    assert (gate["rule"], gate["roles"]) == ("echo-secret", ["admin"])
    assert first not in ann_inbox and first in ada_inbox
    for refused in (ann_approve, ann_deny):
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["details"]["required_roles"] == ["admin"]
    assert _types(denied)[-1] == "task_completed"
    assert "not now" in next(e for e in denied if e["type"] == "step_completed")["data"]["output"]
    assert _types(approved)[-1] == "task_completed"
    assert _calls(log) == [("echo", {"text": "secret two"})]  # the denied call was never sent


# -- expiry actions -----------------------------------------------------------------------------


async def test_a_plan_rule_that_approves_on_expiry_approves_as_the_rule(tmp_path: Path) -> None:
    policy = """
plan_rules:
  - id: lazy
    match: {}
    decision: require_approval
    expire_after: 0.5s
    on_expiry: approve
"""
    async with _service(tmp_path, _echo_model("late"), policy=policy) as (live, log):
        task_id = (await live.submit("echo late"))["id"]
        events = await read_stream(live.client, task_id, timeout=30)
        trail = (await live.client.get(f"/v1/tasks/{task_id}/approvals")).json()
    types = _types(events)
    assert types.count("approval_expired") == 1 and types[-1] == "task_completed", types
    assert types.index("approval_required") < types.index("approval_expired") < types.index("task_approved")
    expired = next(e for e in events if e["type"] == "approval_expired")["data"]
    assert (expired["kind"], expired["action"], expired["rule"], expired["plan_version"]) == (
        "plan",
        "approve",
        "lazy",
        1,
    )
    assert next(e for e in events if e["type"] == "task_approved")["data"]["actor"] == "policy:lazy"
    assert [(a["decision"], a["actor"]) for a in trail] == [("approved", "policy:lazy")]
    assert _calls(log) == [("echo", {"text": "late"})]


async def test_a_call_gate_that_cancels_on_expiry_ends_the_task_cancelled(tmp_path: Path, backend: str) -> None:
    policy = """
call_rules:
  - id: notes-gate
    match: {name: [example.write_note]}
    decision: require_call_approval
    expire_after: 1s
    on_expiry: cancel
"""
    async with _service(tmp_path, _gated_model(), policy=policy, backend=backend) as (live, log):
        task_id = (await live.submit("write a note"))["id"]
        await live.wait_for(task_id, "approval_required")
        gate = await _at_gate(live, task_id)
        events = await read_stream(live.client, task_id, timeout=30)
        task = await live.task(task_id)
        late = await live.client.post(
            f"/v1/tasks/{task_id}/calls/{gate['call_id']}/decision", json={"decision": "approve"}
        )
    types = _types(events)
    assert types.count("approval_expired") == 1 and types[-1] == "task_cancelled", types
    expired = next(e for e in events if e["type"] == "approval_expired")["data"]
    assert (expired["kind"], expired["action"], expired["call_id"]) == ("call", "cancel", gate["call_id"])
    assert task["status"] == "cancelled" and task["error"]["code"] == "approval_expired"
    assert late.status_code == 409  # nothing left to decide
    assert _calls(log) == []


# -- edits --------------------------------------------------------------------------------------


async def test_an_edit_into_a_tool_the_policy_denies_is_refused_naming_the_rule(tmp_path: Path) -> None:
    policy = """
call_rules:
  - id: notes-gate
    match: {name: [example.write_note]}
    decision: require_call_approval
  - id: no-echo
    match: {name: [example.echo]}
    decision: deny
    reason: echo is switched off
"""
    async with _service(tmp_path, _gated_model(), policy=policy) as (live, log):
        task_id = (await live.submit("write a note"))["id"]
        await live.wait_for(task_id, "approval_required")
        gate = await _at_gate(live, task_id)
        url = f"/v1/tasks/{task_id}/calls/{gate['call_id']}/decision"
        edit = {"decision": "edit", "tool": "example.echo", "arguments": {"text": "sneaky"}}
        refused = await live.client.post(url, json=edit)
        still = await live.task(task_id)
        assert _calls(log) == []
        denied = await live.client.post(url, json={"decision": "deny", "reason": "done here"})
        assert denied.status_code == 200, denied.text
        events = await read_stream(live.client, task_id, timeout=30)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["details"]["rule"] == "no-echo" and "no-echo" in error["message"]
    assert still["status"] == "needs_attention" and still["gate"]["call_id"] == gate["call_id"]  # still waiting
    assert _types(events)[-1] == "task_completed"
    assert "tool_call_started" not in _types(events)
    assert _calls(log) == []


# -- budgets ------------------------------------------------------------------------------------


async def test_a_rules_budget_replaces_the_configured_default(tmp_path: Path) -> None:
    policy = """
plan_rules:
  - id: tight
    match: {all_tools: {read_only: true}, metadata: {tier: tight}}
    decision: auto_approve
    budget: {tool_calls: 1}
  - {id: ro, match: {all_tools: {read_only: true}}, decision: auto_approve}
"""
    model = _echo_model("a", "b")
    async with _service(tmp_path, model, policy=policy, budgets={"tool_calls": 5}) as (live, log):
        tight = (await live.submit("echo twice", metadata={"tier": "tight"}))["id"]
        paused = await live.wait_for(tight, "budget_exceeded")
        tight_task = await live.task(tight)
        roomy = (await live.submit("echo twice"))["id"]
        done = await live.wait_for(roomy, "task_completed")
        roomy_task = await live.task(roomy)
    approved = next(e for e in paused if e["type"] == "task_approved")["data"]
    exceeded = paused[-1]["data"]
    assert approved["actor"] == "policy:tight"
    assert exceeded["limit"] == "tool_calls" and exceeded["budget"]["tool_calls"] == 1
    assert tight_task["status"] == "needs_attention" and tight_task["budget"]["tool_calls"] == 1
    assert next(e for e in done if e["type"] == "task_approved")["data"]["actor"] == "policy:ro"
    assert roomy_task["budget"]["tool_calls"] == 5 and "budget_exceeded" not in _types(done)
    assert _calls(log) == [("echo", {"text": "a"}), ("echo", {"text": "b"})]  # the roomy task's only


# Each limit is below what planning alone spends (the task's usage counts its planner calls; a
# limit of 0 wall seconds is reached before anything runs), so the task pauses at its first
# executor check, before any model or tool call of its own.
BREACHES = [
    ("input_tokens", 1, 1_000_000),
    ("output_tokens", 1, 1_000_000),
    ("cost_usd", 0.000001, 1.0),
    ("wall_seconds", 0, 3600),
]


@pytest.mark.parametrize(("limit", "allowed", "raised"), BREACHES, ids=[b[0] for b in BREACHES])
async def test_each_budget_limit_pauses_with_what_was_spent_and_raising_it_lets_the_task_finish(
    tmp_path: Path, limit: str, allowed: float, raised: float
) -> None:
    async with _service(tmp_path, _echo_model("x"), policy=READ_ONLY, budgets={limit: allowed}) as (live, log):
        task_id = (await live.submit("echo x"))["id"]
        events = await live.wait_for(task_id, "budget_exceeded")
        paused = await live.task(task_id)
        assert _calls(log) == []
        response = await live.client.post(f"/v1/tasks/{task_id}/budget", json={limit: raised})
        assert response.status_code == 200, response.text
        done = await read_stream(live.client, task_id, after=events[-1]["sse_id"], timeout=30)
    exceeded = events[-1]["data"]
    assert exceeded["limit"] == limit and exceeded["budget"][limit] == allowed
    assert exceeded["spent"][limit] >= allowed
    assert exceeded["spent"]["input_tokens"] == paused["usage"]["input_tokens"] > 0  # the planner's call
    assert "tool_call_started" not in _types(events)
    assert paused["status"] == "needs_attention" and paused["gate"]["kind"] == "budget"
    assert _types(done)[0] == "budget_raised" and _types(done)[-1] == "task_completed", _types(done)
    assert _calls(log) == [("echo", {"text": "x"})]


async def test_cancelling_a_task_paused_by_its_budget_ends_it_cancelled(tmp_path: Path, backend: str) -> None:
    model, no_calls = _echo_model("x"), {"tool_calls": 0}
    async with _service(tmp_path, model, policy=READ_ONLY, backend=backend, budgets=no_calls) as (live, log):
        task_id = (await live.submit("echo x"))["id"]
        await live.wait_for(task_id, "budget_exceeded")
        cancelled = await live.client.post(f"/v1/tasks/{task_id}/cancel", json={"reason": "too dear"})
        assert cancelled.status_code == 200, cancelled.text
        events = await read_stream(live.client, task_id, timeout=30)
        task = await live.task(task_id)
        raise_after = await live.client.post(f"/v1/tasks/{task_id}/budget", json={"tool_calls": 5})
    assert _types(events)[-1] == "task_cancelled"
    assert events[-1]["data"]["previous_status"] == "needs_attention"
    assert task["status"] == "cancelled" and task["gate"] is None
    assert raise_after.status_code == 409
    assert _calls(log) == []


# -- who and what: tenant, roles, metadata, risk ------------------------------------------------


async def test_tenant_submitter_roles_and_metadata_rules_apply_to_submitted_tasks(tmp_path: Path) -> None:
    policy = """
plan_rules:
  - {id: prod-gate, match: {metadata: {env: prod}}, decision: require_approval}
  - {id: acme-ro, match: {tenant: [acme], all_tools: {read_only: true}}, decision: auto_approve}
  - {id: admin-ro, match: {roles: [admin], all_tools: {read_only: true}}, decision: auto_approve}
"""
    async with _service(tmp_path, _echo_model("hi"), policy=policy, auth=KEYS) as (live, _log):
        sam = await make_key(live, "sam", "acme", "submitter")
        zed = await make_key(live, "zed", "globex", "submitter")
        gus = await make_key(live, "gus", "globex", "admin")
        plain = await _submit(live, sam, "echo")
        prod = await _submit(live, sam, "echo", metadata={"env": "prod"})
        staging = await _submit(live, sam, "echo", metadata={"env": "staging"})
        other_tenant = await _submit(live, zed, "echo")
        admin = await _submit(live, gus, "echo")
        seen = {
            task_id: await wait_for_as(live.client, key, task_id, until)
            for task_id, key, until in (
                (plain, sam, "task_approved"),
                (prod, sam, "approval_required"),
                (staging, sam, "task_approved"),
                (other_tenant, zed, "approval_required"),
                (admin, gus, "task_approved"),
            )
        }
    assert seen[plain][-1]["data"]["actor"] == "policy:acme-ro"
    assert seen[prod][-1]["data"]["rule"] == "prod-gate"  # the same plan, held for its metadata
    assert seen[staging][-1]["data"]["actor"] == "policy:acme-ro"
    assert seen[other_tenant][-1]["data"]["rule"] is None  # no rule for globex submitters: the default
    assert seen[admin][-1]["data"]["actor"] == "policy:admin-ro"


async def test_a_call_rule_on_task_metadata_gates_only_the_tasks_that_carry_it(tmp_path: Path) -> None:
    policy = (
        READ_ONLY
        + """call_rules:
  - {id: prod-calls, match: {name: [example.echo], metadata: {env: prod}}, decision: require_call_approval}
"""
    )
    async with _service(tmp_path, _echo_model("hi"), policy=policy) as (live, log):
        plain = (await live.submit("echo"))["id"]
        plain_events = await live.wait_for(plain, "task_completed")
        assert _calls(log) == [("echo", {"text": "hi"})]
        prod = (await live.submit("echo", metadata={"env": "prod"}))["id"]
        gate = (await live.wait_for(prod, "call_approval_required"))[-1]["data"]
        task = await live.task(prod)
    assert "call_approval_required" not in _types(plain_events)
    assert (gate["rule"], gate["tool"]) == ("prod-calls", "example.echo")
    assert task["status"] == "needs_attention" and task["gate"]["kind"] == "call"
    assert _calls(log) == [("echo", {"text": "hi"})]  # the prod task's call waits, unsent


async def test_auto_approve_passes_a_destructive_plan_only_with_allow_risky(tmp_path: Path) -> None:
    policy = """
plan_rules:
  - id: risky-ok
    match: {any_tool: {name: [example.write_note]}, metadata: {risk: accepted}}
    decision: auto_approve
    allow_risky: true
  - id: notes-ok
    match: {any_tool: {name: [example.write_note]}}
    decision: auto_approve
"""
    model = ScriptedModel(
        one_step_plan("example.write_note"), {"s1": [("example.write_note", {"name": "n", "text": "t"})]}
    )
    async with _service(tmp_path, model, policy=policy) as (live, log):
        held = (await live.submit("write"))["id"]
        held_events = await live.wait_for(held, "approval_required")
        assert (await live.task(held))["status"] == "awaiting_approval"
        assert _calls(log) == []
        passed = (await live.submit("write", metadata={"risk": "accepted"}))["id"]
        passed_events = await live.wait_for(passed, "task_completed")
    assert "task_approved" not in _types(held_events)
    assert held_events[-1]["data"]["rule"] is None  # notes-ok matched, yet may not pass a destructive tool
    assert next(e for e in passed_events if e["type"] == "task_approved")["data"]["actor"] == "policy:risky-ok"
    assert _calls(log) == [("write_note", {"name": "n", "text": "t"})]


# -- restart ------------------------------------------------------------------------------------


Start = Callable[[float], AbstractAsyncContextManager[Live]]


@asynccontextmanager
async def _restartable(tmp: Path, backend: str, policy: str, model: ScriptedModel) -> AsyncIterator[tuple[Start, Path]]:
    """Services on one database, one after another: ``async with start(sweep_seconds) as live``;
    and the example server's call log."""
    path = tmp / "policy.yaml"
    path.write_text(policy)
    log = tmp / "calls.jsonl"
    registry = write_registry(tmp, call_log=log)
    async with database_url(backend, tmp) as url:

        def start(sweep_seconds: float) -> AbstractAsyncContextManager[Live]:
            settings = make_settings(
                tmp,
                registry=registry,
                database={"url": url, "auto_migrate": True},
                policy={"path": str(path), "expiry_check_seconds": sweep_seconds, "estimate_history_seconds": 0},
            )
            return live_service(settings, openai_overrides(model.fake()))

        yield start, log


# The first service sweeps once as it starts (before the task exists), then not for a minute; the
# gate falls due while no service runs (stopping one takes far longer than 50 ms), and the second
# service's first sweep fires it.


async def test_a_plan_expiry_due_while_the_service_was_down_fires_once_after_restart(
    tmp_path: Path, backend: str
) -> None:
    policy = "plan_rules:\n  - {id: hurry, match: {}, decision: require_approval, expire_after: 0.05s}\n"
    async with _restartable(tmp_path, backend, policy, _echo_model("x")) as (start, _log):
        async with start(60) as first:
            task_id = (await first.submit("echo"))["id"]
            required = (await first.wait_for(task_id, "approval_required"))[-1]["data"]
        assert datetime.now(UTC) > datetime.fromisoformat(required["expires_at"])
        async with start(0.1) as second:
            events = await read_stream(second.client, task_id, timeout=30)
            task = await second.task(task_id)
            again = await second.runtime.gates.expire_due()
    types = _types(events)
    assert types.count("approval_expired") == 1 and types[-2:] == ["approval_expired", "task_rejected"], types
    assert task["status"] == "rejected" and task["error"]["code"] == "approval_expired"
    assert again == 0


async def test_a_call_gate_due_while_the_service_was_down_refuses_the_call_once_after_restart(
    tmp_path: Path, backend: str
) -> None:
    policy = """
call_rules:
  - {id: notes-gate, match: {name: [example.write_note]}, decision: require_call_approval, expire_after: 0.05s}
"""
    async with _restartable(tmp_path, backend, policy, _gated_model()) as (start, log):
        async with start(60) as first:
            task_id = (await first.submit("write a note"))["id"]
            await first.wait_for(task_id, "approval_required")
            gate = await _at_gate(first, task_id)
        assert datetime.now(UTC) > datetime.fromisoformat(gate["expires_at"])
        async with start(0.1) as second:
            events = await read_stream(second.client, task_id, timeout=30)
            again = await second.runtime.gates.expire_due()
    types = _types(events)
    assert types.count("approval_expired") == 1 and types[-1] == "task_completed", types
    expired = next(e for e in events if e["type"] == "approval_expired")["data"]
    assert (expired["kind"], expired["action"], expired["call_id"]) == ("call", "reject", gate["call_id"])
    assert again == 0
    assert _calls(log) == []
