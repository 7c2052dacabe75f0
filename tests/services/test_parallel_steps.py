"""Steps whose dependencies are complete run at once (``limits.max_parallel_steps``).

Through the public API: the real service, the scripted model behind the OpenAI wire protocol and the
example MCP server over stdio, whose own call log (one line per call start and end, fsynced in the
order they happen) proves what overlapped. No wall-clock thresholds: the order of the records is the
evidence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent_runtime.testing import ScriptedModel, ToolCalls, openai_overrides
from tests.support.harness import live_service, make_settings, read_stream, write_registry

DIAMOND = {
    "summary": "two waits, then an echo",
    "steps": [
        {"id": "a", "title": "wait a", "instruction": "wait", "tools": ["example.wait"], "depends_on": []},
        {"id": "b", "title": "wait b", "instruction": "wait", "tools": ["example.wait"], "depends_on": []},
        {"id": "c", "title": "echo", "instruction": "echo", "tools": ["example.echo"], "depends_on": ["a", "b"]},
    ],
}
DIAMOND_CALLS: dict[str, ToolCalls] = {
    "a": [("example.wait", {"seconds": 1, "steps": 2})],
    "b": [("example.wait", {"seconds": 1, "steps": 3})],
    "c": [("example.echo", {"text": "after both"})],
}


def _log(path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(event, tool, arguments) per line of the example server's call log, in order."""
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return [(e["event"], e["tool"], e["arguments"]) for e in entries]


async def _run(tmp: Path, model: ScriptedModel, **limits: Any) -> tuple[list[dict[str, Any]], dict[str, Any], Path]:
    log = tmp / "calls.jsonl"
    settings = make_settings(tmp, registry=write_registry(tmp, call_log=log), limits=limits)
    async with live_service(settings, openai_overrides(model.fake())) as live:
        task_id = (await live.submit("two waits then an echo"))["id"]
        await live.wait_for(task_id, "approval_required")
        assert (await live.approve(task_id, 1)).status_code == 202
        events = await read_stream(live.client, task_id, timeout=60)
        task = await live.task(task_id)
    return events, task, log


def _index(events: list[dict[str, Any]], kind: str, step: str) -> int:
    return next(i for i, e in enumerate(events) if e["sse_event"] == kind and e["data"].get("step_id") == step)


async def test_independent_steps_overlap_and_a_dependent_step_waits_for_both(tmp_path: Path) -> None:
    events, task, log = await _run(tmp_path, ScriptedModel(DIAMOND, DIAMOND_CALLS), max_parallel_steps=4)
    assert task["status"] == "completed", task
    assert [s["status"] for s in task["plan"]["steps"]] == ["completed"] * 3
    calls = _log(log)
    # Both waits started before either ended: they ran at the same time (about 1 s, not 2).
    assert [(event, tool) for event, tool, _ in calls] == [
        ("start", "wait"),
        ("start", "wait"),
        ("end", "wait"),
        ("end", "wait"),
        ("start", "echo"),
        ("end", "echo"),
    ], calls
    assert sorted(args["steps"] for _, tool, args in calls[:2]) == [2, 3]
    # The same in the task's own events; c starts only after both a and b completed.
    assert max(_index(events, "tool_call_started", s) for s in "ab") < min(
        _index(events, "tool_call_completed", s) for s in "ab"
    )
    assert _index(events, "step_started", "c") > max(_index(events, "step_completed", s) for s in "ab")
    ids = [e["sse_id"] for e in events]
    assert ids == list(range(1, len(ids) + 1))


async def test_one_step_at_a_time_keeps_the_sequential_order(tmp_path: Path) -> None:
    events, task, log = await _run(tmp_path, ScriptedModel(DIAMOND, DIAMOND_CALLS), max_parallel_steps=1)
    assert task["status"] == "completed", task
    calls = _log(log)
    assert [(event, tool, args.get("steps")) for event, tool, args in calls] == [
        ("start", "wait", 2),
        ("end", "wait", 2),
        ("start", "wait", 3),
        ("end", "wait", 3),
        ("start", "echo", None),
        ("end", "echo", None),
    ], calls
    started = [e["data"]["step_id"] for e in events if e["sse_event"] == "step_started"]
    assert started == ["a", "b", "c"]


