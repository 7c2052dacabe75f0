"""A command that changes nothing writes nothing, so it never fences out the lease holder.

Regression for: a repeated approve during execution committed an empty transaction that still
wrote the task row's ``updated_at``; the lease holder's fence compared ``updated_at``, so the
running worker lost its lease (``lease_lost`` → ``task_resumed`` → ``tool_call_in_doubt``), and a
tool safe to repeat ran twice."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent_runtime.store import schema as t
from agent_runtime.testing import ScriptedModel, one_step_plan, openai_overrides
from tests.support.databases import database_url
from tests.support.harness import Live, live_service, make_settings, read_stream, write_registry


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def _service(backend: str, tmp: Path, model: ScriptedModel, registry: Path) -> AsyncIterator[Live]:
    async with database_url(backend, tmp) as url:
        settings = make_settings(tmp, registry=registry, database={"url": url, "auto_migrate": True})
        async with live_service(settings, openai_overrides(model.fake())) as live:
            yield live


def _calls(log: Path, tool: str) -> list[str]:
    if not log.exists():
        return []
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return [e["event"] for e in entries if e["tool"] == tool]


async def _raw_row(live: Live, task_id: str) -> dict[str, Any]:
    """The task row exactly as stored (not through the store's read models)."""
    async with live.runtime.store.engine.connect() as conn:
        row = (await conn.execute(sa.select(t.tasks).where(t.tasks.c.id == task_id))).mappings().one()
    return dict(row)


async def test_a_repeated_approve_during_a_tool_call_leaves_the_running_worker_alone(
    tmp_path: Path, backend: str
) -> None:
    log = tmp_path / "calls.jsonl"
    registry = write_registry(tmp_path, call_log=log, extra="    tools:\n      wait: {idempotent: false}\n")
    model = ScriptedModel(one_step_plan("example.wait"), {"s1": [("example.wait", {"seconds": 2, "steps": 4})]})
    async with _service(backend, tmp_path, model, registry) as live:
        task_id = (await live.submit("wait a little"))["id"]
        proposed = await live.wait_for(task_id, "approval_required")
        assert (await live.approve(task_id, 1)).status_code == 202
        # In the middle of the call: the tool has reported progress.
        await read_stream(live.client, task_id, after=proposed[-1]["sse_id"], until="tool_progress")
        before = await _raw_row(live, task_id)
        repeat = await live.approve(task_id, 1)
        assert repeat.status_code == 200, repeat.text
        assert repeat.json()["status"] == "executing"
        after = await _raw_row(live, task_id)
        # Nothing written by the repeat (only the holder's heartbeat may have moved its expiry).
        assert {**after, "lease_expires_at": None} == {**before, "lease_expires_at": None}
        events = await read_stream(live.client, task_id, timeout=30)
        approval_trail = (await live.client.get(f"/v1/tasks/{task_id}")).json()
    types = [e["sse_event"] for e in events]
    assert types[-1] == "task_completed", types
    assert not {"task_resumed", "tool_call_in_doubt", "needs_attention"} & set(types), types
    assert types.count("task_approved") == 1
    assert _calls(log, "wait") == ["start", "end"]  # the tool's own record: one call
    assert approval_trail["status"] == "completed"


async def test_a_repeated_approve_of_a_completed_task_leaves_its_row_byte_identical(
    tmp_path: Path, backend: str
) -> None:
    registry = write_registry(tmp_path)
    model = ScriptedModel(one_step_plan("example.echo"), {"s1": [("example.echo", {"text": "hi"})]})
    async with _service(backend, tmp_path, model, registry) as live:
        task_id = (await live.submit("echo hi"))["id"]
        await live.wait_for(task_id, "approval_required")
        assert (await live.approve(task_id, 1)).status_code == 202
        await live.wait_for(task_id, "task_completed")
        before = await _raw_row(live, task_id)
        events_before = await live.runtime.store.events_after(task_id, 0)
        repeat = await live.approve(task_id, 1)
        assert repeat.status_code == 200, repeat.text
        assert repeat.json()["status"] == "completed"
        assert await _raw_row(live, task_id) == before
        assert await live.runtime.store.events_after(task_id, 0) == events_before
