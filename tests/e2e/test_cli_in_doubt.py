"""The operator CLI on a call left in doubt by a killed worker: ``watch`` stops at it (exit 4),
``resolve`` decides it, and ``watch`` follows the task to completion (exit 0).

Real service processes on 127.0.0.1, the real OpenAI SDK against the fake LLM on loopback, the example
MCP server over stdio, and the ``agent-runtime`` command as its own process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_runtime.client import AsyncClient
from agent_runtime.testing import ScriptedModel, serve_on_loopback
from tests.support.harness import write_registry
from tests.support.process import AGENT_RUNTIME, ServiceProcess, write_config

pytestmark = pytest.mark.e2e

PLAN = {
    "summary": "write, then wait",
    "steps": [
        {"id": "s1", "title": "note", "instruction": "note", "tools": ["example.write_note"], "depends_on": []},
        {"id": "s2", "title": "wait", "instruction": "wait", "tools": ["example.wait"], "depends_on": ["s1"]},
    ],
}
CALLS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "s1": [("example.write_note", {"name": "n1", "text": "hello"})],
    "s2": [("example.wait", {"seconds": 4, "steps": 4})],
}


@pytest.fixture
def llm_root() -> Iterator[str]:
    with serve_on_loopback(ScriptedModel(PLAN, CALLS).fake()) as root:
        yield root


async def _cli(server: str, *argv: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_RUNTIME_")}
    with anyio.fail_after(90):
        done = await anyio.run_process([str(AGENT_RUNTIME), *argv, "--server", server], env=env, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_watch_stops_at_an_in_doubt_call_and_resolve_skip_lets_the_task_complete(
    tmp_path: Path, llm_root: str
) -> None:
    override = "    tools:\n      wait: {idempotent: false}\n"
    registry = write_registry(tmp_path, extra=override)
    config = write_config(tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", registry=registry)
    first = ServiceProcess(config, llm_root=llm_root, log_path=tmp_path / "service-1.log").start()
    try:
        async with AsyncClient(first.url) as client:
            task = await client.wait((await client.submit("write, then wait")).id, timeout=60)
            await client.approve(task.id, 1)
            with anyio.fail_after(60):
                async for event in client.events(task.id):
                    if event.type == "tool_progress":
                        break  # example.wait is running
    finally:
        first.kill9()

    second = ServiceProcess(config, llm_root=llm_root, log_path=tmp_path / "service-2.log").start()
    try:
        code, out, err = await _cli(second.url, "tasks", "watch", task.id)
        assert code == 4, err
        assert "needs_attention" in out.splitlines()[-1] and "example.wait" in out.splitlines()[-1]
        assert f"agent-runtime tasks resolve {task.id}" in err

        code, out, err = await _cli(
            second.url, "tasks", "resolve", task.id, "--action", "skip", "--result", "waited (operator)"
        )
        assert code == 0, err
        assert "resolved (skip)" in out

        code, out, err = await _cli(second.url, "tasks", "watch", task.id, "--json", "--after", "1")
        assert code == 0, err
        events = [json.loads(line) for line in out.splitlines()]
        assert events[0]["seq"] == 2 and events[-1]["type"] == "task_completed"
        assert "attention_resolved" in [e["type"] for e in events]
    finally:
        second.stop()
