"""kill -9 while two steps run in parallel: the takeover resumes both from their own recorded calls.

Real service processes on 127.0.0.1 (SQLite), the real OpenAI SDK talking to the fake LLM server on
loopback, and the example MCP server over stdio whose own call log proves what ran and how often.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_runtime.testing import ScriptedModel, ToolCalls, serve_on_loopback
from tests.support.harness import read_stream, write_registry
from tests.support.process import ServiceProcess, write_config

pytestmark = pytest.mark.e2e

PLAN = {
    "summary": "two branches, then a note",
    "steps": [
        {
            "id": "a",
            "title": "add, wait",
            "instruction": "a",
            "tools": ["example.add", "example.wait"],
            "depends_on": [],
        },
        {
            "id": "b",
            "title": "echo, wait",
            "instruction": "b",
            "tools": ["example.echo", "example.wait"],
            "depends_on": [],
        },
        {"id": "c", "title": "note", "instruction": "c", "tools": ["example.write_note"], "depends_on": ["a", "b"]},
    ],
}
# Each branch completes one call, then starts a long wait: the kill lands while both waits run.
CALLS: dict[str, ToolCalls] = {
    "a": [("example.add", {"a": 2, "b": 3}), ("example.wait", {"seconds": 4, "steps": 8})],
    "b": [("example.echo", {"text": "b"}), ("example.wait", {"seconds": 4, "steps": 8})],
    "c": [("example.write_note", {"name": "joined", "text": "both done"})],
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


async def _run_until_both_waits_report_progress(service: ServiceProcess) -> tuple[str, list[dict[str, Any]]]:
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        created = (await client.post("/v1/tasks", json={"prompt": "two branches"})).json()
        await read_stream(client, created["id"], until="approval_required")
        assert (await client.post(f"/v1/tasks/{created['id']}/approve", json={"plan_version": 1})).status_code == 202
        seen: list[dict[str, Any]] = []
        waiting: set[str] = set()
        while waiting != {"a", "b"}:
            after = seen[-1]["sse_id"] if seen else None
            batch = await read_stream(client, created["id"], after=after, until="tool_progress", timeout=60)
            seen.extend(batch)
            waiting |= {e["data"]["step_id"] for e in batch if e["sse_event"] == "tool_progress"}
        return created["id"], seen


async def test_kill_9_during_parallel_steps_resumes_both_without_repeating_a_completed_call(
    tmp_path: Path, llm_root: str
) -> None:
    log = tmp_path / "calls.jsonl"
    registry = write_registry(tmp_path, call_log=log)
    config = write_config(
        tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        registry=registry,
        limits={"max_parallel_steps": 4},
    )
    first = ServiceProcess(config, llm_root=llm_root, log_path=tmp_path / "service-1.log").start()
    try:
        task_id, before = await _run_until_both_waits_report_progress(first)
    finally:
        first.kill9()

    second = ServiceProcess(config, llm_root=llm_root, log_path=tmp_path / "service-2.log").start()
    try:
        async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
            events = await read_stream(client, task_id, timeout=90)
            task = (await client.get(f"/v1/tasks/{task_id}")).json()
    finally:
        second.stop()

    assert task["status"] == "completed", task
    assert [s["status"] for s in task["plan"]["steps"]] == ["completed"] * 3
    ids = [e["sse_id"] for e in events]
    assert ids == list(range(1, len(ids) + 1)), "SSE sequence has a gap or a duplicate"
    assert [(e["sse_id"], e["sse_event"]) for e in events[: len(before)]] == [
        (e["sse_id"], e["sse_event"]) for e in before
    ]
    after_crash = events[len(before) :]
    resumed = sorted(e["data"]["step_id"] for e in after_crash if e["sse_event"] == "step_started")
    assert resumed == ["a", "b", "c"]
    assert all(
        e["data"]["resumed"] for e in after_crash if e["sse_event"] == "step_started" and e["data"]["step_id"] != "c"
    )
    in_doubt = sorted(
        (e["data"]["step_id"], e["data"]["tool"]) for e in events if e["sse_event"] == "tool_call_in_doubt"
    )
    assert in_doubt == [("a", "example.wait"), ("b", "example.wait")]  # read-only: repeated
    calls = _call_record(log)
    assert calls["add"] == ["start", "end"]  # completed before the crash: never again
    assert calls["echo"] == ["start", "end"]
    assert calls["wait"].count("start") == 4  # two in flight at the kill, each repeated once
    assert calls["write_note"] == ["start", "end"]
