"""Our example MCP server, in-process (``mcp.Client(server_object)``): fast checks of every tool."""

from __future__ import annotations

from pathlib import Path

import anyio
from mcp import Client

from agent_runtime.tools.convert import tool_info, tool_result
from tests.tools.tool_helpers import load_example_module, read_call_log

example = load_example_module()


def in_process(notes_dir: Path) -> Client:
    """A client for a fresh in-process server (entered in the test's own task: task affinity)."""
    return Client(example.build_server(notes_dir), mode="legacy")


async def test_tools_are_listed_with_annotations(tmp_path: Path) -> None:
    async with in_process(tmp_path) as client:
        listed = {t.name: tool_info("example", t, {}) for t in (await client.list_tools()).tools}
        assert set(listed) == {
            "write_note",
            "read_note",
            "list_notes",
            "add",
            "multiply",
            "echo",
            "wait",
            "fail",
        }
        write = listed["write_note"]
        assert (write.read_only, write.idempotent, write.destructive) == (False, False, True)
        assert not write.safe_to_repeat
        for name in ("read_note", "list_notes", "add", "multiply", "echo", "wait"):
            assert listed[name].read_only, name
            assert listed[name].safe_to_repeat, name
        assert listed["add"].input_schema["required"] == ["a", "b"]


async def test_notes_are_written_to_and_read_from_the_notes_directory(tmp_path: Path) -> None:
    async with in_process(tmp_path) as client:
        result = await client.call_tool("write_note", {"name": "plan", "text": "step one"})
        assert not result.is_error
        assert (tmp_path / "plan.txt").read_text(encoding="utf-8") == "step one"
        assert tool_result("example", "read_note", await client.call_tool("read_note", {"name": "plan"})).text == (
            "step one"
        )
        listed = await client.call_tool("list_notes", {})
        assert listed.structured_content == {"result": ["plan"]}


async def test_bad_note_names_and_missing_notes_are_tool_errors(tmp_path: Path) -> None:
    async with in_process(tmp_path) as client:
        escape = await client.call_tool("write_note", {"name": "../outside", "text": "x"})
        assert escape.is_error
        assert "invalid note name" in tool_result("example", "write_note", escape).text
        assert not (tmp_path.parent / "outside.txt").exists()
        missing = await client.call_tool("read_note", {"name": "nothing"})
        assert missing.is_error
        assert "no note named 'nothing'" in tool_result("example", "read_note", missing).text


async def test_arithmetic_and_echo(tmp_path: Path) -> None:
    async with in_process(tmp_path) as client:
        assert (await client.call_tool("add", {"a": 2, "b": 3.5})).structured_content == {"result": 5.5}
        assert (await client.call_tool("multiply", {"a": 4, "b": 2.5})).structured_content == {"result": 10.0}
        assert (await client.call_tool("echo", {"text": "héllo"})).structured_content == {"result": "héllo"}


async def test_fail_returns_an_is_error_result_with_the_message(tmp_path: Path) -> None:
    async with in_process(tmp_path) as client:
        result = await client.call_tool("fail", {"message": "disk on fire"})
        assert result.is_error
        converted = tool_result("example", "fail", result)
        assert converted.is_error
        assert "disk on fire" in converted.text


async def test_wait_reports_progress_after_every_step(tmp_path: Path) -> None:
    async with in_process(tmp_path) as client:
        events: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            events.append((progress, total, message))

        with anyio.fail_after(10):
            result = await client.call_tool("wait", {"seconds": 0.05, "steps": 5}, progress_callback=on_progress)
        assert not result.is_error
        assert [p for p, _, _ in events] == [0, 1, 2, 3, 4, 5]
        assert all(total == 5 for _, total, _ in events)
        assert events[-1][2] == "step 5/5"


async def test_every_call_is_recorded_at_start_and_end(tmp_path: Path, call_log: Path) -> None:
    async with in_process(tmp_path) as client:
        await client.call_tool("add", {"a": 1, "b": 2})
        await client.call_tool("fail", {"message": "nope"})
        entries = read_call_log(call_log)
        assert [(e["tool"], e["event"]) for e in entries] == [
            ("add", "start"),
            ("add", "end"),
            ("fail", "start"),
            ("fail", "end"),
        ]
        assert entries[0]["arguments"] == {"a": 1, "b": 2}
        assert entries[1]["is_error"] is False
        assert entries[3]["is_error"] is True
        assert all(isinstance(e["pid"], int) and isinstance(e["time"], float) for e in entries)
