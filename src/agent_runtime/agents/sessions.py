"""The summary of a session's earlier tasks that the planner and the executor see.

One line per earlier task (its request, its plan's summary, its status and result), oldest first,
bounded by a token budget estimated at four characters a token: the newest tasks are kept, older
ones dropped first. Pure text work, no I/O (``services/sessions.py`` reads the tasks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

CHARS_PER_TOKEN = 4
_REQUEST, _PLAN, _RESULT = 500, 300, 500


@dataclass(frozen=True, slots=True)
class EarlierTask:
    task_id: str
    status: str
    request: str
    plan_summary: str | None
    result: str | None
    """The result's summary, or the error's message."""


def estimate_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def entry(task: EarlierTask) -> str:
    line = f"- {task.task_id} ({task.status}): request: {_clip(task.request, _REQUEST)}"
    if task.plan_summary:
        line += f" | plan: {_clip(task.plan_summary, _PLAN)}"
    if task.result:
        line += f" | result: {_clip(task.result, _RESULT)}"
    return line


def summarize(earlier: Sequence[EarlierTask], max_tokens: int) -> str | None:
    """``earlier`` (newest first) as lines, oldest first, within ``max_tokens``; None when none fits."""
    lines: list[str] = []
    used = 0
    for task in earlier:
        line = entry(task)
        cost = estimate_tokens(line + "\n")
        if used + cost > max_tokens:
            break
        lines.append(line)
        used += cost
    return "\n".join(reversed(lines)) or None
