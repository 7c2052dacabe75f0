"""Sessions through the public API: a follow-up sees the session's earlier tasks (the offline
model plans from them; the wire fake shows the summary in the planner's and executor's requests),
``GET /v1/sessions/{id}`` lists what the caller may see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_runtime.agents.prompts import SESSION_HEADER
from agent_runtime.testing import ScriptedModel, one_step_plan, serve_on_loopback
from tests.support.harness import Live, live_service, make_settings, read_stream, write_registry
from tests.support.identity import auth_settings, bearer, make_key


async def _run(live: Live, prompt: str, **extra: Any) -> dict[str, Any]:
    """Submit, approve v1, wait for completion; the finished task."""
    created = await live.submit(prompt, **extra)
    await live.wait_for(created["id"], "approval_required")
    assert (await live.approve(created["id"], 1)).status_code == 202
    await read_stream(live.client, created["id"], until="task_completed")
    return await live.task(created["id"])


async def test_a_follow_up_in_a_session_is_planned_from_the_earlier_task(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        first = await _run(live, "Multiply 6 by 7.", session_id="calc-1")
        assert [s["tools"] for s in first["plan"]["steps"]] == [["example.multiply"]]

        follow_up = await live.submit("Do the same for 3 and 4.", session_id="calc-1")
        assert follow_up["session_id"] == "calc-1"
        await live.wait_for(follow_up["id"], "approval_required")
        planned = await live.task(follow_up["id"])
        assert [s["tools"] for s in planned["plan"]["steps"]] == [["example.multiply"]]

        alone = await live.submit("Do the same for 3 and 4.")  # no session: nothing to refer back to
        await live.wait_for(alone["id"], "approval_required")
        assert [s["tools"] for s in (await live.task(alone["id"]))["plan"]["steps"]] != [["example.multiply"]]


async def test_the_session_summary_reaches_the_planner_and_executor_requests(tmp_path: Path) -> None:
    model = ScriptedModel(one_step_plan("example.echo"), {"s1": [("example.echo", {"text": "hi"})]})
    fake = model.fake()
    with serve_on_loopback(fake) as url:
        role = {"provider": "openai", "model": "gpt-test", "base_url": f"{url}/v1", "api_key": "sk-test-sessions"}
        settings = make_settings(tmp_path, registry=write_registry(tmp_path), llm={"planner": role, "executor": role})
        async with live_service(settings) as live:
            first = await _run(live, "Echo the first-request-marker.", session_id="chat:42")
            before = len(fake.requests)
            assert not any(SESSION_HEADER in str(r.body) for r in fake.requests)  # nothing earlier yet
            await _run(live, "Now the same again, louder.", session_id="chat:42")
            after = len(fake.requests)
            other = await _run(live, "Echo in another session.", session_id="chat:43")
            assert other["session_id"] == "chat:43"

    second = fake.requests[before:after]  # the follow-up's planning, step turns and summary
    planning = [r for r in second if "response_format" in r.body]
    steps = [r for r in second if r.body.get("tools")]
    assert planning and steps
    earlier = f"{SESSION_HEADER}:\n- {first['id']} (completed): request: Echo the first-request-marker."
    for request in planning + steps:
        user = str(request.body["messages"][1]["content"])
        assert user.startswith(earlier)
        assert f"plan: {first['plan']['summary']}" in user and "result: summary: all steps finished" in user
    assert not any("first-request-marker" in str(r.body) for r in fake.requests[after:])  # another session


async def test_get_session_lists_its_tasks_newest_first_and_404s_an_unknown_one(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        first = await _run(live, "Echo one.", session_id="s-1")
        second = await live.submit("Echo two.", session_id="s-1")
        await live.submit("Echo elsewhere.", session_id="s-2")
        page = (await live.client.get("/v1/sessions/s-1")).json()
        assert page["session_id"] == "s-1" and page["next_cursor"] is None
        assert [t["id"] for t in page["items"]] == [second["id"], first["id"]]
        done = page["items"][1]
        assert done["prompt"] == "Echo one." and done["status"] == "completed" and done["result_summary"]
        assert done["session_id"] == "s-1" and done["links"]["self"] == f"/v1/tasks/{first['id']}"

        paged = (await live.client.get("/v1/sessions/s-1", params={"limit": 1})).json()
        assert [t["id"] for t in paged["items"]] == [second["id"]] and paged["next_cursor"] == second["id"]
        rest = await live.client.get("/v1/sessions/s-1", params={"limit": 1, "cursor": paged["next_cursor"]})
        assert [t["id"] for t in rest.json()["items"]] == [first["id"]]

        missing = await live.client.get("/v1/sessions/nobody-here")
        assert missing.status_code == 404 and missing.json()["error"]["details"] == {"session_id": "nobody-here"}
        bad = await live.client.post("/v1/tasks", json={"prompt": "Echo.", "session_id": "has space"})
        assert bad.status_code == 422 and "session_id" in bad.text
        assert (await live.client.get("/v1/sessions/" + "x" * 129)).status_code == 422


async def test_a_session_shows_each_caller_only_the_tasks_it_may_see(tmp_path: Path) -> None:
    async with live_service(auth_settings(tmp_path)) as live:
        carol = await make_key(live, "carol", "acme", "submitter")
        dave = await make_key(live, "dave", "acme", "submitter")
        viewer = await make_key(live, "vic", "acme", "viewer")
        outsider = await make_key(live, "olga", "globex", "admin")
        ids = {}
        for name, key in (("carol", carol), ("dave", dave)):
            body = {"prompt": f"Echo {name}.", "session_id": "shared"}
            response = await live.client.post("/v1/tasks", json=body, headers=bearer(key))
            ids[name] = response.json()["id"]

        async def seen(key: str) -> list[str] | int:
            response = await live.client.get("/v1/sessions/shared", headers=bearer(key))
            return [t["id"] for t in response.json()["items"]] if response.status_code == 200 else response.status_code

        assert await seen(carol) == [ids["carol"]]  # a submitter sees its own tasks only
        assert await seen(dave) == [ids["dave"]]
        assert await seen(viewer) == [ids["dave"], ids["carol"]]  # the tenant's tasks
        assert await seen(outsider) == 404  # another tenant: as if the session did not exist
