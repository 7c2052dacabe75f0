"""``POST /v1/tasks/{id}/retry``: a failed task runs again from where it failed.

Through the public API with the scripted model and the example MCP server, whose own call log proves
that a completed step's call is not made again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent_runtime.testing import ScriptedModel, ToolCalls, openai_overrides
from tests.support.harness import live_service, make_settings, read_stream, write_registry

PLAN = {
    "summary": "add, echo, note",
    "steps": [
        {"id": "s1", "title": "add", "instruction": "add", "tools": ["example.add"], "depends_on": []},
        {"id": "s2", "title": "echo", "instruction": "echo", "tools": ["example.echo"], "depends_on": ["s1"]},
        {"id": "s3", "title": "note", "instruction": "note", "tools": ["example.write_note"], "depends_on": ["s2"]},
    ],
}


def _tools(log: Path) -> list[str]:
    return [e["tool"] for e in map(json.loads, log.read_text().splitlines()) if e["event"] == "start"]


async def test_a_retried_task_keeps_completed_steps_and_runs_the_failed_one_and_those_after_it(
    tmp_path: Path,
) -> None:
    broken = {"s2": True}

    def calls(_conversation: str, step: str) -> ToolCalls:
        if step == "s1":
            return [("example.add", {"a": 2, "b": 3})]
        if step == "s2":  # three calls are over max_tool_calls_per_step (2): the step fails
            return [("example.echo", {"text": "once"})] * (3 if broken["s2"] else 1)
        return [("example.write_note", {"name": "done", "text": "yes"})]

    log = tmp_path / "calls.jsonl"
    settings = make_settings(
        tmp_path, registry=write_registry(tmp_path, call_log=log), limits={"max_tool_calls_per_step": 2}
    )
    async with live_service(settings, openai_overrides(ScriptedModel(PLAN, calls).fake())) as live:
        task_id = (await live.submit("add, echo, note"))["id"]
        await live.wait_for(task_id, "approval_required")
        early = await live.client.post(f"/v1/tasks/{task_id}/retry")
        assert early.status_code == 409, early.text
        assert early.json()["error"]["details"]["current_status"] == "awaiting_approval"
        assert (await live.approve(task_id, 1)).status_code == 202
        first = await read_stream(live.client, task_id, timeout=60)
        assert first[-1]["sse_event"] == "task_failed"
        failed = await live.task(task_id)
        assert [s["status"] for s in failed["plan"]["steps"]] == ["completed", "failed", "skipped"]
        s1_output = failed["plan"]["steps"][0]["output"]

        broken["s2"] = False
        response = await live.client.post(f"/v1/tasks/{task_id}/retry", json={"actor": "ana"})
        assert response.status_code == 200, response.text
        assert response.json()["status"] in ("approved", "executing", "completed")
        events = await read_stream(live.client, task_id, after=first[-1]["sse_id"], timeout=60)
        task = await live.task(task_id)
        again = await live.client.post(f"/v1/tasks/{task_id}/retry")

    types = [e["sse_event"] for e in events]
    assert types[0] == "task_retried" and types[-1] == "task_completed", types
    assert events[0]["data"] == {"plan_version": 1, "steps": ["s2", "s3"], "actor": "ana"}
    assert sorted(e["data"]["step_id"] for e in events if e["sse_event"] == "step_started") == ["s2", "s3"]
    assert task["status"] == "completed" and task["error"] is None
    assert [s["status"] for s in task["plan"]["steps"]] == ["completed"] * 3
    assert task["plan"]["steps"][0]["output"] == s1_output
    # s1's call ran once; s2 ran twice (two calls, then the limit) before the retry, once after.
    assert _tools(log) == ["add", "echo", "echo", "echo", "write_note"]
    assert again.status_code == 409
    assert again.json()["error"]["details"]["current_status"] == "completed"


async def _failed_in_planning(tmp: Path) -> tuple[int, dict[str, Any]]:
    def no_plan(_conversation: str) -> dict[str, Any]:
        return {"summary": "bad", "steps": [{"id": "x", "title": "x", "instruction": "x", "tools": ["nope.nope"]}]}

    async with live_service(make_settings(tmp), openai_overrides(ScriptedModel(no_plan).fake())) as live:
        task_id = (await live.submit("cannot be planned"))["id"]
        await live.wait_for(task_id, "task_failed")
        response = await live.client.post(f"/v1/tasks/{task_id}/retry")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def test_a_task_that_failed_in_planning_cannot_be_retried(tmp_path: Path) -> None:
    status, body = await _failed_in_planning(tmp_path)
    assert status == 409
    assert body["error"]["code"] == "invalid_state"
    assert body["error"]["details"]["current_status"] == "failed"
