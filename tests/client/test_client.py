"""The Python client against the real service on 127.0.0.1: typed answers, errors with codes, the key."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from agent_runtime.client import (
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    Plan,
    PlanOut,
    PlanStep,
    TaskOut,
)
from tests.support.dropping_proxy import dropping_proxy
from tests.support.harness import free_port, live_service, make_settings

PROMPT = "Write a note named hello saying hi, then read the note hello back."


async def test_the_async_client_submits_waits_for_the_plan_approves_and_follows_events_to_completion(
    tmp_path: Path,
) -> None:
    async with live_service(make_settings(tmp_path)) as live, AsyncClient(live.url) as client:
        created = await client.submit(PROMPT, {"ticket": "T-1"})
        assert isinstance(created, TaskOut) and created.status == "queued" and created.metadata == {"ticket": "T-1"}
        with anyio.fail_after(30):
            task = await client.wait(created.id)
        assert task.status == "awaiting_approval"
        assert isinstance(task.plan, PlanOut) and task.plan.version == 1
        assert [s.tools for s in task.plan.steps] == [["example.write_note"], ["example.read_note"]]

        approved = await client.approve(task.id, task.plan.version)
        assert approved.status == "approved" and approved.approved_plan_version == 1
        with anyio.fail_after(30):
            events = [e async for e in client.events(task.id, after=task.last_event_seq)]
        assert [e.seq for e in events] == list(range(task.last_event_seq + 1, events[-1].seq + 1))
        assert events[0].type == "task_approved" and events[-1].type == "task_completed"
        calls = [e.data["tool"] for e in events if e.type == "tool_call_completed"]
        assert calls == ["example.write_note", "example.read_note"]
        done = await client.get(task.id)
        assert done.status == "completed" and done.result is not None
        assert all(step.status == "completed" for step in done.plan.steps)  # type: ignore[union-attr]


async def test_the_sync_client_revises_edits_and_approves_the_version_it_names(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:

        def scenario() -> None:
            with Client(live.url) as client:
                task = client.wait(client.submit(PROMPT).id, timeout=30)
                assert task.status == "awaiting_approval" and task.current_plan_version == 1
                [pending] = client.approvals().items
                assert (pending.task_id, pending.plan_version, pending.step_count) == (task.id, 1, 2)
                assert pending.tools == ["example.read_note", "example.write_note"]
                assert pending.kind == "plan" and pending.risky_tools == ["example.write_note"]

                revised = client.revise(task.id, "Also add 2 and 3.")
                assert revised.status == "queued"
                task = client.wait(task.id, timeout=30)
                assert task.current_plan_version == 2

                plan = Plan(
                    summary="Write the todo note",
                    steps=[
                        PlanStep(
                            id="s1",
                            title="Write",
                            instruction="Write a note named todo saying buy milk",
                            tools=["example.write_note"],
                            depends_on=[],
                        )
                    ],
                )
                edited = client.edit_plan(task.id, 2, plan)
                assert edited.current_plan_version == 3 and edited.plan is not None
                assert edited.plan.content_hash == plan.content_hash()
                assert [v.version for v in client.plan_versions(task.id)] == [1, 2, 3]

                with pytest.raises(Conflict) as stale:
                    client.approve(task.id, 2)
                assert stale.value.code == "stale_plan_version" and stale.value.status == 409
                assert stale.value.details["current_plan_version"] == 3

                client.approve(task.id, 3)
                done = client.wait(task.id, timeout=30)
                assert done.status == "completed"
                assert client.approvals().items == []
                page = client.list_tasks(status="completed")
                assert [t.id for t in page.items] == [task.id]

        await anyio.to_thread.run_sync(scenario)


async def test_failed_requests_raise_exceptions_carrying_the_service_error_code(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live, AsyncClient(live.url) as client:
        with pytest.raises(NotFound) as missing:
            await client.get("task_000000000000000000000000")
        assert (missing.value.status, missing.value.code) == (404, "not_found")
        assert missing.value.details == {"task_id": "task_000000000000000000000000"}

        with pytest.raises(InvalidRequest) as invalid:
            await client.submit("")
        assert invalid.value.code == "validation_error"
        assert invalid.value.details["fields"][0]["field"] == "prompt"

        task = await client.submit(PROMPT)
        await client.cancel(task.id, "not needed")
        with pytest.raises(Conflict) as conflict:
            await client.reject(task.id, "too late")
        assert conflict.value.code == "invalid_state"
        assert conflict.value.details["current_status"] == "cancelled"
        assert str(conflict.value).startswith("invalid_state: ")


async def test_the_api_key_goes_out_as_a_bearer_token_from_the_argument_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_service(make_settings(tmp_path)) as live, dropping_proxy(live.url, cuts=[]) as proxy:
        monkeypatch.setenv("AGENT_RUNTIME_API_KEY", "from-env-123")
        async with AsyncClient(proxy.url) as client:
            await client.list_tasks()
        async with AsyncClient(proxy.url, api_key="from-arg-456") as client:
            await client.list_tasks()
            assert "from-arg-456" not in repr(client.config)
        monkeypatch.delenv("AGENT_RUNTIME_API_KEY")
        async with AsyncClient(proxy.url) as client:
            await client.list_tasks()
    heads = [h.lower() for h in proxy.request_heads]
    assert b"authorization: bearer from-env-123" in heads[0]
    assert b"authorization: bearer from-arg-456" in heads[1]
    assert b"authorization" not in heads[2]


async def test_an_unreachable_service_raises_connection_failed_naming_the_server() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AsyncClient(url) as client:
        with pytest.raises(ConnectionFailed) as failed:
            await client.get("task_x")
    assert failed.value.server == url and url in str(failed.value)


async def test_approve_binds_the_content_hash_when_given_and_a_stale_one_is_refused_with_409(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live, AsyncClient(live.url) as client:
        with anyio.fail_after(30):
            first = await client.wait((await client.submit(PROMPT)).id)
            second = await client.wait((await client.submit(PROMPT)).id)
        assert first.plan is not None and second.plan is not None

        def stale() -> None:  # the sync client: a hash the version does not have
            with Client(live.url) as sync_client, pytest.raises(Conflict) as refused:
                sync_client.approve(first.id, 1, "sha256:" + "0" * 64)
            assert refused.value.status == 409 and refused.value.code == "content_hash_mismatch"
            assert refused.value.details["content_hash"] == first.plan.content_hash  # type: ignore[union-attr]

        await anyio.to_thread.run_sync(stale)
        with pytest.raises(Conflict) as refused:
            await client.approve(second.id, 1, first.plan.content_hash + "x")
        assert refused.value.code == "content_hash_mismatch"
        assert (await client.get(first.id)).status == "awaiting_approval"

        approved = await client.approve(first.id, 1, first.plan.content_hash)
        assert approved.status == "approved" and approved.approved_plan_version == 1
