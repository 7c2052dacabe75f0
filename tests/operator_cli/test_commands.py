"""``agent-runtime tasks …`` and ``agent-runtime approvals`` against the real service: output, JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_runtime.cli import build_parser, main
from tests.operator_cli.cli_runner import CLI
from tests.support.harness import free_port, live_service, make_settings

PROMPT = "Write a note named hello saying hi, then read the note hello back."


async def test_submit_wait_shows_the_plan_then_approve_and_watch_follow_it_to_completion(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        cli = CLI(live.url)
        waited = await cli("tasks", "submit", PROMPT, "--wait", "--metadata", "ticket=T-1")
        assert waited.code == 4, waited.err  # waiting for a decision
        assert "awaiting_approval" in waited.out and "v1 sha256:" in waited.out
        assert "Write a note named hello saying hi" in waited.out and "example.write_note" in waited.out
        assert "ticket=T-1" in waited.out
        task_id = waited.out.split()[0]
        assert task_id.startswith("task_")
        assert f"agent-runtime tasks approve {task_id} --version 1" in waited.err

        queued = await cli("tasks", "submit", "Add 2 and 3.", "--json")
        assert queued.code == 0 and queued.json()["status"] == "queued"
        await live.wait_for(queued.json()["id"], "approval_required")

        inbox = await cli("approvals", "--json")
        assert inbox.code == 0
        assert [i["task_id"] for i in inbox.json()["items"]] == [queued.json()["id"], task_id]  # newest first
        assert inbox.json()["items"][1]["step_count"] == 2
        table = await cli("approvals")
        assert table.out.splitlines()[0].split() == [
            "task",
            "kind",
            "plan",
            "steps",
            "waiting",
            "risk",
            "cost",
            "expires",
            "prompt",
        ]
        assert task_id in table.out and "Write a note named hello" in table.out

        approved = await cli("tasks", "approve", task_id)
        assert approved.code == 0, approved.err
        assert "approving plan v1 (sha256:" in approved.out and f"{task_id} approved: status approved" in approved.out

        watched = await cli("tasks", "watch", task_id)
        assert watched.code == 0, watched.err
        lines = watched.out.splitlines()
        assert " #1 task_created queued" in lines[0]
        assert any("tool_call_started step-1 example.write_note(" in line for line in lines)
        assert any("tool_call_completed step-2 example.read_note → Write a note named hello" in line for line in lines)
        assert "task_completed" in lines[-1]
        assert not any("text_delta" in line for line in lines)

        events = await cli("tasks", "watch", task_id, "--json")
        assert events.code == 0
        seqs = [e["seq"] for e in events.json_lines()]
        assert seqs == list(range(1, len(seqs) + 1)) and events.json_lines()[-1]["type"] == "task_completed"

        shown = await cli("tasks", "show", task_id, "--json")
        assert shown.code == 0 and shown.json()["status"] == "completed"
        assert shown.json()["metadata"] == {"ticket": "T-1"}
        listed = await cli("tasks", "list", "--status", "completed")
        assert listed.out.splitlines()[1].split()[:3] == [task_id, "completed", "v1"], listed.out


async def test_rejected_and_cancelled_tasks_watch_to_exit_code_3(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        cli = CLI(live.url)
        first = (await cli("tasks", "submit", PROMPT, "--wait", "--json")).json()
        rejected = await cli("tasks", "reject", first["id"], "--reason", "not needed")
        assert rejected.code == 0 and f"{first['id']} rejected: status rejected" in rejected.out
        watched = await cli("tasks", "watch", first["id"])
        assert watched.code == 3 and "task_rejected not needed" in watched.out.splitlines()[-1]

        second = (await cli("tasks", "submit", PROMPT, "--json")).json()
        cancelled = await cli("tasks", "cancel", second["id"], "--reason", "changed my mind", "--json")
        assert cancelled.code == 0 and cancelled.json()["status"] == "cancelled"
        assert (await cli("tasks", "watch", second["id"], "--json")).code == 3
        waited = await cli("tasks", "submit", PROMPT, "--wait", "--json")
        again = await cli("tasks", "cancel", waited.json()["id"])
        assert again.code == 0
        shown = await cli("tasks", "show", waited.json()["id"])
        assert shown.code == 0 and "error     cancelled" in shown.out


async def test_watch_stops_where_a_decision_is_needed_unless_told_to_go_on(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        cli = CLI(live.url)
        task = (await cli("tasks", "submit", PROMPT, "--json")).json()
        stopped = await cli("tasks", "watch", task["id"])
        assert stopped.code == 4
        assert "approval_required plan v1 waits for approval" in stopped.out.splitlines()[-1]
        last = (await cli("tasks", "show", task["id"], "--json")).json()["last_event_seq"]
        again = await cli("tasks", "watch", task["id"], "--after", str(last))  # nothing new: ends at once
        assert again.code == 4 and again.out == ""

        revised = await cli("tasks", "revise", task["id"], "Also add 2 and 3.", "--wait")
        assert revised.code == 4 and "v2 sha256:" in revised.out and "example.add" in revised.out
        # The replay passes v1's approval_required; the watch stops only at the current one.
        history = await cli("tasks", "watch", task["id"], "--json")
        types = [e["type"] for e in history.json_lines()]
        assert types.count("approval_required") == 2 and types[-1] == "approval_required"

        await live.approve(task["id"], 2)
        done = await cli("tasks", "watch", task["id"], "--until-done", "--json")
        assert done.code == 0 and done.json_lines()[-1]["type"] == "task_completed"


async def test_diff_compares_plan_versions_as_yaml_and_by_step(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        cli = CLI(live.url)
        task_id = (await cli("tasks", "submit", "Add 2 and 3.", "--wait", "--json")).json()["id"]
        one = await cli("tasks", "diff", task_id)
        assert one.code == 2 and "one plan version" in one.err
        await cli("tasks", "revise", task_id, "Then echo the word done.", "--wait")

        text = await cli("tasks", "diff", task_id)
        assert text.code == 0, text.err
        lines = text.out.splitlines()
        assert lines[0].startswith("--- v1 (planner:") and lines[1].startswith("+++ v2 (planner:")
        assert any(line.startswith("+") and "example.echo" in line for line in lines[2:])
        assert "steps: added" in text.err

        as_json = await cli("tasks", "diff", task_id, "1", "2", "--json")
        body = as_json.json()
        assert (body["from"], body["to"]) == (1, 2)
        assert body["steps"]["added"] and body["steps"]["summary_changed"] is True
        assert body["diff"] == lines

        same = await cli("tasks", "diff", task_id, "2", "2")
        assert same.code == 0 and "v2 and v2 are the same plan" in same.out
        missing = await cli("tasks", "diff", task_id, "1", "7")
        assert missing.code == 2 and "no version 7" in missing.err


async def test_service_errors_become_messages_and_exit_codes(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        cli = CLI(live.url)
        missing = await cli("tasks", "show", "task_000000000000000000000000")
        assert missing.code == 1 and "not_found: task task_000000000000000000000000 not found" in missing.err
        as_json = await cli("tasks", "show", "task_000000000000000000000000", "--json")
        assert as_json.code == 1 and as_json.json()["error"]["code"] == "not_found"

        invalid = await cli("tasks", "list", "--limit", "0")
        assert invalid.code == 2 and "validation_error" in invalid.err and "limit" in invalid.err

        task_id = (await cli("tasks", "submit", PROMPT, "--wait", "--json")).json()["id"]
        await cli("tasks", "revise", task_id, "Shorter.", "--wait")
        stale = await cli("tasks", "approve", task_id, "--version", "1")
        assert stale.code == 1 and "stale_plan_version: plan version 1 is not the current version (2)" in stale.err

        nothing = await cli("tasks", "resolve", task_id, "--action", "retry")
        assert nothing.code == 2 and "calls in doubt: none" in nothing.err
        unknown = await cli("tasks", "resolve", task_id, "call_x", "--action", "retry")
        assert unknown.code == 1  # the state is checked first: nothing is in doubt while awaiting approval
        assert "invalid_state: cannot resolve a tool call: task is awaiting_approval" in unknown.err

    with pytest.raises(SystemExit) as usage:
        await CLI("http://127.0.0.1:1")("tasks", "approve")
    assert usage.value.code == 2
    down = await CLI(f"http://127.0.0.1:{free_port()}")("tasks", "list")
    assert down.code == 1 and "cannot reach http://127.0.0.1:" in down.err


async def test_under_json_every_failure_is_one_error_document_on_stdout_with_the_documented_exit_code(
    tmp_path: Path,
) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        cli = CLI(live.url)
        bad_metadata = await cli("tasks", "submit", "Add 2 and 3.", "--metadata", "no-equals-sign", "--json")
        assert bad_metadata.code == 2
        assert bad_metadata.json() == {
            "error": {
                "code": "usage_error",
                "message": "--metadata takes KEY=VALUE, got 'no-equals-sign'",
                "details": {},
            }
        }
        assert "--metadata takes KEY=VALUE" in bad_metadata.err

        task_id = (await cli("tasks", "submit", "Add 2 and 3.", "--wait", "--json")).json()["id"]
        one = await cli("tasks", "diff", task_id, "--json")
        assert one.code == 2 and one.json()["error"]["code"] == "usage_error"
        assert "one plan version" in one.json()["error"]["message"]

        invalid = await cli("tasks", "list", "--limit", "0", "--json")
        assert invalid.code == 2 and invalid.json()["error"]["code"] == "validation_error"
        wrong_state = await cli("tasks", "retry", task_id, "--json")
        assert wrong_state.code == 1 and wrong_state.json()["error"]["code"] == "invalid_state"

    raw = await CLI(f"http://127.0.0.1:{free_port()}")("tasks", "download", "task_x", "a.txt", "-o", "-", "--json")
    assert raw.code == 2 and raw.json()["error"]["code"] == "usage_error"  # refused before any request

    down = await CLI(f"http://127.0.0.1:{free_port()}")("tasks", "list", "--json")
    assert down.code == 1
    error = down.json()["error"]
    assert error["code"] == "connection_failed" and error["message"].startswith("cannot reach http://127.0.0.1:")
    assert error["details"]["server"].startswith("http://127.0.0.1:")


def test_help_is_plain_text_without_the_docstrings_markup() -> None:
    text = build_parser().format_help()
    assert "``" not in text and ":data:" not in text
    assert "operate a running\nservice from the command line" in text
    approve = build_parser().parse_args(["tasks", "approve", "task_x", "--hash", "sha256:ab"])
    assert (approve.version, approve.hash) == (None, "sha256:ab")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tasks", "approve", "--json"], "the following arguments are required: task"),
        (["tasks", "approve", "task_x", "--version", "two", "--json"], "argument --version: invalid int value: 'two'"),
        (["tasks", "resolve", "task_x", "--action", "redo", "--json"], "argument --action: invalid choice: 'redo'"),
        (["tasks", "--json"], "the following arguments are required: COMMAND"),
    ],
)
def test_argument_errors_under_json_are_one_usage_error_document_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    printed = capsys.readouterr()
    error = json.loads(printed.out)["error"]
    assert error["code"] == "usage_error" and error["message"].startswith(message)
    assert error["details"]["usage"].startswith("usage: agent-runtime tasks")
    assert f"error: {message}" in printed.err  # argparse's own message, as without --json

    with pytest.raises(SystemExit):
        main([a for a in argv if a != "--json"])
    assert capsys.readouterr().out == ""  # without --json: stderr only, as argparse does
