"""The ``tasks`` commands that send one or two requests and print the answer."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agent_runtime.client import Client, PlanVersionOut, TaskOut
from agent_runtime.operator_cli import diff as plan_diff
from agent_runtime.operator_cli import views
from agent_runtime.operator_cli.codes import Exit, for_status
from agent_runtime.operator_cli.output import Output


class UsageError(Exception):
    """The arguments cannot be served as given (exit 2)."""


def submit(client: Client, args: argparse.Namespace, out: Output) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    task = client.submit(prompt, _metadata(args.metadata), profile=args.profile, session_id=args.session)
    if args.wait:
        return _settle(client, task, args.timeout, out)
    if out.as_json:
        out.data(task)
    else:
        views.task_line(out, task, "submitted")
        views.hint(out, task)
    return Exit.OK


def _metadata(pairs: list[str]) -> dict[str, Any] | None:
    if not pairs:
        return None
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata takes KEY=VALUE, got {pair!r}")
        found[key] = value
    return found


def _settle(client: Client, task: TaskOut, timeout: float | None, out: Output) -> int:
    """Wait until the task waits for a person or finished, show it, exit with its status's code."""
    if not out.as_json:
        views.task_line(out, task, "submitted" if task.status == "queued" else "waiting")
        out.note("waiting for the plan…")
    task = client.wait(task.id, timeout=timeout)
    if out.as_json:
        out.data(task)
    else:
        views.show_task(out, task)
    return for_status(task.status)


def list_tasks(client: Client, args: argparse.Namespace, out: Output) -> int:
    page = client.list_tasks(args.status, args.limit, args.cursor)
    if out.as_json:
        out.data(page)
    else:
        views.task_page(out, page)
    return Exit.OK


def session(client: Client, args: argparse.Namespace, out: Output) -> int:
    page = client.session(args.session, args.limit, args.cursor)
    if out.as_json:
        out.data(page)
    else:
        views.session_page(out, page)
    return Exit.OK


def show(client: Client, args: argparse.Namespace, out: Output) -> int:
    task = client.get(args.task)
    if out.as_json:
        out.data(task)
    else:
        views.show_task(out, task)
    return Exit.OK


def approve(client: Client, args: argparse.Namespace, out: Output) -> int:
    """Approve ``--version`` (and ``--hash`` if given); without ``--version``, the current plan's
    version and content hash as read (and shown) just before, so a plan changed in between is
    refused (409 ``stale_plan_version`` or ``content_hash_mismatch``) rather than approved unseen."""
    version, content_hash = args.version, args.hash
    if version is None:
        current = client.get(args.task)
        if current.plan is None:
            raise UsageError(f"task {current.id} has no plan to approve (status {current.status})")
        version = current.plan.version
        if content_hash is None:
            content_hash = current.plan.content_hash
        if not out.as_json:
            out.line(
                "approving ",
                (f"plan v{version}", "bold"),
                f" ({content_hash}) of {current.id}: ",
                views.excerpt(current.plan.summary),
            )
    task = client.approve(args.task, version, content_hash)
    return _answer(out, task, "approved")


def reject(client: Client, args: argparse.Namespace, out: Output) -> int:
    return _answer(out, client.reject(args.task, args.reason), "rejected")


def revise(client: Client, args: argparse.Namespace, out: Output) -> int:
    task = client.revise(args.task, args.feedback)
    if args.wait:
        return _settle(client, task, args.timeout, out)
    return _answer(out, task, "sent back for revision")


def cancel(client: Client, args: argparse.Namespace, out: Output) -> int:
    return _answer(out, client.cancel(args.task, args.reason), "cancelled")


def resolve(client: Client, args: argparse.Namespace, out: Output) -> int:
    call_id = args.call
    if call_id is None:
        waiting = client.get(args.task).needs_attention
        if len(waiting) != 1:
            listed = ", ".join(f"{c.tool_call_id} ({c.tool})" for c in waiting) or "none"
            raise UsageError(f"name the tool call to resolve; calls in doubt: {listed}")
        call_id = waiting[0].tool_call_id
    if args.action == "skip" and args.result is None:
        raise UsageError("--action skip needs --result TEXT (recorded as the call's result)")
    task = client.resolve(args.task, call_id, args.action, args.result)
    return _answer(out, task, f"{call_id} resolved ({args.action})")


