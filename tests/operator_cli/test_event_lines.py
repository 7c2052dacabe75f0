"""The operator's one line per event names what a failure policy did."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agent_runtime.client import EventOut
from agent_runtime.operator_cli.events import describe


def _line(kind: str, **data: Any) -> str:
    return describe(EventOut(task_id="task_" + "b" * 24, seq=7, type=kind, data=data, created_at=datetime.now(UTC)))


def test_failure_policy_events_read_as_what_happened_to_the_step() -> None:
    error = {"code": "step_limit_exceeded", "message": "step s1 exceeded 2 tool calls"}
    retrying = _line("step_retrying", step_id="s1", attempt=1, attempts=3, error=error, retry_at="2026-12-05T12:00:02Z")
    assert retrying == (
        "s1 attempt 1 of 3 failed, again at 2026-12-05T12:00:02Z: step_limit_exceeded: step s1 exceeded 2 tool calls"
    )
    assert _line("step_skipped", step_id="s1", error=error, attempts=1).startswith("s1 skipped: step_limit_exceeded")
    replan = _line("replan_requested", step_id="s2", error=error, attempts=1, replan=1, max_replans=2)
    assert replan.startswith("s2 failed, replan 1 of 2: step_limit_exceeded")
    assert _line("verification_completed", met=False, reason="no total") == "NOT met: no total"
