"""``tasks edit TASK``: the current plan as YAML in ``$VISUAL``/``$EDITOR``, submitted as a new version.

The file opens with a comment header naming the task and the version it is based on. Saving it
unchanged submits nothing. If the service refuses the edited plan, its validation problems are
printed; on a terminal the editor opens again with them as comments at the top (as ``kubectl
edit`` does), and leaving the file as it was then gives up.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from agent_runtime.client import Client, InvalidRequest, TaskOut
from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.operator_cli import views
from agent_runtime.operator_cli.codes import Exit
from agent_runtime.operator_cli.diff import plan_yaml
from agent_runtime.operator_cli.output import Output, problems_of

HEADER = """\
# Plan of {task} (version {version}), as YAML. Save and quit to submit it as a new version;
# leave it unchanged to submit nothing. Steps: id, title, instruction, tools, depends_on.
# Tools are namespaced (server.tool), as listed by GET /v1/tools.
"""


class EditAbandoned(Exception):
    pass


def editor_command() -> list[str]:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    return shlex.split(editor)


def current_plan(task: TaskOut) -> Plan:
    assert task.plan is not None
    return Plan(
        summary=task.plan.summary,
        steps=[
            PlanStep(id=s.id, title=s.title, instruction=s.instruction, tools=s.tools, depends_on=s.depends_on)
            for s in task.plan.steps
        ],
    )


def run_editor(text: str, name: str) -> str:
    with tempfile.TemporaryDirectory(prefix="agent-runtime-edit-") as folder:
        path = Path(folder) / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        done = subprocess.run([*editor_command(), str(path)], check=False)
        if done.returncode != 0:
            raise EditAbandoned(f"the editor exited with status {done.returncode}; nothing was submitted")
        return path.read_text(encoding="utf-8")


def _without_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")).strip()


def _problem_header(problems: list[str]) -> str:
    lines = ["# The service refused this plan:"] + [f"#   - {p}" for p in problems]
    return "\n".join(lines) + "\n# Fix it and save, or quit without changes to give up.\n"


def edit(client: Client, args: argparse.Namespace, out: Output) -> int:
    """Exit 0 once a new version is stored or nothing changed (``--json``: the task either way; an
    unchanged plan keeps its version), 2 if the service refused the edit or it was given up, 1 if
    the task is not awaiting approval or the editor failed."""
    task = client.get(args.task)
    if task.plan is None or task.status != "awaiting_approval":
        message = f"task {task.id} is {task.status}; only a plan awaiting approval can be edited"
        out.error("invalid_state", message, details={"current_status": task.status})
        return Exit.FAILED
    base = task.plan.version
    header = HEADER.format(task=task.id, version=base)
    original = plan_yaml(current_plan(task))
    text = header + original
    interactive = sys.stdin.isatty()
    refused: list[str] = []
    while True:
        try:
            edited = run_editor(text, f"{task.id}-v{base}")
        except EditAbandoned as exc:
            out.error("editor_failed", str(exc))
            return Exit.FAILED
        if _without_comments(edited) == _without_comments(original):
            if out.as_json:
                out.data(task)
            else:
                out.line("plan unchanged; nothing submitted")
            return Exit.OK
        if edited == text:
            message = "edit abandoned; the plan was not changed"
            out.error("edit_abandoned", message, details={"problems": refused})
            return Exit.USAGE
        answer = _submit(client, task.id, base, edited)
        if isinstance(answer, TaskOut):
            if out.as_json:
                out.data(answer)
            else:
                views.task_line(out, answer, "plan edited")
                views.hint(out, answer)
            return Exit.OK
        refused = answer
        message = f"the edited plan was refused (still v{base})"
        if not interactive:
            out.error("validation_error", message, refused, details={"problems": refused})
            return Exit.USAGE
        out.complain(message, refused)  # the editor opens again; the one JSON answer comes at the end
        text = _problem_header(refused) + header + _without_header(edited)


def _without_header(text: str) -> str:
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def _submit(client: Client, task_id: str, base: int, edited: str) -> TaskOut | list[str]:
    """Send the edited plan: the task once accepted, else the problems to show."""
    try:
        body: Any = yaml.safe_load(edited)
    except yaml.YAMLError as exc:
        return [f"not valid YAML: {exc}"]
    if not isinstance(body, dict):
        return ["the plan must be a mapping with 'summary' and 'steps'"]
    try:
        return client.edit_plan(task_id, base, body)
    except InvalidRequest as exc:
        return problems_of(exc) or [exc.message]
