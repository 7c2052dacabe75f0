"""The whole flow through HTTP, followed by a real SSE client, against the example MCP server (stdio)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio

from agent_runtime.domain.events import parse_event
from tests.support.harness import live_service, make_settings, read_stream


async def test_submit_plan_approve_execute_streams_real_tool_calls_until_completed(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        created = await live.submit("Add 2 and 3. Then echo the word done.", metadata={"ticket": "T-1"})
        assert created["status"] == "queued"
        assert created["links"]["stream"] == f"/v1/tasks/{created['id']}/stream"
        seen = await live.wait_for(created["id"], "approval_required")
        assert [e["sse_event"] for e in seen if e["sse_event"] != "llm_usage"] == [
            "task_created",
            "planning_started",
            "plan_proposed",
            "approval_required",
        ]
        assert [e["data"]["role"] for e in seen if e["sse_event"] == "llm_usage"] == ["planner"]
        proposed = seen[2]["data"]
        assert proposed["offline_test"] is True and proposed["author"] == "planner:offline/offline-test"

        task = await live.task(created["id"])
        assert task["status"] == "awaiting_approval"
        assert task["metadata"] == {"ticket": "T-1"}
        plan = task["plan"]
        assert plan["version"] == 1 and plan["summary"].startswith("[offline-test]")
        assert all(tool.startswith("example.") for step in plan["steps"] for tool in step["tools"])

        response = await live.approve(created["id"], 1)
        assert response.status_code == 202
        events = await read_stream(live.client, created["id"], after=seen[-1]["sse_id"])
        types = [e["sse_event"] for e in events]
        assert types[0] == "task_approved" and types[-1] == "task_completed"
        assert "execution_started" in types and "step_completed" in types and "text_delta" in types
        started = [e for e in events if e["sse_event"] == "tool_call_started"]
        completed = [e for e in events if e["sse_event"] == "tool_call_completed"]
        assert {e["data"]["tool"] for e in started} == {t for s in plan["steps"] for t in s["tools"]}
        add = next(e for e in completed if e["data"]["tool"] == "example.add")
        assert add["data"]["is_error"] is False and float(add["data"]["result"]) > 0
        # ids are the per-task sequence: gap-free from 1
        all_ids = [e["sse_id"] for e in seen + events]
        assert all_ids == list(range(1, len(all_ids) + 1))
        for e in seen + events:  # every streamed payload is its typed record's, field for field
            assert json.dumps(parse_event(e["type"], e["data"]).payload()) == json.dumps(e["data"])

        done = await live.task(created["id"])
        assert done["status"] == "completed"
        assert all(step["status"] == "completed" for step in done["plan"]["steps"])
        assert done["result"]["summary"]
        with anyio.fail_after(20):  # completion is committed before the servers stop; cleanup follows
            while live.runtime.runner.active():
                await live.runtime.bus.wait_for_work(1)
        workspaces = live.runtime.pool.workspaces
        assert not workspaces.path(created["id"]).exists() and not workspaces.logs_dir(created["id"]).exists()


async def test_stream_resumes_after_last_event_id_and_closes_after_terminal_event(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        created = await live.submit("Echo hello.")
        first = await live.wait_for(created["id"], "approval_required")
        await live.approve(created["id"], 1)
        full = await read_stream(live.client, created["id"])  # ends by itself at task_completed
        assert full[-1]["sse_event"] == "task_completed"
        resumed = await read_stream(live.client, created["id"], last_event_id=first[1]["sse_id"])
        assert [e["sse_id"] for e in resumed] == [e["sse_id"] for e in full[2:]]
        assert [e["sse_id"] for e in await read_stream(live.client, created["id"], after=len(full))] == []


async def test_revision_and_operator_edit_create_new_plan_versions_and_approval_binds_to_one(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        created = await live.submit("Add 1 and 2.")
        task_id = created["id"]
        proposed = await live.wait_for(task_id, "approval_required")
        response = await live.client.post(f"/v1/tasks/{task_id}/revise", json={"feedback": "Also echo the sum."})
        assert response.status_code == 202 and response.json()["status"] == "queued"
        events = await read_stream(live.client, task_id, after=proposed[-1]["sse_id"], until="approval_required")
        assert [e["sse_event"] for e in events][0] == "revision_requested"
        task = await live.task(task_id)
        assert task["current_plan_version"] == 2

        edited = {
            "summary": "operator plan",
            "steps": [
                {"id": "a", "title": "echo", "instruction": "Echo hi", "tools": ["example.echo"], "depends_on": []}
            ],
        }
        response = await live.client.put(
            f"/v1/tasks/{task_id}/plan", json={"base_version": 2, "plan": edited, "actor": "ops"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["current_plan_version"] == 3
        assert response.json()["plan"]["author"] == "operator:ops"

        stale = await live.approve(task_id, 2)
        assert stale.status_code == 409
        assert stale.json()["error"]["code"] == "stale_plan_version"
        assert stale.json()["error"]["details"]["current_plan_version"] == 3

        versions = (await live.client.get(f"/v1/tasks/{task_id}/plan/versions")).json()
        assert [v["version"] for v in versions] == [1, 2, 3]
        assert len({v["content_hash"] for v in versions}) == 3

        assert (await live.approve(task_id, 3)).status_code == 202
        events = await read_stream(live.client, task_id)
        calls = [e["data"]["tool"] for e in events if e["sse_event"] == "tool_call_started"]
        assert calls == ["example.echo"]
        assert (await live.task(task_id))["approved_plan_version"] == 3


async def test_list_filters_by_status_and_paginates_with_a_cursor(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        ids = [(await live.submit(f"Echo item {i}."))["id"] for i in range(5)]
        for task_id in ids:
            await live.wait_for(task_id, "approval_required")
        page1 = (await live.client.get("/v1/tasks", params={"status": "awaiting_approval", "limit": 2})).json()
        page2 = (
            await live.client.get(
                "/v1/tasks", params={"status": "awaiting_approval", "limit": 2, "cursor": page1["next_cursor"]}
            )
        ).json()
        page3 = (
            await live.client.get(
                "/v1/tasks", params={"status": "awaiting_approval", "limit": 2, "cursor": page2["next_cursor"]}
            )
        ).json()
        listed = [t["id"] for t in page1["items"] + page2["items"] + page3["items"]]
        assert listed == list(reversed(ids))
        assert page3["next_cursor"] is None
        assert (await live.client.get("/v1/tasks", params={"status": "completed"})).json()["items"] == []
