"""A task that fails ends ``watch`` and ``--wait`` with exit code 1; ``approve`` binds the plan's
content hash (``--hash``, or the current plan's when no ``--version`` is given)."""

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
PROMPT = "Write a note named hello saying hi, then read the note hello back."


def _calls(_conversation: str, step: str) -> ToolCalls:
    if step == "s1":
        return [("example.add", {"a": 1, "b": 2})]
    return [("example.echo", {"text": "again"})] * 3  # over the step's limit of 2: the step fails


async def test_a_task_that_fails_exits_1_from_watch_and_from_retry_wait(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, limits={"max_tool_calls_per_step": 2})
    async with live_service(settings, openai_overrides(ScriptedModel(PLAN, _calls).fake())) as live:
        cli = CLI(live.url)
        waited = await cli("tasks", "submit", "add, then echo", "--wait", "--json")
        assert waited.code == 4 and waited.json()["status"] == "awaiting_approval"
        task_id = waited.json()["id"]
        approved = await cli("tasks", "approve", task_id)
        assert approved.code == 0, approved.err

        watched = await cli("tasks", "watch", task_id)
        assert watched.code == 1, watched.err
        assert "step_failed s2" in watched.out and "task_failed" in watched.out.splitlines()[-1]
        as_json = await cli("tasks", "watch", task_id, "--json")
        assert as_json.code == 1 and as_json.json_lines()[-1]["type"] == "task_failed"
        shown = await cli("tasks", "show", task_id, "--json")
        assert shown.code == 0 and shown.json()["status"] == "failed"

        again = await cli("tasks", "retry", task_id, "--wait", "--json")  # still over the limit: fails again
        assert again.code == 1, again.err
        assert again.json()["status"] == "failed"


async def test_approve_binds_the_content_hash_and_a_stale_one_is_refused_with_409(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        cli = CLI(live.url)
        waited = await cli("tasks", "submit", PROMPT, "--wait")
        task_id = waited.out.split()[0]
        v1_hash = (await live.task(task_id))["plan"]["content_hash"]
        assert f"tasks approve {task_id} --version 1 --hash {v1_hash}" in waited.err

        wrong = await cli("tasks", "approve", task_id, "--version", "1", "--hash", "sha256:" + "0" * 64, "--json")
        assert wrong.code == 1
        error = wrong.json()["error"]
        assert error["code"] == "content_hash_mismatch" and error["details"]["content_hash"] == v1_hash

        # The plan changes after it was reviewed: approving "the current plan" with the hash seen
        # before binds the new version to the old hash, and the service refuses.
        revised = await cli("tasks", "revise", task_id, "Also add 2 and 3.", "--wait", "--json")
        assert revised.code == 4 and revised.json()["plan"]["version"] == 2
        v2_hash = revised.json()["plan"]["content_hash"]
        assert v2_hash != v1_hash
        stale = await cli("tasks", "approve", task_id, "--hash", v1_hash)
        assert stale.code == 1
        assert f"content_hash_mismatch: plan version 2 has content hash {v2_hash}, not {v1_hash}" in stale.err
        assert (await live.task(task_id))["status"] == "awaiting_approval"

        approved = await cli("tasks", "approve", task_id)  # no --version: v2 and its hash, as read and shown
        assert approved.code == 0, approved.err
        assert f"approving plan v2 ({v2_hash}) of {task_id}" in approved.out
        trail = (await live.client.get(f"/v1/tasks/{task_id}/approvals")).json()
        assert [(a["decision"], a["content_hash"]) for a in trail if a["decision"] == "approved"] == [
            ("approved", v2_hash)
        ]
