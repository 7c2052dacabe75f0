"""``agent-runtime tasks edit``: the plan as YAML in $EDITOR (a script here), submitted as a new version."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from tests.operator_cli.cli_runner import CLI
from tests.support.harness import live_service, make_settings

PROMPT = "Write a note named hello saying hi, then read the note hello back."

EDITOR = """\
import os, shutil, sys, yaml
path = sys.argv[1]
shutil.copy(path, os.environ["EDIT_SEEN"])
mode = os.environ["EDIT_MODE"]
if mode == "fail":
    sys.exit(3)
if mode == "unknown_tool_then_give_up":
    if open(path).read().startswith("# The service refused this plan"):
        sys.exit(0)  # reopened with the problems: leave it as it is
    mode = "unknown_tool"
if mode != "same":
    plan = yaml.safe_load(open(path))
    first = plan["steps"][0]
    if mode == "shorten":
        plan["summary"] = "Only write the todo note"
        plan["steps"] = [first]
        first["instruction"] = "Write a note named todo saying buy milk"
    elif mode == "unknown_tool":
        first["tools"] = ["shell.exec"]
    elif mode == "misspelt_field":
        first["tool"] = first.pop("tools")
    open(path, "w").write(yaml.safe_dump(plan))
"""


@pytest.fixture
def editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$EDITOR is a script that rewrites the YAML as $EDIT_MODE says; it copies what it was given to the
    returned path."""
    script = tmp_path / "editor.py"
    script.write_text(EDITOR)
    seen = tmp_path / "seen.yaml"
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    monkeypatch.setenv("EDIT_SEEN", str(seen))
    return seen


async def test_edit_opens_the_current_plan_as_yaml_and_submits_the_change_as_a_new_version(
    tmp_path: Path, editor: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        cli = CLI(live.url)
        task_id = (await cli("tasks", "submit", PROMPT, "--wait", "--json")).json()["id"]
        monkeypatch.setenv("EDIT_MODE", "shorten")
        edited = await cli("tasks", "edit", task_id)
        assert edited.code == 0, edited.err
        assert f"{task_id} plan edited: status awaiting_approval, plan v2" in edited.out
        seen = await anyio.Path(editor).read_text()
        assert seen.startswith(f"# Plan of {task_id} (version 1), as YAML.")
        assert "- id: step-1\n" in seen and "tools:\n  - example.write_note" in seen

        task = await live.task(task_id)
        assert task["current_plan_version"] == 2 and task["plan"]["author"].startswith("operator:")
        assert task["plan"]["summary"] == "Only write the todo note"
        assert [s["instruction"] for s in task["plan"]["steps"]] == ["Write a note named todo saying buy milk"]
        diff = await cli("tasks", "diff", task_id, "--json")
        assert diff.json()["steps"] == {
            "summary_changed": True,
            "added": [],
            "removed": ["step-2"],
            "changed": ["step-1"],
            "reordered": False,
        }


async def test_an_edit_the_service_refuses_shows_its_validation_errors_and_changes_nothing(
    tmp_path: Path, editor: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        cli = CLI(live.url)
        task_id = (await cli("tasks", "submit", PROMPT, "--wait", "--json")).json()["id"]

        monkeypatch.setenv("EDIT_MODE", "unknown_tool")
        unknown = await cli("tasks", "edit", task_id)
        assert unknown.code == 2
        assert "the edited plan was refused (still v1)" in unknown.err
        assert "  - step 'step-1' names unknown tool 'shell.exec'" in unknown.err

        monkeypatch.setenv("EDIT_MODE", "misspelt_field")
        misspelt = await cli("tasks", "edit", task_id)
        assert misspelt.code == 2
        assert "  - plan.steps.0.tools: Field required" in misspelt.err
        assert "  - plan.steps.0.tool: Extra inputs are not permitted" in misspelt.err

        monkeypatch.setenv("EDIT_MODE", "same")
        same = await cli("tasks", "edit", task_id)
        assert same.code == 0 and "plan unchanged; nothing submitted" in same.out

        monkeypatch.setenv("EDIT_MODE", "fail")
        failed = await cli("tasks", "edit", task_id)
        assert failed.code == 1 and "the editor exited with status 3; nothing was submitted" in failed.err

        assert (await live.task(task_id))["current_plan_version"] == 1
        await cli("tasks", "cancel", task_id)
        late = await cli("tasks", "edit", task_id)
        assert late.code == 1 and "is cancelled; only a plan awaiting approval can be edited" in late.err


async def test_every_edit_outcome_under_json_is_one_json_document_on_stdout(
    tmp_path: Path, editor: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        cli = CLI(live.url)
        task_id = (await cli("tasks", "submit", PROMPT, "--wait", "--json")).json()["id"]

        monkeypatch.setenv("EDIT_MODE", "same")
        same = await cli("tasks", "edit", task_id, "--json")
        assert same.code == 0 and same.err == ""
        assert same.json()["id"] == task_id and same.json()["plan"]["version"] == 1  # nothing submitted

        monkeypatch.setenv("EDIT_MODE", "unknown_tool")
        refused = await cli("tasks", "edit", task_id, "--json")
        assert refused.code == 2
        error = refused.json()["error"]
        assert error["code"] == "validation_error" and error["message"] == "the edited plan was refused (still v1)"
        assert error["details"]["problems"] == ["step 'step-1' names unknown tool 'shell.exec'"]
        assert "the edited plan was refused" in refused.err  # and for people, on stderr

        monkeypatch.setenv("EDIT_MODE", "fail")
        failed = await cli("tasks", "edit", task_id, "--json")
        assert failed.code == 1
        assert failed.json()["error"]["code"] == "editor_failed"
        assert "the editor exited with status 3" in failed.json()["error"]["message"]

        # On a terminal a refused edit reopens the editor; leaving the file as it was gives up.
        monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
        monkeypatch.setenv("EDIT_MODE", "unknown_tool_then_give_up")
        given_up = await cli("tasks", "edit", task_id, "--json")
        assert given_up.code == 2
        error = given_up.json()["error"]  # one document, though the service refused once before
        assert error["code"] == "edit_abandoned"
        assert error["details"]["problems"] == ["step 'step-1' names unknown tool 'shell.exec'"]

        assert (await live.task(task_id))["current_plan_version"] == 1
        await cli("tasks", "cancel", task_id)
        late = await cli("tasks", "edit", task_id, "--json")
        assert late.code == 1
        assert late.json()["error"] == {
            "code": "invalid_state",
            "message": f"task {task_id} is cancelled; only a plan awaiting approval can be edited",
            "details": {"current_status": "cancelled"},
        }


async def test_a_successful_edit_under_json_prints_the_task_with_its_new_version(
    tmp_path: Path, editor: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        cli = CLI(live.url)
        task_id = (await cli("tasks", "submit", PROMPT, "--wait", "--json")).json()["id"]
        monkeypatch.setenv("EDIT_MODE", "shorten")
        edited = await cli("tasks", "edit", task_id, "--json")
        assert edited.code == 0, edited.err
        assert edited.json()["plan"]["version"] == 2 and edited.json()["plan"]["summary"] == "Only write the todo note"
