"""kill -9 of the service mid-execution, restart, and the task completes without re-running work.

Real service processes on 127.0.0.1 (SQLite, one process at a time), the real OpenAI SDK talking to
the fake LLM server on loopback, and the example MCP server over stdio whose own call record proves
what ran.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agent_runtime.testing import ScriptedModel, ToolCalls, serve_on_loopback
from tests.support.harness import read_stream, write_registry
from tests.support.process import ServiceProcess, write_config

pytestmark = pytest.mark.e2e

PLAN = {
    "summary": "four steps",
    "steps": [
        {"id": "s1", "title": "add", "instruction": "add", "tools": ["example.add"], "depends_on": []},
        {"id": "s2", "title": "note", "instruction": "note", "tools": ["example.write_note"], "depends_on": ["s1"]},
        {"id": "s3", "title": "wait", "instruction": "wait", "tools": ["example.wait"], "depends_on": ["s2"]},
        {"id": "s4", "title": "echo", "instruction": "echo", "tools": ["example.echo"], "depends_on": ["s3"]},
    ],
}
CALLS: dict[str, ToolCalls] = {
    "s1": [("example.add", {"a": 2, "b": 3})],
    "s2": [("example.write_note", {"name": "n1", "text": "hello"})],
    "s3": [("example.wait", {"seconds": 4, "steps": 4})],
    "s4": [("example.echo", {"text": "after"})],
}


@pytest.fixture
def llm_root() -> Iterator[str]:
    with serve_on_loopback(ScriptedModel(PLAN, CALLS).fake()) as root:
        yield root


def _call_record(log: Path) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        seen.setdefault(record["tool"], []).append(record["event"])
    return seen


def _with_runner(config: Path, **runner: Any) -> Path:
    data = yaml.safe_load(config.read_text())
    data["runner"] = {**data.get("runner", {}), **runner}
    path = config.with_name("config-2.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


async def _run_until_wait_starts(service: ServiceProcess) -> tuple[str, list[dict[str, Any]]]:
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        created = (await client.post("/v1/tasks", json={"prompt": "four steps"})).json()
        await read_stream(client, created["id"], until="approval_required")
        assert (await client.post(f"/v1/tasks/{created['id']}/approve", json={"plan_version": 1})).status_code == 202
        seen: list[dict[str, Any]] = []
        for event in await read_stream(client, created["id"], until="tool_progress", timeout=60):
            seen.append(event)
        assert any(e["sse_event"] == "tool_call_started" and e["data"]["tool"] == "example.wait" for e in seen)
        return created["id"], seen


async def test_kill_9_mid_tool_call_then_restart_completes_without_rerunning_completed_steps(
    tmp_path: Path, llm_root: str
) -> None:
    log = tmp_path / "calls.jsonl"
    registry = write_registry(tmp_path, call_log=log)
    config = write_config(tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", registry=registry)
    first = ServiceProcess(config, llm_root=llm_root, log_path=tmp_path / "service-1.log").start()
    try:
        task_id, before = await _run_until_wait_starts(first)
    finally:
        first.kill9()

    # The worker that takes over lets its records linger as long as allowed: what it reads back
    # (the calls it marked in doubt) must not depend on when its lingering records are committed.
    lingering = _with_runner(config, journal_linger_ms=1000)
    second = ServiceProcess(lingering, llm_root=llm_root, log_path=tmp_path / "service-2.log").start()
    try:
        async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
            events = await read_stream(client, task_id, timeout=90)
            task = (await client.get(f"/v1/tasks/{task_id}")).json()
    finally:
        second.stop()

    assert task["status"] == "completed", task
    assert [s["status"] for s in task["plan"]["steps"]] == ["completed"] * 4
    ids = [e["sse_id"] for e in events]
    assert ids == list(range(1, len(ids) + 1)), "SSE sequence has a gap or a duplicate"
    assert [(e["sse_id"], e["sse_event"]) for e in events[: len(before)]] == [
        (e["sse_id"], e["sse_event"]) for e in before
    ]  # what clients saw before the crash is exactly what the log still says
    types = [e["sse_event"] for e in events]
    assert "task_resumed" in types and types[-1] == "task_completed"
    in_doubt = [e for e in events if e["sse_event"] == "tool_call_in_doubt"]
    assert [(e["data"]["tool"], e["data"]["safe_to_repeat"]) for e in in_doubt] == [("example.wait", True)]
    calls = _call_record(log)
    assert calls["add"] == ["start", "end"]  # completed steps never ran again
    assert calls["write_note"] == ["start", "end"]
    assert calls["wait"][0] == "start" and calls["wait"].count("start") == 2  # in doubt, read-only: repeated
    assert calls["echo"] == ["start", "end"]


async def test_an_in_doubt_call_to_a_tool_not_safe_to_repeat_pauses_for_an_operator(
    tmp_path: Path, llm_root: str
) -> None:
    log = tmp_path / "calls.jsonl"
    override = "    tools:\n      wait: {idempotent: false}\n"
    registry = write_registry(tmp_path, call_log=log, extra=override)
    config = write_config(tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", registry=registry)
    first = ServiceProcess(config, llm_root=llm_root, log_path=tmp_path / "service-1.log").start()
    try:
        task_id, _ = await _run_until_wait_starts(first)
    finally:
        first.kill9()

    second = ServiceProcess(config, llm_root=llm_root, log_path=tmp_path / "service-2.log").start()
    try:
        async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
            await read_stream(client, task_id, until="needs_attention", timeout=60)
            task = (await client.get(f"/v1/tasks/{task_id}")).json()
            assert task["status"] == "needs_attention"
            [pending] = task["needs_attention"]
            assert pending["tool"] == "example.wait"
            response = await client.post(
                f"/v1/tasks/{task_id}/resolve",
                json={"tool_call_id": pending["tool_call_id"], "action": "skip", "result": "waited (operator)"},
            )
            assert response.status_code == 200, response.text
            events = await read_stream(client, task_id, timeout=60)
            task = (await client.get(f"/v1/tasks/{task_id}")).json()
    finally:
        second.stop()
    assert task["status"] == "completed"
    assert events[-1]["sse_event"] == "task_completed"
    assert _call_record(log)["wait"].count("start") == 1  # never silently repeated
