"""``tasks watch TASK``: follow the task's events live, reconnecting with ``Last-Event-ID``.

History is replayed first (from ``--after``, default the start). By default the watch ends where
someone has to act: at a plan waiting for approval or an in-doubt call (exit 4), or at the end
(0 completed, 1 failed, 3 rejected or cancelled). ``--until-done`` follows through decisions to the
end. On a terminal the steps are shown as a live table under the log; otherwise one plain line per
event; with ``--json`` one JSON object per event (JSON Lines).
"""

from __future__ import annotations

import argparse
from typing import Protocol

from rich.console import Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from agent_runtime.client import Client, EventOut, TaskOut
from agent_runtime.domain.events import TERMINAL_EVENTS
from agent_runtime.operator_cli import views
from agent_runtime.operator_cli.codes import Exit, for_status
from agent_runtime.operator_cli.events import QUIET, STYLE, describe
from agent_runtime.operator_cli.output import Output

DECISIONS = frozenset({"approval_required", "needs_attention"})
WAITING = frozenset({"awaiting_approval", "needs_attention"})
END_CODE = {"task_completed": Exit.OK, "task_failed": Exit.FAILED}
STATUS_AFTER = {
    "planning_started": "planning",
    "approval_required": "awaiting_approval",
    "revision_requested": "queued",
    "task_approved": "approved",
    "execution_started": "executing",
    "needs_attention": "needs_attention",
    "task_completed": "completed",
    "task_failed": "failed",
    "task_rejected": "rejected",
    "task_cancelled": "cancelled",
}
"""The task's status once an event is written (for the live view's header)."""


class View(Protocol):
    def open(self) -> None: ...
    def close(self) -> None: ...
    def event(self, event: EventOut) -> None: ...


def watch(client: Client, args: argparse.Namespace, out: Output) -> int:
    task = client.get(args.task)
    known = task.last_event_seq
    stop_at_decision = not args.until_done
    waiting_now = task.status in WAITING
    view: View
    if out.as_json:
        view = JsonView(out)
    elif out.rich:
        view = LiveView(out, client, task, replay=args.after == 0)
    else:
        view = PlainView(out)
    code: int | None = None
    view.open()
    try:
        if not (stop_at_decision and waiting_now and args.after >= known):
            for event in client.events(task.id, after=args.after):
                view.event(event)
                if event.type in TERMINAL_EVENTS:
                    code = END_CODE.get(event.type, Exit.STOPPED)
                    break
                if stop_at_decision and (
                    (waiting_now and event.seq >= known) or (event.seq > known and event.type in DECISIONS)
                ):
                    break
    finally:
        view.close()
    final = client.get(task.id)
    if code is None:
        code = for_status(final.status)
    if not out.as_json:
        views.hint(out, final)
    return code


class JsonView:
    def __init__(self, out: Output) -> None:
        self.out = out

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def event(self, event: EventOut) -> None:
        self.out.data(event, compact=True)


class PlainView:
    def __init__(self, out: Output) -> None:
        self.out = out

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def event(self, event: EventOut) -> None:
        if event.type in QUIET:
            return
        stamp = event.created_at.astimezone().strftime("%H:%M:%S")
        about = describe(event)
        self.out.line(f"{stamp} #{event.seq} ", (event.type, STYLE.get(event.type, "")), f" {about}" if about else "")


class LiveView:
    """The log of events above a live table of the plan's steps (status, tool calls, latest text)."""

    def __init__(self, out: Output, client: Client, task: TaskOut, *, replay: bool) -> None:
        """``replay``: the events start from the first, so the view starts from a new task's state
        (else from the task as it is now)."""
        self.out = out
        self.client = client
        self.task = task
        self.status = "queued" if replay else task.status
        self.steps: dict[str, str] = {}
        self.calls: dict[str, int] = {}
        self.text: dict[str, str] = {}
        self._load(task, fresh=replay)
        self.live = Live(self._render(), console=out.console, refresh_per_second=8, transient=False)

    def _load(self, task: TaskOut, *, fresh: bool) -> None:
        self.task = task
        if task.plan is not None:
            self.steps = {s.id: "pending" if fresh else s.status for s in task.plan.steps}

    def open(self) -> None:
        self.live.start()

    def close(self) -> None:
        self.live.update(self._render())
        self.live.stop()

    def event(self, event: EventOut) -> None:
        d = event.data
        step = str(d.get("step_id", ""))
        self.status = STATUS_AFTER.get(event.type, self.status)
        if event.type in ("plan_proposed", "plan_edited"):
            self._load(self.client.get(self.task.id), fresh=True)  # a new version: nothing of it ran yet
            self.calls.clear()
            self.text.clear()
        elif event.type == "step_started":
            self.steps[step] = "running"
        elif event.type in ("step_completed", "step_failed"):
            self.steps[step] = "completed" if event.type == "step_completed" else "failed"
        elif event.type == "tool_call_started":
            self.calls[step] = self.calls.get(step, 0) + 1
        elif event.type == "text_delta":
            self.text[step] = (self.text.get(step, "") + str(d.get("text", "")))[-400:]
        if event.type in QUIET:
            self.live.update(self._render())  # shown at the next refresh
        else:
            self.live.update(self._render(), refresh=True)
            stamp = event.created_at.astimezone().strftime("%H:%M:%S")
            line = Text.assemble((f"{stamp} #{event.seq} ", "dim"), (event.type, STYLE.get(event.type, "")))
            about = describe(event)
            line.append(f" {about}" if about else "")
            self.live.console.print(line, no_wrap=True, overflow="ellipsis")  # above the table

    def _render(self) -> Group:
        table = Table("", "step", "title", "tool calls", "latest", box=None, header_style="dim", expand=False)
        titles = {s.id: s.title for s in self.task.plan.steps} if self.task.plan else {}
        for step_id, status in self.steps.items():
            mark: Spinner | Text = (
                Spinner("dots", style="cyan") if status == "running" else Text(views.STEP_MARK.get(status, "?"))
            )
            latest = views.excerpt(self.text.get(step_id, ""), 60)
            table.add_row(mark, step_id, Text(titles.get(step_id, "")), str(self.calls.get(step_id, 0)), Text(latest))
        header = Text.assemble((self.task.id, "bold"), " ", (self.status, views.STATUS_STYLE.get(self.status, "")))
        return Group(header, table)