async def test_a_failing_step_cancels_its_running_sibling_and_fails_the_task(tmp_path: Path) -> None:
    plan = {
        "summary": "a long wait beside a step that fails",
        "steps": [
            {"id": "slow", "title": "wait", "instruction": "wait", "tools": ["example.wait"], "depends_on": []},
            {
                "id": "loop",
                "title": "loop",
                "instruction": "echo",
                "tools": ["example.wait", "example.echo"],
                "depends_on": [],
            },
            {"id": "last", "title": "last", "instruction": "echo", "tools": ["example.echo"], "depends_on": ["slow"]},
        ],
    }
    calls: dict[str, ToolCalls] = {
        "slow": [("example.wait", {"seconds": 30, "steps": 30})],
        # Over max_tool_calls_per_step (2): the step fails at its third call, once its 1 s wait is
        # over, by which time the other step's long wait is in flight.
        "loop": [
            ("example.wait", {"seconds": 1, "steps": 1}),
            ("example.echo", {"text": "x"}),
            ("example.echo", {"text": "y"}),
        ],
    }
    events, task, log = await _run(
        tmp_path, ScriptedModel(plan, calls), max_parallel_steps=4, max_tool_calls_per_step=2
    )
    types = [e["sse_event"] for e in events]
    assert task["status"] == "failed" and types[-1] == "task_failed", types
    assert task["error"]["code"] == "step_limit_exceeded"
    assert {s["id"]: s["status"] for s in task["plan"]["steps"]} == {
        "slow": "cancelled",
        "loop": "failed",
        "last": "skipped",
    }
    cancelled = [e["data"] for e in events if e["sse_event"] == "tool_call_failed"]
    assert [(c["step_id"], c["tool"], c["code"]) for c in cancelled] == [("slow", "example.wait", "cancelled")]
    stopped = [e["data"] for e in events if e["sse_event"] == "step_failed"]
    assert sorted((s["step_id"], s["error"]["code"]) for s in stopped) == [
        ("loop", "step_limit_exceeded"),
        ("slow", "cancelled"),
    ]
    # The long wait was sent once and cancelled in flight (never repeated, never completed).
    long_wait = [event for event, tool, args in _log(log) if tool == "wait" and args["seconds"] == 30]
    assert long_wait[0] == "start" and long_wait.count("start") == 1
    completed = [e["data"]["step_id"] for e in events if e["sse_event"] == "tool_call_completed"]
    assert "slow" not in completed


GATE_POLICY = """
call_rules:
  - id: notes-gate
    match: {name: [example.write_note]}
    decision: require_call_approval
"""


async def test_a_step_at_a_call_gate_pauses_the_task_once_its_sibling_recorded_its_call(tmp_path: Path) -> None:
    plan = {
        "summary": "a long wait beside a gated note",
        "steps": [
            {"id": "slow", "title": "wait", "instruction": "wait", "tools": ["example.wait"], "depends_on": []},
            {
                "id": "note",
                "title": "note",
                "instruction": "wait, then write",
                "tools": ["example.wait", "example.write_note"],
                "depends_on": [],
            },
        ],
    }
    calls: dict[str, ToolCalls] = {
        "slow": [("example.wait", {"seconds": 3, "steps": 3})],
        # The gate stops the second call, a second in: by then the other step's wait is in flight.
        "note": [("example.wait", {"seconds": 1, "steps": 1}), ("example.write_note", {"name": "n", "text": "t"})],
    }
    log = tmp_path / "calls.jsonl"
    policy = tmp_path / "policy.yaml"
    policy.write_text(GATE_POLICY)
    settings = make_settings(tmp_path, registry=write_registry(tmp_path, call_log=log), policy={"path": str(policy)})
    async with live_service(settings, openai_overrides(ScriptedModel(plan, calls).fake())) as live:
        task_id = (await live.submit("wait and write"))["id"]
        await live.wait_for(task_id, "approval_required")
        assert (await live.approve(task_id, 1)).status_code == 202
        paused = await live.wait_for(task_id, "call_approval_required", timeout=60)
        at_gate = await live.task(task_id)
        gate = paused[-1]["data"]
        decided = await live.client.post(
            f"/v1/tasks/{task_id}/calls/{gate['call_id']}/decision", json={"decision": "approve"}
        )
        assert decided.status_code == 200, decided.text
        events = await read_stream(live.client, task_id, timeout=60)
        task = await live.task(task_id)

    assert at_gate["status"] == "needs_attention"
    # The sibling's call was sent before the gate: it finished and was recorded before the pause.
    slow_done = [e for e in paused if e["sse_event"] == "tool_call_completed" and e["data"]["step_id"] == "slow"]
    assert len(slow_done) == 1 and slow_done[0]["data"]["tool"] == "example.wait"
    assert task["status"] == "completed", task
    assert [s["status"] for s in task["plan"]["steps"]] == ["completed", "completed"]
    resumed = {e["data"]["step_id"] for e in events[len(paused) :] if e["sse_event"] == "step_started"}
    assert resumed == {"slow", "note"}
    started = [(tool, args.get("seconds")) for event, tool, args in _log(log) if event == "start"]
    # Nothing ran twice: each wait once, the note once (after its approval).
    assert sorted(started, key=str) == sorted([("wait", 3), ("wait", 1), ("write_note", None)], key=str)
    assert started[-1] == ("write_note", None)
