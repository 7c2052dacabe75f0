"""The session summary: one line per earlier task, oldest first, newest kept within the token bound."""

from __future__ import annotations

from agent_runtime.agents.sessions import EarlierTask, entry, estimate_tokens, summarize


def _task(n: int, **extra: str | None) -> EarlierTask:
    values: dict[str, str | None] = {"plan_summary": f"plan {n}", "result": f"result {n}", **extra}
    return EarlierTask(f"task_{n:024x}", "completed", f"request {n}", values["plan_summary"], values["result"])


def test_the_summary_lists_earlier_tasks_oldest_first_with_request_plan_and_result() -> None:
    newest_first = [_task(3), _task(2, result=None), _task(1, plan_summary=None)]
    lines = (summarize(newest_first, 1000) or "").splitlines()
    assert lines == [
        f"- {_task(1).task_id} (completed): request: request 1 | result: result 1",
        f"- {_task(2).task_id} (completed): request: request 2 | plan: plan 2",
        f"- {_task(3).task_id} (completed): request: request 3 | plan: plan 3 | result: result 3",
    ]


def test_the_token_bound_keeps_the_newest_tasks_and_drops_older_ones_first() -> None:
    newest_first = [_task(n) for n in range(10, 0, -1)]
    one = estimate_tokens(entry(newest_first[0]) + "\n")
    kept = summarize(newest_first, 3 * one) or ""
    assert [line.split()[1] for line in kept.splitlines()] == [_task(n).task_id for n in (8, 9, 10)]
    assert estimate_tokens(kept) <= 3 * one
    assert summarize(newest_first, one - 1) is None and summarize([], 1000) is None


def test_long_fields_are_clipped_so_one_task_cannot_fill_the_budget() -> None:
    huge = EarlierTask("task_" + "0" * 24, "failed", "word " * 5000, "p" * 5000, "r " * 5000)
    line = entry(huge)
    assert len(line) < 1500 and line.count("…") == 3
