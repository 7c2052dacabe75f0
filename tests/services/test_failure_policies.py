"""Failure policies (``on_failure``: retry, skip, replan), replan bounds and verification.

Through the public API of the running service, with the real executor and planner, the scripted
model behind the real OpenAI SDK (and the Anthropic SDK where a test says so), and the example MCP
server, whose own call log proves what ran. A step fails the way real steps do: it asks for more
tool calls than ``max_tool_calls_per_step``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent_runtime.settings import Provider
from agent_runtime.testing import ScriptedModel, ToolCalls, wire_overrides
from tests.support.databases import database_url
from tests.support.harness import Live, live_service, make_settings, read_stream, write_registry

AUTO_APPROVE = """
plan_rules:
  - id: read-only
    match: {all_tools: {read_only: true}}
    decision: auto_approve
"""


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _step(sid: str, tool: str, deps: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "title": sid, "instruction": f"do {sid}", "tools": [tool], "depends_on": deps or [], **extra}


def _too_many(text: str) -> ToolCalls:
    """Three calls: over the limit of two, so the step fails after making two."""
    return [("example.echo", {"text": text})] * 3


@asynccontextmanager
async def _service(
    tmp: Path,
    model: ScriptedModel,
    *,
    backend: str = "sqlite",
    provider: Provider = "openai",
    policy: str | None = None,
    **limits: Any,
) -> AsyncIterator[tuple[Live, Path]]:
    log = tmp / "calls.jsonl"
    sections: dict[str, Any] = {}
    if policy is not None:
        path = tmp / "policy.yaml"
        path.write_text(policy)
        sections["policy"] = {"path": str(path), "estimate_history_seconds": 0}
    async with database_url(backend, tmp) as url:
        settings = make_settings(
            tmp,
            registry=write_registry(tmp, call_log=log),
            database={"url": url, "auto_migrate": True},
            limits={"max_tool_calls_per_step": 2, **limits},
            **sections,
        )
        async with live_service(settings, wire_overrides(model.fake(), provider)) as live:
            yield live, log


def _started(log: Path) -> list[tuple[str, dict[str, Any]]]:
    if not log.exists():
        return []
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return [(e["tool"], e["arguments"]) for e in entries if e["event"] == "start"]


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["sse_event"] == kind]


async def test_a_step_with_retry_runs_again_after_its_backoff_and_each_failed_attempt_is_an_event(
    tmp_path: Path, backend: str
) -> None:
    plan = {"summary": "echo", "steps": [_step("s1", "example.echo", on_failure={
        "action": "retry", "attempts": 3, "backoff_seconds": 0.05})]}  # fmt: skip
    attempts: list[int] = []

    def calls(_conversation: str, step: str) -> ToolCalls:
        attempts.append(1)
        n = len(attempts)
        return _too_many(f"attempt {n}") if n < 3 else [("example.echo", {"text": "attempt 3"})]

    async with _service(tmp_path, ScriptedModel(plan, calls), backend=backend) as (live, log):
        task_id = (await live.submit("echo"))["id"]
        await live.wait_for(task_id, "approval_required")
        assert (await live.approve(task_id, 1)).status_code == 202
        events = await read_stream(live.client, task_id, timeout=60)
        task = await live.task(task_id)

    assert events[-1]["sse_event"] == "task_completed"
    retrying = _of(events, "step_retrying")
    assert [(r["step_id"], r["attempt"], r["attempts"]) for r in retrying] == [("s1", 1, 3), ("s1", 2, 3)]
    assert {r["error"]["code"] for r in retrying} == {"step_limit_exceeded"}
    assert "exceeded 2 tool calls" in retrying[0]["error"]["message"]
    assert [e["step_id"] for e in _of(events, "step_started")] == ["s1"] * 3
    step = task["plan"]["steps"][0]
    assert step["status"] == "completed" and step["error"]["attempt"] == 2
    # Each failed attempt made its two calls; the third made one; nothing was made twice.
    texts = [args["text"] for _tool, args in _started(log)]
    assert texts == ["attempt 1"] * 2 + ["attempt 2"] * 2 + ["attempt 3"]


CALL_GATE = """
call_rules:
  - id: notes-gate
    match: {name: [example.write_note]}
    decision: require_call_approval
