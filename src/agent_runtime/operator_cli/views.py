"""Text views of tasks, plans and inbox items (the JSON view is the API's own model)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent_runtime.client import InboxItemOut, InboxPage, SessionPage, TaskOut, TaskPage
from agent_runtime.operator_cli.output import Output

STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "rejected": "red",
    "cancelled": "yellow",
    "awaiting_approval": "bold magenta",
    "needs_attention": "bold magenta",
    "executing": "cyan",
    "planning": "cyan",
}

STEP_MARK = {"pending": "·", "running": "▶", "completed": "✓", "failed": "✗", "skipped": "-", "cancelled": "-"}


def when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def short_hash(content_hash: str) -> str:
    algorithm, _, digest = content_hash.partition(":")
    return f"{algorithm}:{digest[:12]}" if digest else content_hash[:19]


def excerpt(text: str, limit: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def status(task: TaskOut) -> tuple[str, str]:
    return task.status, STATUS_STYLE.get(task.status, "")


def task_line(out: Output, task: TaskOut, verb: str) -> None:
    """``task_… approved: status approved, plan v1 (sha256:53a2320ad37c)``."""
    plan = f", plan v{task.plan.version} ({short_hash(task.plan.content_hash)})" if task.plan else ""
    out.line((task.id, "bold"), f" {verb}: status ", status(task), plan)


def show_task(out: Output, task: TaskOut) -> None:
    out.line(("task      ", "dim"), (task.id, "bold"))
    out.line(("status    ", "dim"), status(task))
    out.line(("created   ", "dim"), when(task.created_at), ("   updated ", "dim"), when(task.updated_at))
    out.line(("prompt    ", "dim"), excerpt(task.prompt, 300))
    if task.metadata:
        out.line(("metadata  ", "dim"), ", ".join(f"{k}={v}" for k, v in task.metadata.items()))
    if task.plan is not None:
        plan = task.plan
        approved = f"   approved v{task.approved_plan_version}" if task.approved_plan_version else ""
        out.line(
            ("plan      ", "dim"),
            (f"v{plan.version}", "bold"),
            f" {plan.content_hash}",
            ("   by ", "dim"),
            plan.author,
            approved,
        )
        out.line(("summary   ", "dim"), plan.summary)
        rows = [
            [
                f"{STEP_MARK.get(step.status, '?')} {step.status}",
                step.id,
                step.title,
                ", ".join(step.tools) or "-",
                ", ".join(step.depends_on) or "-",
            ]
            for step in plan.steps
        ]
        out.table(["status", "step", "title", "tools", "after"], rows)
    for call in task.needs_attention:
        out.line(
            ("in doubt  ", "bold magenta"),
            f"{call.tool_call_id} ({call.tool} in {call.step_id}), arguments {call.arguments}",
        )
    if task.result:
        out.line(("result    ", "dim"), excerpt(str(task.result.get("summary", task.result)), 500))
    if task.error:
        out.line(("error     ", "red"), f"{task.error.get('code')}: {task.error.get('message')}")
    hint(out, task)


def hint(out: Output, task: TaskOut) -> None:
    """What the operator can do next (stderr, only for people)."""
    tid = task.id
    if task.status == "awaiting_approval" and task.plan is not None:
        plan = task.plan  # the version and hash shown above: approving binds both
        out.note(
            f"next: agent-runtime tasks approve {tid} --version {plan.version} --hash {plan.content_hash}"
            "  (or reject, revise, edit, diff)"
        )
    elif task.status == "needs_attention":
        kind = (task.gate or {}).get("kind")
        if kind == "call":
            out.note(f"next: agent-runtime tasks decide {tid} --decision approve|deny|edit")
        elif kind == "budget":
            out.note(f"next: agent-runtime tasks budget {tid} --tool-calls N (or --cost-usd, --input-tokens, …)")
        else:
            out.note(f"next: agent-runtime tasks resolve {tid} CALL_ID --action retry|skip|fail")
    elif task.status not in ("completed", "failed", "rejected", "cancelled"):
        out.note(f"follow it: agent-runtime tasks watch {tid}")


def task_page(out: Output, page: TaskPage) -> None:
    rows = [
        [t.id, t.status, f"v{t.current_plan_version}" if t.current_plan_version else "-", when(t.created_at)]
        for t in page.items
    ]
    out.table(["task", "status", "plan", "created"], rows)
    if page.next_cursor:
        out.note(f"more: --cursor {page.next_cursor}")


def session_page(out: Output, page: SessionPage) -> None:
    rows = [[t.id, t.status, t.profile or "-", when(t.created_at), excerpt(t.prompt, 60)] for t in page.items]
    out.table(["task", "status", "profile", "created", "request"], rows)
    if page.next_cursor:
        out.note(f"more: --cursor {page.next_cursor}")


def approvals(out: Output, page: InboxPage) -> None:
    if not page.items:
        out.line("nothing waits for your decision")
        return
    rows = [
        [
            item.task_id,
            item.kind,
            f"v{item.plan_version}",
            str(item.step_count),
            _waiting_on(item),
            ", ".join(item.risk) or "-",
            _cost(item.estimate),
            when(item.expires_at) if item.expires_at else "-",
            excerpt(item.prompt_excerpt, 50),
        ]
        for item in page.items
    ]
    out.table(["task", "kind", "plan", "steps", "waiting", "risk", "cost", "expires", "prompt"], rows)
    if page.next_cursor:
        out.note(f"more: --cursor {page.next_cursor}")


def _waiting_on(item: InboxItemOut) -> str:
    if item.call is not None:
        return f"{item.call.tool_call_id} {item.call.tool}"
    if item.kind == "budget":
        return "budget"
    return f"{item.approvals}/{item.required} approvals"


def _cost(estimate: dict[str, Any] | None) -> str:
    cost = (estimate or {}).get("cost_usd")
    return f"${cost:.4f}" if isinstance(cost, int | float) else "-"
