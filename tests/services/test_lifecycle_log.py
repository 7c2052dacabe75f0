"""Operators can follow a task from the service log alone: one info line per lifecycle change,
with ``task_id``, and never the prompt, the tool's arguments or results; and an access log that
is off by default and, when on, writes one line per request."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

from tests.support.harness import live_service, make_settings, read_stream, write_registry
from tests.support.scripted import ScriptedModel, one_step_plan, openai_overrides

PROMPT = "please echo the launch code 7-alpha"
SECRETISH = "tool-argument-7-alpha"


def _lines(logs: list[MutableMapping[str, Any]], task_id: str) -> list[tuple[str, str]]:
    return [(e["event"], e["log_level"]) for e in logs if e.get("task_id") == task_id and "seq" in e]


async def test_every_lifecycle_change_of_a_task_is_one_info_line_with_its_task_id(tmp_path: Path) -> None:
    model = ScriptedModel(one_step_plan("example.echo"), {"s1": [("example.echo", {"text": SECRETISH})]})
    settings = make_settings(tmp_path, registry=write_registry(tmp_path))
    with structlog.testing.capture_logs() as logs:
        async with live_service(settings, openai_overrides(model.fake())) as live:
            task_id = (await live.submit(PROMPT))["id"]
            await live.wait_for(task_id, "approval_required")
            await live.approve(task_id, 1)
            await read_stream(live.client, task_id)
            other = (await live.submit(PROMPT))["id"]
            await live.wait_for(other, "approval_required")
            assert (await live.client.post(f"/v1/tasks/{other}/cancel", json={})).status_code == 200
    assert _lines(logs, task_id) == [
        ("task_submitted", "info"),
        ("task_planning", "info"),
        ("task_planned", "info"),
        ("task_awaiting_approval", "info"),
        ("task_approved", "info"),
        ("execution_started", "info"),
        ("step_finished", "info"),
        ("task_completed", "info"),
    ]
    approved = next(e for e in logs if e["event"] == "task_approved" and e["task_id"] == task_id)
    assert approved["plan_version"] == 1 and approved["approvers"] == [approved["actor"]]
    step = next(e for e in logs if e["event"] == "step_finished" and e["task_id"] == task_id)
    assert step["step_id"] == "s1" and step["status"] == "completed"
    assert _lines(logs, other)[-1] == ("task_cancelled", "info")
    cancelled = next(e for e in logs if e["event"] == "task_cancelled")
    assert cancelled["previous_status"] == "awaiting_approval"
    text = repr(logs)
    assert "7-alpha" not in text  # neither the prompt nor the tool's argument or result


async def test_the_access_log_is_off_by_default_and_one_line_per_request_when_on(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        async with live_service(make_settings(tmp_path)) as live:
            assert (await live.client.get("/v1/tasks")).status_code == 200
    assert not [e for e in logs if e["event"] == "http_request"]

    settings = make_settings(tmp_path, server={"access_log": True})
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with live_service(settings) as live:
            listed = await live.client.get("/v1/tasks?limit=5", headers={"x-request-id": "req-access-1"})
            missing = await live.client.get("/v1/tasks/task_000000000000000000000000")
    assert listed.status_code == 200 and missing.status_code == 404
    lines = [e for e in logs if e["event"] == "http_request"]
    assert [(e["method"], e["path"], e["status"], e["log_level"]) for e in lines] == [
        ("GET", "/v1/tasks", 200, "info"),
        ("GET", "/v1/tasks/task_000000000000000000000000", 404, "info"),
    ]
    assert lines[0]["request_id"] == "req-access-1"
    assert lines[1]["request_id"] == missing.headers["x-request-id"]
    assert all(isinstance(e["duration_ms"], float) and e["duration_ms"] >= 0 for e in lines)
