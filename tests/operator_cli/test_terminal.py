"""On a terminal, ``watch`` shows a live table of the plan's steps under the event log (rich)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.operator_cli.cli_runner import CLI
from tests.support.harness import live_service, make_settings

PROMPT = "Write a note named hello saying hi, then read the note hello back."
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


async def test_watch_on_a_terminal_shows_the_steps_live_with_the_event_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        cli = CLI(live.url)
        task_id = (await cli("tasks", "submit", PROMPT, "--wait", "--json")).json()["id"]
        await cli("tasks", "approve", task_id)
        monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: this output is a terminal…
        monkeypatch.setenv("COLUMNS", "160")  # …this wide
        watched = await cli("tasks", "watch", task_id)
    assert watched.code == 0, watched.err
    assert ANSI.search(watched.out), "expected terminal styling"
    text = ANSI.sub("", watched.out)
    assert "tool_call_started step-1 example.write_note(" in text
    assert "task_completed" in text
    final_table = text[text.rindex(task_id) :]  # the live view's last frame
    assert "completed" in final_table
    assert re.search(r"✓ +step-1 +Write a note named hello saying hi +1", final_table)
    assert re.search(r"✓ +step-2 +Read the note hello back +1", final_table)