def decide(client: Client, args: argparse.Namespace, out: Output) -> int:
    call_id = args.call
    if call_id is None:
        gated = [c for c in client.get(args.task).needs_attention if c.kind == "call_gate"]
        if len(gated) != 1:
            raise UsageError(f"task {args.task} has no tool call waiting at a policy gate")
        call_id = gated[0].tool_call_id
    arguments = None
    if args.arguments is not None:
        try:
            arguments = json.loads(args.arguments)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--arguments is not JSON: {exc}") from None
    if args.decision == "edit" and arguments is None and args.tool is None:
        raise UsageError("--decision edit needs --arguments JSON and/or --tool NAME")
    task = client.decide_call(
        args.task, call_id, args.decision, reason=args.reason, tool=args.tool, arguments=arguments
    )
    return _answer(out, task, f"{call_id}: {args.decision}")


def retry(client: Client, args: argparse.Namespace, out: Output) -> int:
    task = client.retry(args.task)
    if args.wait:
        return _settle(client, task, args.timeout, out)
    return _answer(out, task, "retried from where it failed")


def budget(client: Client, args: argparse.Namespace, out: Output) -> int:
    limits = {
        name: value
        for name in ("input_tokens", "output_tokens", "cost_usd", "tool_calls", "wall_seconds")
        if (value := getattr(args, name)) is not None
    }
    if not limits:
        raise UsageError("name at least one limit to raise, e.g. --tool-calls 20 or --cost-usd 5")
    return _answer(out, client.raise_budget(args.task, **limits), "budget raised")


def _answer(out: Output, task: TaskOut, verb: str) -> int:
    if out.as_json:
        out.data(task)
    else:
        views.task_line(out, task, verb)
        views.hint(out, task)
    return Exit.OK


def diff(client: Client, args: argparse.Namespace, out: Output) -> int:
    versions = {v.version: v for v in client.plan_versions(args.task)}
    old, new = _pick(args.task, versions, args.versions)
    lines = plan_diff.unified(old, new)
    changes = plan_diff.step_changes(old.plan, new.plan)
    if out.as_json:
        out.data({"task_id": args.task, "from": old.version, "to": new.version, "steps": changes, "diff": lines})
        return Exit.OK
    if not lines:
        out.line(f"v{old.version} and v{new.version} are the same plan")
    for line in lines:
        style = "bold" if line[:3] in ("---", "+++") else {"+": "green", "-": "red", "@": "cyan"}.get(line[:1], "")
        out.line((line, style))
    summary = [f"{key} {', '.join(changes[key])}" for key in ("added", "removed", "changed") if changes[key]]
    if changes["reordered"]:
        summary.append("steps reordered")
    if changes["summary_changed"]:
        summary.append("summary changed")
    if summary:
        out.note("steps: " + "; ".join(summary))
    return Exit.OK


def _pick(
    task_id: str, versions: dict[int, PlanVersionOut], wanted: list[int]
) -> tuple[PlanVersionOut, PlanVersionOut]:
    if not versions:
        raise UsageError(f"task {task_id} has no plan yet")
    latest = max(versions)
    if not wanted:
        if latest == 1:
            raise UsageError(f"task {task_id} has one plan version; nothing to compare")
        wanted = [latest - 1, latest]
    elif len(wanted) == 1:
        wanted = [wanted[0], latest]
    elif len(wanted) > 2:
        raise UsageError("diff takes at most two versions: diff TASK [A [B]]")
    missing = [v for v in wanted if v not in versions]
    if missing:
        raise UsageError(f"task {task_id} has plan versions 1..{latest}; no version {missing[0]}")
    return versions[wanted[0]], versions[wanted[1]]


def approvals(client: Client, args: argparse.Namespace, out: Output) -> int:
    page = client.approvals(limit=args.limit, cursor=args.cursor)
    if out.as_json:
        out.data(page)
    else:
        views.approvals(out, page)
    return Exit.OK