"""


async def test_a_sibling_at_a_call_gate_pauses_the_task_at_once_while_a_step_waits_out_its_backoff(
    tmp_path: Path,
) -> None:
    """The backoff is ten minutes: the pause does not wait for it, and the wait is kept for later."""
    flaky = _step("flaky", "example.echo", on_failure={"action": "retry", "attempts": 2, "backoff_seconds": 600})
    note = {**_step("note", "example.wait"), "tools": ["example.wait", "example.write_note"]}
    plan = {"summary": "a flaky echo beside a gated note", "steps": [flaky, note]}
    calls: dict[str, ToolCalls] = {
        "flaky": _too_many("flaky"),
        # A second of waiting first: by then the flaky step failed and sleeps in its backoff.
        "note": [("example.wait", {"seconds": 1, "steps": 1}), ("example.write_note", {"name": "n", "text": "t"})],
    }
    async with _service(tmp_path, ScriptedModel(plan, calls), policy=CALL_GATE) as (live, _log):
        task_id = (await live.submit("flaky and a note"))["id"]
        await live.wait_for(task_id, "approval_required")
        assert (await live.approve(task_id, 1)).status_code == 202
        paused = await live.wait_for(task_id, "call_approval_required", timeout=30)
        at_gate = await live.task(task_id)
        cancelled = await live.client.post(f"/v1/tasks/{task_id}/cancel", json={"reason": "test over"})

    assert [r["step_id"] for r in _of(paused, "step_retrying")] == ["flaky"]
    assert at_gate["status"] == "needs_attention"
    steps = {step["id"]: step for step in at_gate["plan"]["steps"]}
    assert steps["flaky"]["status"] == "pending" and steps["flaky"]["error"]["attempt"] == 1
    retry_at = datetime.fromisoformat(steps["flaky"]["error"]["retry_at"])
    assert retry_at - datetime.now(UTC) > timedelta(minutes=5)  # kept for when the task resumes
    assert cancelled.status_code == 200, cancelled.text


async def test_a_retried_step_that_keeps_failing_fails_the_task_after_its_attempts(tmp_path: Path) -> None:
    plan = {"summary": "echo", "steps": [_step("s1", "example.echo")],
            "on_failure": {"action": "retry", "attempts": 2}}  # fmt: skip
    async with _service(tmp_path, ScriptedModel(plan, {"s1": _too_many("again")})) as (live, _log):
        task_id = (await live.submit("echo"))["id"]
        await live.wait_for(task_id, "approval_required")
        await live.approve(task_id, 1)
        events = await read_stream(live.client, task_id, timeout=60)

    assert [r["attempt"] for r in _of(events, "step_retrying")] == [1]
    assert events[-1]["sse_event"] == "task_failed"
    assert events[-1]["data"]["error"]["code"] == "step_limit_exceeded"


async def test_a_skipped_step_lets_its_dependents_run_and_they_are_told_it_was_skipped(
    tmp_path: Path, backend: str
) -> None:
    plan = {"summary": "skip s1", "steps": [
        _step("s1", "example.echo", on_failure={"action": "skip"}),
        _step("s2", "example.add", ["s1"]),
    ]}  # fmt: skip
    seen: dict[str, str] = {}

    def calls(conversation: str, step: str) -> ToolCalls:
        seen[step] = conversation
        return _too_many("x") if step == "s1" else [("example.add", {"a": 1, "b": 2})]

    async with _service(tmp_path, ScriptedModel(plan, calls), backend=backend) as (live, log):
        task_id = (await live.submit("skip"))["id"]
        await live.wait_for(task_id, "approval_required")
        await live.approve(task_id, 1)
        events = await read_stream(live.client, task_id, timeout=60)
        task = await live.task(task_id)

    assert events[-1]["sse_event"] == "task_completed"
    skipped = _of(events, "step_skipped")
    assert [(s["step_id"], s["attempts"], s["error"]["code"]) for s in skipped] == [("s1", 1, "step_limit_exceeded")]
    assert "step s1 was skipped after it failed" in seen["s2"]
    assert [s["status"] for s in task["plan"]["steps"]] == ["skipped", "completed"]
    assert task["result"]["outputs"]["s1"].startswith("[step s1 was skipped")
    assert [tool for tool, _ in _started(log)] == ["echo", "echo", "add"]


def _replanning(fixed: bool) -> tuple[ScriptedModel, dict[str, str]]:
    """v1: s1 (add) completes, s2 (echo) fails and asks for a replan, s3 depends on s2. The replan
    writes v<n>-a (multiply; it fails too unless ``fixed``). Every tool is read-only."""
    first = {"summary": "add, echo, multiply", "on_failure": {"action": "replan"}, "steps": [
        _step("s1", "example.add"), _step("s2", "example.echo", ["s1"]), _step("s3", "example.multiply", ["s2"]),
    ]}  # fmt: skip
    seen: dict[str, str] = {}

    def plan(conversation: str) -> dict[str, Any]:
        if "Steps not yet done:" not in conversation:
            return first
        seen["replan"] = conversation
        prefix = conversation.split("New step ids start with:\n", 1)[1].split("\n", 1)[0]
        return {"summary": "multiply instead", "steps": [_step(f"{prefix}a", "example.multiply", ["s1"])]}

    def calls(_conversation: str, step: str) -> ToolCalls:
        if step == "s1":
            return [("example.add", {"a": 2, "b": 3})]
        if step.endswith("-a"):
            return [("example.multiply", {"a": 5, "b": 2})] * (1 if fixed else 3)
        return _too_many(step)

    return ScriptedModel(plan, calls), seen


async def test_a_replan_keeps_the_completed_steps_and_runs_only_the_new_ones_once_approved(
    tmp_path: Path, backend: str
) -> None:
    model, seen = _replanning(fixed=True)
    async with _service(tmp_path, model, backend=backend) as (live, log):
        task_id = (await live.submit("add, echo, multiply"))["id"]
        proposed_v1 = await live.wait_for(task_id, "approval_required")
        await live.approve(task_id, 1)
        first = await read_stream(
            live.client, task_id, after=proposed_v1[-1]["sse_id"], until="approval_required", timeout=60
        )
        proposed = await live.task(task_id)
        assert (await live.approve(task_id, 2)).status_code == 202
        events = await read_stream(live.client, task_id, after=first[-1]["sse_id"], timeout=60)
        task = await live.task(task_id)

    replans = _of(first, "replan_requested")
    assert [(r["step_id"], r["replan"], r["max_replans"]) for r in replans] == [("s2", 1, 2)]
    assert replans[0]["error"]["code"] == "step_limit_exceeded"
    assert [e["sse_event"] for e in first][-3:] == ["plan_proposed", "llm_usage", "approval_required"]
    assert "s1" in seen["replan"] and "exceeded 2 tool calls" in seen["replan"]
    assert proposed["status"] == "awaiting_approval" and proposed["current_plan_version"] == 2
    v2 = proposed["plan"]["steps"]
    assert [(s["id"], s["status"]) for s in v2] == [("s1", "completed"), ("v2-a", "pending")]
    assert v2[0]["output"]
    assert events[-1]["sse_event"] == "task_completed"
    assert [e["step_id"] for e in _of(events, "step_started")] == ["v2-a"]
    assert task["plan"]["steps"][0]["output"] == v2[0]["output"]
    assert [tool for tool, _ in _started(log)] == ["add", "echo", "echo", "multiply"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])  # the plan's optional fields on either wire
async def test_replans_are_bounded_by_max_replans_and_a_replanned_version_goes_through_the_policy(
    tmp_path: Path, provider: Provider
) -> None:
    model, _seen = _replanning(fixed=False)
    async with _service(tmp_path, model, provider=provider, policy=AUTO_APPROVE, max_replans=1) as (live, log):
        task_id = (await live.submit("add, echo, multiply"))["id"]
        events = await read_stream(live.client, task_id, timeout=90)
        task = await live.task(task_id)

    kinds = [e["sse_event"] for e in events]
    assert kinds.count("replan_requested") == 1
    # Both versions were approved by the policy (every tool is read-only).
    assert [(a["plan_version"], a["actor"]) for a in _of(events, "task_approved")] == [
        (1, "policy:read-only"),
        (2, "policy:read-only"),
    ]
    assert events[-1]["sse_event"] == "task_failed"
    error = events[-1]["data"]["error"]
    assert "already replanned 1 time(s) (limits.max_replans)" in error["message"]
    assert error["code"] == "step_limit_exceeded" and error["details"]["replans"] == 1
    assert task["status"] == "failed"
    assert [tool for tool, _ in _started(log)].count("add") == 1


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_verification_records_the_verdict_in_the_result_and_a_not_met_task_still_completes(
    tmp_path: Path, backend: str, provider: Provider
) -> None:
    plan = {"summary": "add", "verify": True, "steps": [_step("s1", "example.add")]}
    model = ScriptedModel(plan, {"s1": [("example.add", {"a": 1, "b": 1})]},
                          verdict={"met": False, "reason": "the request asked for 3"})  # fmt: skip
    async with _service(tmp_path, model, backend=backend, provider=provider) as (live, _log):
        task_id = (await live.submit("add"))["id"]
        await live.wait_for(task_id, "approval_required")
        await live.approve(task_id, 1)
        events = await read_stream(live.client, task_id, timeout=60)
        task = await live.task(task_id)

    assert _of(events, "verification_completed") == [{"met": False, "reason": "the request asked for 3"}]
    assert events[-1]["sse_event"] == "task_completed"
    assert task["result"]["verification"] == {"met": False, "reason": "the request asked for 3"}
    usage = [e for e in _of(events, "llm_usage") if e["role"] == "executor" and e["step_id"] is None]
    assert len(usage) == 2  # the verification and the summary


@pytest.mark.parametrize(
    ("on_failure", "field", "words"),
    [
        ({"action": "retry", "attempts": 11}, "plan.steps.0.on_failure.attempts", "less than or equal to 10"),
        ({"action": "skip", "attempts": 2}, "plan.steps.0.on_failure", "apply only to action 'retry'"),
        ({"action": "later"}, "plan.steps.0.on_failure.action", "'fail', 'retry', 'skip' or 'replan'"),
        ({"action": "retry", "backoff_seconds": -1}, "plan.steps.0.on_failure.backoff_seconds", "greater than"),
    ],
)
async def test_an_edited_plan_with_a_bad_on_failure_is_refused_naming_the_field(
    tmp_path: Path, on_failure: dict[str, Any], field: str, words: str
) -> None:
    plan = {"summary": "add", "steps": [_step("s1", "example.add")]}
    async with _service(tmp_path, ScriptedModel(plan)) as (live, _log):
        task_id = (await live.submit("add"))["id"]
        await live.wait_for(task_id, "approval_required")
        edited = {"summary": "add", "steps": [_step("s1", "example.add", on_failure=on_failure)]}
        response = await live.client.put(f"/v1/tasks/{task_id}/plan", json={"base_version": 1, "plan": edited})
        good = {"summary": "add", "steps": [_step("s1", "example.add", on_failure={"action": "skip"})],
                "on_failure": {"action": "retry", "attempts": 2, "backoff_seconds": 1}}  # fmt: skip
        accepted = await live.client.put(f"/v1/tasks/{task_id}/plan", json={"base_version": 1, "plan": good})

    assert response.status_code == 422, response.text
    body = response.json()["error"]
    assert field in json.dumps(body) and words in json.dumps(body), body
    assert accepted.status_code == 200, accepted.text
    versions = accepted.json()["current_plan_version"]
    assert versions == 2


async def test_the_readme_offline_demo_skips_the_failing_step_and_records_a_not_met_verdict(tmp_path: Path) -> None:
    """The README's example, with the offline model: its words set ``on_failure`` and ``verify``."""
    settings = make_settings(tmp_path, registry=write_registry(tmp_path), limits={"max_tool_calls_per_step": 1})
    prompt = "Add and multiply 2 and 3, skip on failure. Then echo the result and verify it."
    async with live_service(settings) as live:
        task_id = (await live.submit(prompt))["id"]
        proposed = await live.wait_for(task_id, "approval_required")
        await live.approve(task_id, 1)
        events = await read_stream(live.client, task_id, timeout=60)
        task = await live.task(task_id)

    plan = _of(proposed, "plan_proposed")[0]["plan"]
    assert plan["on_failure"] == {"action": "skip"} and plan["verify"] is True
    assert [s["tools"] for s in plan["steps"]] == [["example.add", "example.multiply"], ["example.echo"]]
    kinds = [e["sse_event"] for e in events]
    assert [k for k in kinds if k in ("step_skipped", "step_completed", "verification_completed")] == [
        "step_skipped", "step_completed", "verification_completed"
    ]  # fmt: skip
    assert kinds[-1] == "task_completed"
    verdict = task["result"]["verification"]
    assert verdict["met"] is False and "was skipped" in verdict["reason"]


