"""Attempts read back from recorded events: what a worker taking over a task starts from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agent_runtime.agents.failure import prior_attempts
from agent_runtime.domain.events import Event
from agent_runtime.errors import ErrorCode

AT = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _event(seq: int, kind: str, **data: Any) -> Event:
    return Event(task_id="task_" + "a" * 24, seq=seq, type=kind, data=data, created_at=AT)


def _retrying(seq: int, step: str, attempt: int) -> Event:
    return _event(seq, "step_retrying", step_id=step, attempt=attempt, attempts=3,
                  error={"code": "llm_error", "message": "m"}, retry_at=f"2026-12-05T12:00:0{attempt}Z")  # fmt: skip


def test_the_last_recorded_attempt_of_each_step_and_its_retry_time_are_read_back() -> None:
    found = prior_attempts([_retrying(1, "s1", 1), _retrying(2, "s2", 1), _retrying(3, "s1", 2)], {})

    assert (found["s1"].failed, found["s1"].retry_at) == (2, datetime(2026, 12, 5, 12, 0, 2, tzinfo=UTC))
    assert found["s2"].failed == 1 and found["s2"].pending_error is None


def test_an_operator_retry_or_a_replan_starts_the_count_again() -> None:
    events = [_retrying(1, "s1", 2), _event(2, "task_retried", plan_version=1, steps=["s1"], actor=None)]
    assert prior_attempts(events, {}) == {}
    events = [_retrying(1, "s1", 1), _event(2, "replan_requested", step_id="s1"), _retrying(3, "s2", 1)]
    assert set(prior_attempts(events, {})) == {"s2"}


def test_a_failure_recorded_before_the_policy_acted_is_acted_on_with_its_error() -> None:
    failed = {"s1": {"code": "step_limit_exceeded", "message": "step s1 exceeded 2 tool calls"}}
    found = prior_attempts([_retrying(1, "s1", 1)], failed)["s1"]

    assert found.failed == 1 and found.retry_at is None
    assert found.pending_error is not None
    assert (found.pending_error.code, found.pending_error.message) == (
        ErrorCode.STEP_LIMIT_EXCEEDED, "step s1 exceeded 2 tool calls"
    )  # fmt: skip
