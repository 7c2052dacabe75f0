"""A retry's wait is durable: ``kill -9`` of the service while a failed step waits for its next
attempt, restart, and the attempts go on counting (not from one again), the wait is kept, and no
completed call is made twice.

Real service processes on 127.0.0.1 (SQLite), the real OpenAI SDK talking to the scripted model on
loopback, and the example MCP server over stdio whose own call record proves what ran.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_runtime.testing import ScriptedModel, ToolCalls, serve_on_loopback
from tests.support.harness import read_stream, write_registry
from tests.support.process import ServiceProcess, write_config

pytestmark = pytest.mark.e2e

BACKOFF = 4.0
PLAN = {
    "summary": "echo (retried), then add",
    "steps": [
        {"id": "s1", "title": "echo", "instruction": "echo", "tools": ["example.echo"], "depends_on": [],
         "on_failure": {"action": "retry", "attempts": 3, "backoff_seconds": BACKOFF}},
        {"id": "s2", "title": "add", "instruction": "add", "tools": ["example.add"], "depends_on": ["s1"]},
    ],
}  # fmt: skip
"""While s1 waits for its second attempt every step is ``pending``: the takeover must still find it."""


def _model() -> ScriptedModel:
    attempts: list[int] = []

    def calls(_conversation: str, step: str) -> ToolCalls:
        if step == "s2":
            return [("example.add", {"a": 2, "b": 3})]
        attempts.append(1)
        n = len(attempts)  # attempts 1 and 2 ask for three calls, over the limit of two: they fail
        return [("example.echo", {"text": f"attempt {n}"})] * (3 if n < 3 else 1)

    return ScriptedModel(PLAN, calls)


def _started(log: Path) -> list[tuple[str, dict[str, Any]]]:
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return [(e["tool"], e["arguments"]) for e in entries if e["event"] == "start"]


async def test_a_retry_wait_survives_kill_9_and_the_attempts_keep_counting(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    config = write_config(
        tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        registry=write_registry(tmp_path, call_log=log),
        limits={"max_tool_calls_per_step": 2},
    )
    with serve_on_loopback(_model().fake()) as llm_root:
        first = ServiceProcess(config, llm_root=llm_root, log_path=tmp_path / "service-1.log").start()
        try:
            async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
                task_id = (await client.post("/v1/tasks", json={"prompt": "add, echo"})).json()["id"]
                await read_stream(client, task_id, until="approval_required")
                assert (await client.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": 1})).status_code == 202
                before = await read_stream(client, task_id, until="step_retrying", timeout=60)
        finally:
            first.kill9()

        second = ServiceProcess(config, llm_root=llm_root, log_path=tmp_path / "service-2.log").start()
        try:
            async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
                after = await read_stream(client, task_id, after=before[-1]["sse_id"], timeout=90)
                task = (await client.get(f"/v1/tasks/{task_id}")).json()
        finally:
            second.stop()

    events = before + after
    retrying = [e for e in events if e["sse_event"] == "step_retrying"]
    assert [(e["data"]["attempt"], e["data"]["attempts"]) for e in retrying] == [(1, 3), (2, 3)]
    assert "task_resumed" in [e["sse_event"] for e in after]
    # The second attempt started no earlier than the first failure said it would.
    retry_at = datetime.fromisoformat(retrying[0]["data"]["retry_at"])
    s1_starts = [e for e in events if e["sse_event"] == "step_started" and e["data"]["step_id"] == "s1"]
    assert len(s1_starts) == 3
    assert datetime.fromisoformat(s1_starts[1]["created_at"]) >= retry_at
    assert events[-1]["sse_event"] == "task_completed" and task["status"] == "completed"
    assert _started(log) == [
        *[("echo", {"text": "attempt 1"})] * 2,
        *[("echo", {"text": "attempt 2"})] * 2,
        ("echo", {"text": "attempt 3"}),
        ("add", {"a": 2, "b": 3}),
    ]
