"""Planner repair and executor allow-list, through the service with the real OpenAI SDK and the fake LLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_runtime.llm.base import LLMClient, LLMResponse, Message, ModelT, TextDeltaHandler, ToolSpec, Usage
from agent_runtime.runtime import Overrides
from agent_runtime.testing import FakeLLM, Reply, ScriptedCall, ScriptedModel, one_step_plan, openai_overrides, wire
from tests.support.harness import REPO, live_service, make_settings, read_stream, write_registry

BAD_TOOL_PLAN = one_step_plan("example.teleport")


async def test_an_invalid_plan_gets_one_repair_attempt_with_the_problems(tmp_path: Path) -> None:
    fake = FakeLLM(Reply(json=BAD_TOOL_PLAN), Reply(json=one_step_plan("example.echo")))
    async with live_service(make_settings(tmp_path), openai_overrides(fake)) as live:
        created = await live.submit("echo something")
        events = await live.wait_for(created["id"], "approval_required")
        events = [e for e in events if e["sse_event"] != "llm_usage"]  # one per model call
        types = [e["sse_event"] for e in events]
        assert types == ["task_created", "planning_started", "plan_invalid", "plan_proposed", "approval_required"]
        assert events[2]["data"]["problems"] == ["step 's1' names unknown tool 'example.teleport'"]
        assert events[3]["data"]["attempts"] == 2
        repair_request = json.dumps(fake.requests[1].body["messages"])
        assert "unknown tool 'example.teleport'" in repair_request
        task = await live.task(created["id"])
        assert task["plan"]["steps"][0]["tools"] == ["example.echo"] and task["current_plan_version"] == 1


async def test_a_plan_invalid_twice_fails_the_task_with_a_clear_error(tmp_path: Path) -> None:
    fake = FakeLLM(Reply(json=BAD_TOOL_PLAN), Reply(json={"summary": "empty", "steps": []}))
    async with live_service(make_settings(tmp_path), openai_overrides(fake)) as live:
        created = await live.submit("do it")
        events = await read_stream(live.client, created["id"])
        kinds = [e["sse_event"] for e in events]
        assert kinds[-5:] == ["llm_usage", "plan_invalid", "llm_usage", "plan_invalid", "task_failed"]
        error = events[-1]["data"]["error"]
        assert error["code"] == "plan_invalid"
        assert error["details"]["problems"] == ["the plan has no steps; produce at least one step"]
        task = await live.task(created["id"])
        assert task["status"] == "failed" and task["plan"] is None


async def test_an_llm_outage_fails_planning_cleanly_after_retries(tmp_path: Path) -> None:
    fake = FakeLLM(*[Reply.error(503) for _ in range(3)])
    async with live_service(make_settings(tmp_path), openai_overrides(fake)) as live:
        created = await live.submit("anything")
        events = await read_stream(live.client, created["id"])
        assert events[-1]["sse_event"] == "task_failed"
        assert events[-1]["data"]["error"]["code"] == "llm_error"
        assert len(fake.requests) == 3  # the first try and max_retries=2 retries
        assert (await live.task(created["id"]))["status"] == "failed"


async def test_a_call_to_a_tool_the_step_does_not_list_is_refused_and_recorded(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    plan = one_step_plan("example.echo")
    fake = FakeLLM(
        Reply(json=plan),
        Reply.calls(ScriptedCall(wire("example.write_note"), {"name": "x", "text": "sneaky"})),
        Reply.calls(ScriptedCall(wire("example.echo"), {"text": "hi"})),
        Reply(text="echoed"),
        Reply(text="summary"),
    )
    settings = make_settings(tmp_path, registry=write_registry(tmp_path, call_log=log))
    async with live_service(settings, openai_overrides(fake)) as live:
        created = await live.submit("echo hi")
        await live.wait_for(created["id"], "approval_required")
        await live.approve(created["id"], 1)
        events = await read_stream(live.client, created["id"])
        refused = [e for e in events if e["sse_event"] == "tool_call_refused"]
        assert [e["data"]["tool"] for e in refused] == ["example.write_note"]
        assert "not allowed in step s1" in refused[0]["data"]["reason"]
        assert events[-1]["sse_event"] == "task_completed"
        calls = await live.runtime.store.tool_calls(created["id"])
        assert [(c.tool_name, c.status.value) for c in calls] == [
            ("example.write_note", "refused"),
            ("example.echo", "completed"),
        ]
        # the refusal went back to the model as an error tool result
        refusal_turn = fake.requests[2].body["messages"]
        assert any(m["role"] == "tool" and "not allowed" in str(m["content"]) for m in refusal_turn)
        # and the server never saw it
        assert {json.loads(line)["tool"] for line in log.read_text().splitlines()} == {"echo"}


def _time_server() -> Path:
    path = REPO / ".tools" / "mcp-time-venv" / "bin" / "mcp-server-time"
    if not path.exists():
        pytest.skip("mcp-server-time is not installed; run scripts/install-test-servers.sh")
    return path


async def test_the_whole_flow_calls_a_third_party_mcp_server_from_pypi(tmp_path: Path) -> None:
    server = _time_server()
    extra = f"  - id: time\n    type: local_stdio\n    config:\n      command: '{server}'\n"
    registry = write_registry(tmp_path, extra=extra)
    plan = {
        "summary": "time and echo",
        "steps": [
            {
                "id": "t",
                "title": "time",
                "instruction": "get time",
                "tools": ["time.get_current_time"],
                "depends_on": [],
            },
            {"id": "e", "title": "echo", "instruction": "echo", "tools": ["example.echo"], "depends_on": ["t"]},
        ],
    }
    model = ScriptedModel(
        plan, {"t": [("time.get_current_time", {"timezone": "UTC"})], "e": [("example.echo", {"text": "ok"})]}
    )
    async with live_service(make_settings(tmp_path, registry=registry), openai_overrides(model.fake())) as live:
        tools = (await live.client.get("/v1/tools")).json()["tools"]
        assert {"time.get_current_time", "example.echo"} <= {t["name"] for t in tools}
        created = await live.submit("what time is it in UTC")
        await live.wait_for(created["id"], "approval_required")
        await live.approve(created["id"], 1)
        events = await read_stream(live.client, created["id"])
        done = [e["data"] for e in events if e["sse_event"] == "tool_call_completed"]
        time_result = next(d for d in done if d["tool"] == "time.get_current_time")
        assert time_result["is_error"] is False
        assert json.loads(time_result["result"])["timezone"] == "UTC"
        assert events[-1]["sse_event"] == "task_completed"


async def test_a_tool_server_that_cannot_start_fails_its_step_naming_the_server_and_its_stderr(
    tmp_path: Path,
) -> None:
    switch = tmp_path / "fail-now"
    script = REPO / "tests" / "tools" / "servers" / "fail_when_file_exists.py"
    extra = (
        "  - id: flaky\n    type: local_stdio\n    config:\n      command: ${PYTHON}\n"
        f"      args: ['{script}', '{switch}']\n"
    )
    plan = {
        "summary": "two servers",
        "steps": [
            {"id": "ok", "title": "echo", "instruction": "echo", "tools": ["example.echo"], "depends_on": []},
            {"id": "bad", "title": "flaky", "instruction": "use it", "tools": ["flaky.echo"], "depends_on": ["ok"]},
        ],
    }
    model = ScriptedModel(plan, {"ok": [("example.echo", {"text": "fine"})], "bad": [("flaky.echo", {"text": "x"})]})
    settings = make_settings(tmp_path, registry=write_registry(tmp_path, extra=extra))
    async with live_service(settings, openai_overrides(model.fake())) as live:
        created = await live.submit("two servers")
        await live.wait_for(created["id"], "approval_required")  # discovery worked: flaky.echo is known
        switch.write_text("on")  # from now on the server dies at start
        await live.approve(created["id"], 1)
        events = await read_stream(live.client, created["id"])
        failed = next(e for e in events if e["sse_event"] == "step_failed")
        assert failed["data"]["step_id"] == "bad"
        message = failed["data"]["error"]["message"]
        assert "'flaky'" in message and "flaky server: refusing to start (exit 4)" in message
        assert failed["data"]["error"]["code"] == "tool_server_unavailable"
        assert events[-1]["sse_event"] == "task_failed"
        task = await live.task(created["id"])
        assert [s["status"] for s in task["plan"]["steps"]] == ["completed", "failed"]


async def test_a_step_that_keeps_calling_tools_fails_with_a_limit_error(tmp_path: Path) -> None:
    model = ScriptedModel(one_step_plan("example.echo"), {"s1": [("example.echo", {"text": "again"})] * 3})
    settings = make_settings(tmp_path, limits={"max_tool_calls_per_step": 2})
    async with live_service(settings, openai_overrides(model.fake())) as live:
        created = await live.submit("loop")
        await live.wait_for(created["id"], "approval_required")
        await live.approve(created["id"], 1)
        events = await read_stream(live.client, created["id"])
        error = events[-1]["data"]["error"]
        assert events[-1]["sse_event"] == "task_failed"
        assert error == {
            "code": "step_limit_exceeded",
            "message": "step s1 exceeded 2 tool calls",
            "details": {"step_id": "s1"},
        }


class _BrokenLLM(LLMClient):
    """An LLM client with a bug: it raises something that is not one of our errors."""

    provider = "broken"
    model = "broken"

    async def generate_structured(
        self, *, system: str, messages: list[Message], schema: type[ModelT], tools_hint: list[ToolSpec] | None = None
    ) -> tuple[ModelT, Usage]:
        raise RuntimeError("a bug")

    async def generate(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        on_text_delta: TextDeltaHandler | None = None,
    ) -> LLMResponse:
        raise RuntimeError("a bug")


async def test_an_unexpected_crash_in_a_worker_fails_the_task_clearly(tmp_path: Path) -> None:
    broken = _BrokenLLM()
    async with live_service(make_settings(tmp_path), Overrides(planner_llm=broken, executor_llm=broken)) as live:
        created = await live.submit("anything")
        events = await read_stream(live.client, created["id"])
        assert events[-1]["sse_event"] == "task_failed"
        assert events[-1]["data"]["error"]["message"] == "internal error: RuntimeError"


async def test_a_server_that_keeps_crashing_fails_the_step_once_its_restart_budget_is_spent(tmp_path: Path) -> None:
    tiny = REPO / "tests" / "tools" / "servers" / "tiny_server.py"
    extra = (
        "  - id: crashy\n    type: local_stdio\n    config:\n      command: ${PYTHON}\n"
        f"      args: ['{tiny}', '--die-on-call']\n"
    )
    calls = [("crashy.echo", {"text": f"try {n}"}) for n in range(3)]
    model = ScriptedModel(one_step_plan("crashy.echo"), {"s1": calls})
    settings = make_settings(
        tmp_path, registry=write_registry(tmp_path, extra=extra), tools={"max_restarts_per_step": 1}
    )
    async with live_service(settings, openai_overrides(model.fake())) as live:
        created = await live.submit("crash")
        await live.wait_for(created["id"], "approval_required")
        await live.approve(created["id"], 1)
        events = await read_stream(live.client, created["id"])
        failed_calls = [e for e in events if e["sse_event"] == "tool_call_failed"]
        assert len(failed_calls) == 3  # crash, crash after one restart, then no restart left
        assert "restart budget of 1 per step used up" in failed_calls[-1]["data"]["error"]
        step_failed = next(e for e in events if e["sse_event"] == "step_failed")
        assert step_failed["data"]["error"]["code"] == "tool_server_unavailable"
        assert events[-1]["sse_event"] == "task_failed"
