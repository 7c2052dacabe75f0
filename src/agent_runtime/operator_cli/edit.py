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
    task = client.get(args.task)
    if task.plan is None or task.status != "awaiting_approval":
        out.error(f"task {task.id} is {task.status}; only a plan awaiting approval can be edited")
        return Exit.FAILED
    base = task.plan.version
    header = HEADER.format(task=task.id, version=base)
    original = plan_yaml(current_plan(task))
    text = header + original
    interactive = sys.stdin.isatty()
    while True:
        try:
            edited = run_editor(text, f"{task.id}-v{base}")
        except EditAbandoned as exc:
            out.error(str(exc))
            return Exit.FAILED
        if _without_comments(edited) == _without_comments(original):
            out.line("plan unchanged; nothing submitted")
            return Exit.OK
        if edited == text:
            out.error("edit abandoned; the plan was not changed")
            return Exit.USAGE
        problems = _submit(client, task.id, base, edited, out)
        if problems is None:
            return Exit.OK
        out.error(f"the edited plan was refused (still v{base})", problems)
        if not interactive:
            return Exit.USAGE
        text = _problem_header(problems) + header + _without_header(edited)


def _without_header(text: str) -> str:
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def _submit(client: Client, task_id: str, base: int, edited: str, out: Output) -> list[str] | None:
    """Send the edited plan; ``None`` once accepted, else the problems to show."""
    try:
        body: Any = yaml.safe_load(edited)
    except yaml.YAMLError as exc:
        return [f"not valid YAML: {exc}"]
    if not isinstance(body, dict):
        return ["the plan must be a mapping with 'summary' and 'steps'"]
    try:
        task = client.edit_plan(task_id, base, body)
    except InvalidRequest as exc:
        return problems_of(exc) or [exc.message]
    if out.as_json:
        out.data(task)
    else:
        views.task_line(out, task, "plan edited")
        views.hint(out, task)
    return None
