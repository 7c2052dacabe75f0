"""One line per event, for people: what ``watch`` prints (and the live view's log)."""

from __future__ import annotations

import json
from typing import Any

from agent_runtime.client import EventOut
from agent_runtime.operator_cli.views import excerpt, short_hash

STYLE = {
    "task_completed": "bold green",
    "task_failed": "bold red",
    "task_rejected": "bold red",
    "task_cancelled": "bold yellow",
    "approval_required": "bold magenta",
    "needs_attention": "bold magenta",
    "tool_call_in_doubt": "magenta",
    "step_failed": "red",
    "tool_call_failed": "red",
    "tool_call_refused": "red",
    "plan_invalid": "yellow",
    "step_started": "cyan",
    "step_completed": "green",
    "tool_call_started": "blue",
    "step_retrying": "yellow",
    "step_skipped": "yellow",
    "replan_requested": "bold yellow",
}

QUIET = frozenset({"text_delta"})
"""Not a line of their own in plain output (the step's output comes with ``step_completed``)."""


def _args(arguments: Any) -> str:
    return excerpt(json.dumps(arguments, ensure_ascii=False, separators=(",", ":")), 80)


def _error(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('code', 'error')}: {excerpt(str(error.get('message', '')), 160)}"
    return excerpt(str(error), 160)


def describe(event: EventOut) -> str:
    d = event.data
    match event.type:
        case "task_created":
            return str(d.get("status", ""))
        case "planning_started":
            return "revision" if d.get("revision") else ""
        case "plan_proposed":
            steps = len(d.get("plan", {}).get("steps", []))
            version = f"v{d.get('plan_version')} {short_hash(str(d.get('content_hash', '')))}"
            return f"{version} by {d.get('author')}, {steps} steps"
        case "plan_invalid":
            return excerpt("; ".join(map(str, d.get("problems", []))), 200)
        case "approval_required":
            return f"plan v{d.get('plan_version')} waits for approval"
        case "plan_edited":
            return f"v{d.get('plan_version')} (from v{d.get('based_on')}) by {d.get('actor') or '-'}"
        case "revision_requested":
            return f"v{d.get('plan_version')}: {excerpt(str(d.get('feedback', '')), 120)}"
        case "task_approved":
            return f"v{d.get('plan_version')} by {d.get('actor') or '-'}"
        case "task_rejected" | "task_cancelled":
            return excerpt(str(d.get("reason") or ""), 160)
        case "execution_started":
            return f"v{d.get('plan_version')} {short_hash(str(d.get('content_hash', '')))}"
        case "task_resumed":
            return f"{d.get('phase')} on {d.get('worker')}"
        case "step_started":
            return f"{d.get('step_id')}{' (resumed)' if d.get('resumed') else ''}"
        case "text_delta":
            return f"{d.get('step_id')}: {excerpt(str(d.get('text', '')), 120)}"
        case "tool_call_started":
            retry = " (retry)" if d.get("retry") else ""
            return f"{d.get('step_id')} {d.get('tool')}({_args(d.get('arguments'))}){retry}"
        case "tool_progress":
            total = d.get("total")
            progress = f"{d.get('progress')}{f'/{total}' if total else ''}"
            return f"{d.get('call_id')} {progress} {d.get('message') or ''}".rstrip()
        case "tool_call_completed":
            mark = "error: " if d.get("is_error") else "→ "
            took = d.get("duration_ms")
            took_text = f" ({took:.0f} ms)" if isinstance(took, int | float) else ""
            return f"{d.get('step_id')} {d.get('tool')} {mark}{excerpt(str(d.get('result', '')), 100)}{took_text}"
        case "tool_call_failed":
            return f"{d.get('step_id')} {d.get('tool')} {d.get('code')}: {excerpt(str(d.get('error', '')), 120)}"
        case "tool_call_refused":
            return f"{d.get('step_id')} {d.get('tool')}: {excerpt(str(d.get('reason', '')), 120)}"
        case "tool_call_in_doubt":
            return f"{d.get('call_id')} {d.get('tool')} in {d.get('step_id')}"
        case "needs_attention":
            return f"{d.get('tool_call_id')} {d.get('tool')}: resolve with retry, skip or fail"
        case "call_approval_required":
            return f"{d.get('call_id')} {d.get('tool')} {d.get('arguments')}: waits at policy rule {d.get('rule')}"
        case "call_decided":
            return f"{d.get('call_id')} {d.get('decision')} by {d.get('actor')}: {d.get('tool')} {d.get('arguments')}"
        case "approval_expired":
            return f"{d.get('kind')} approval expired: {d.get('action')} (rule {d.get('rule')})"
        case "budget_exceeded":
            return f"{d.get('limit')} budget spent: {d.get('spent')}"
        case "task_retried":
            return f"version {d.get('plan_version')} by {d.get('actor')}: runs again {', '.join(d.get('steps') or [])}"
        case "attention_resolved":
            return f"{d.get('tool_call_id', '')} {d.get('action', '')}".strip()
        case "step_completed":
            return f"{d.get('step_id')}: {excerpt(str(d.get('output', '')), 120)}"
        case "step_failed":
            return f"{d.get('step_id')}: {_error(d.get('error'))}"
        case "task_completed":
            return excerpt(str(d.get("summary", "")), 200)
        case "task_failed":
            return _error(d.get("error"))
        case "step_retrying":
            attempt = f"attempt {d.get('attempt')} of {d.get('attempts')} failed"
            return f"{d.get('step_id')} {attempt}, again at {d.get('retry_at')}: {_error(d.get('error'))}"
        case "step_skipped":
            return f"{d.get('step_id')} skipped: {_error(d.get('error'))}"
        case "replan_requested":
            replan = f"replan {d.get('replan')} of {d.get('max_replans')}"
            return f"{d.get('step_id')} failed, {replan}: {_error(d.get('error'))}"
        case "verification_completed":
            return f"{'met' if d.get('met') else 'NOT met'}: {excerpt(str(d.get('reason', '')), 160)}"
    return excerpt(json.dumps(d, ensure_ascii=False), 160)