async def test_the_offline_model_replans_with_one_tool_per_step_and_the_replan_runs_once_approved(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, registry=write_registry(tmp_path), limits={"max_tool_calls_per_step": 1})
    prompt = "Echo hello. Then add and multiply 2 and 3, replan on failure."
    async with live_service(settings) as live:
        task_id = (await live.submit(prompt))["id"]
        first = await live.wait_for(task_id, "approval_required")
        await live.approve(task_id, 1)
        second = await read_stream(live.client, task_id, after=first[-1]["sse_id"], until="approval_required")
        v2 = await live.task(task_id)
        await live.approve(task_id, 2)
        events = await read_stream(live.client, task_id, after=second[-1]["sse_id"], timeout=60)

    assert [r["step_id"] for r in _of(second, "replan_requested")] == ["step-2"], [e["sse_event"] for e in second]
    assert v2["status"] == "awaiting_approval", (v2["error"], [e["sse_event"] for e in second])
    steps = v2["plan"]["steps"]
    assert [(s["id"], s["status"], s["tools"]) for s in steps] == [
        ("step-1", "completed", ["example.echo"]), ("v2-step-1", "pending", ["example.add"])
    ]  # fmt: skip
    assert [e["data"]["step_id"] for e in events if e["sse_event"] == "step_started"] == ["v2-step-1"]
    assert events[-1]["sse_event"] == "task_completed"


