"""``agent-runtime tasks retry TASK`` against the real service: a failed task runs again to the end."""

from __future__ import annotations

from pathlib import Path

from agent_runtime.testing import ScriptedModel, ToolCalls, openai_overrides
from tests.operator_cli.cli_runner import CLI
from tests.support.harness import live_service, make_settings

PLAN = {
    "summary": "add, then echo",
    "steps": [
        {"id": "s1", "title": "add", "instruction": "add", "tools": ["example.add"], "depends_on": []},
        {"id": "s2", "title": "echo", "instruction": "echo", "tools": ["example.echo"], "depends_on": ["s1"]},
    ],
}


async def test_tasks_retry_runs_a_failed_task_again_and_waits_for_it(tmp_path: Path) -> None:
    broken = True

    def calls(_conversation: str, step: str) -> ToolCalls:
        if step == "s1":
            return [("example.add", {"a": 1, "b": 2})]
        return [("example.echo", {"text": "again"})] * (3 if broken else 1)  # 3: over the limit of 2

    settings = make_settings(tmp_path, limits={"max_tool_calls_per_step": 2})
    async with live_service(settings, openai_overrides(ScriptedModel(PLAN, calls).fake())) as live:
        cli = CLI(live.url)
        task_id = (await live.submit("add, then echo"))["id"]
        await live.wait_for(task_id, "approval_required")
        early = await cli("tasks", "retry", task_id)
        assert early.code == 1 and "invalid_state: cannot retry: task is awaiting_approval" in early.err
        assert (await live.approve(task_id, 1)).status_code == 202
        await live.wait_for(task_id, "task_failed")

        broken = False
        retried = await cli("tasks", "retry", task_id, "--wait", "--json")
        assert retried.code == 0, retried.err
        task = retried.json()
        assert task["status"] == "completed"
        assert [s["status"] for s in task["plan"]["steps"]] == ["completed", "completed"]

        plain = await cli("tasks", "retry", task_id)
        assert plain.code == 1 and "cannot retry: task is completed, not failed" in plain.err
