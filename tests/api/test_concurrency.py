"""Concurrent approvals execute once; cancel stops a tool call in flight."""

from __future__ import annotations

import json
from pathlib import Path

import anyio

from agent_runtime.testing import ScriptedModel, one_step_plan, openai_overrides
from tests.support.harness import live_service, make_settings, read_stream, write_registry


async def test_concurrent_approvals_of_one_version_start_exactly_one_execution(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        created = await live.submit("Add 4 and 5.")
        await live.wait_for(created["id"], "approval_required")
        statuses: list[int] = []

        async def approve() -> None:
            statuses.append((await live.approve(created["id"], 1)).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(25):
                tg.start_soon(approve)
        assert statuses.count(202) == 1
        assert set(statuses) <= {200, 202}  # repeats of the same approval are idempotent no-ops
        events = await read_stream(live.client, created["id"])
        types = [e["sse_event"] for e in events]
        assert types.count("task_approved") == 1
        assert types.count("execution_started") == 1
        assert types[-1] == "task_completed"
        assert len(await live.runtime.store.approvals(created["id"])) == 1


async def test_cancel_during_a_tool_call_stops_it_and_records_the_cancellation(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    model = ScriptedModel(one_step_plan("example.wait"), {"s1": [("example.wait", {"seconds": 120})]})
    fake = model.fake()
    settings = make_settings(tmp_path, registry=write_registry(tmp_path, call_log=log))
    async with live_service(settings, openai_overrides(fake)) as live:
        created = await live.submit("wait a long time")
        task_id = created["id"]
        await live.wait_for(task_id, "approval_required")
        await live.approve(task_id, 1)
        seen = await live.wait_for(task_id, "tool_progress")
        assert any(e["sse_event"] == "tool_call_started" for e in seen)
        response = await live.client.post(f"/v1/tasks/{task_id}/cancel", json={"reason": "changed my mind"})
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        events = await read_stream(live.client, task_id, after=seen[-1]["sse_id"])
        assert events[-1]["sse_event"] == "task_cancelled"
        assert events[-1]["data"]["reason"] == "changed my mind"
        with anyio.fail_after(20):  # the worker lets go of the task and its servers
            while live.runtime.runner.active():
                await live.runtime.bus.wait_for_work(1)
        assert not live.runtime.pool.workspaces.path(task_id).exists()
        calls = await live.runtime.store.tool_calls(task_id)
        assert [c.status.value for c in calls] == ["cancelled"]
        task = await live.task(task_id)
        assert task["plan"]["steps"][0]["status"] == "cancelled"
        # the server saw the call start and stop early, unsuccessfully (it was asked to wait 120 s)
        records = [json.loads(line) for line in log.read_text().splitlines()]
        waits = [r for r in records if r.get("tool") == "wait"]
        assert waits[0]["event"] == "start"
        assert all(r["is_error"] for r in waits if r["event"] == "end")
        assert all(r["time"] - waits[0]["time"] < 60 for r in waits)