async def test_an_edit_of_a_replanned_version_keeps_the_completed_steps_it_leaves_unchanged(tmp_path: Path) -> None:
    model, _seen = _replanning(fixed=True)
    async with _service(tmp_path, model) as (live, log):
        task_id = (await live.submit("add, echo, multiply"))["id"]
        proposed_v1 = await live.wait_for(task_id, "approval_required")
        await live.approve(task_id, 1)
        first = await read_stream(
            live.client, task_id, after=proposed_v1[-1]["sse_id"], until="approval_required", timeout=60
        )
        v2 = (await live.client.get(f"/v1/tasks/{task_id}/plan/versions")).json()
        plan = next(v["plan"] for v in v2 if v["version"] == 2)
        plan["summary"] = "multiply instead (edited)"
        edited = await live.client.put(f"/v1/tasks/{task_id}/plan", json={"base_version": 2, "plan": plan})
        assert edited.status_code == 200, edited.text
        assert [(s["id"], s["status"]) for s in edited.json()["plan"]["steps"]] == [
            ("s1", "completed"), ("v2-a", "pending")
        ]  # fmt: skip
        await live.approve(task_id, 3)
        events = await read_stream(live.client, task_id, after=first[-1]["sse_id"], timeout=60)

    assert events[-1]["sse_event"] == "task_completed"
    assert [tool for tool, _ in _started(log)] == ["add", "echo", "echo", "multiply"]
