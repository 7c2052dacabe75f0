"""ToolPool and TaskTools with real stdio servers: calls, allow-list, isolation, failures, clean-up."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import psutil
import pytest

from agent_runtime.errors import ToolNotAllowedError, ToolServerError, ToolTimeoutError
from agent_runtime.settings import ToolSettings
from agent_runtime.tools.processes import kill_process
from agent_runtime.tools.workspace import Workspaces
from tests.tools.tool_helpers import (
    example_entry,
    free_port,
    instance_pid,
    make_registry,
    marked_children,
    read_call_log,
    running_pool,
    script_entry,
)

ALL_EXAMPLE = {f"example.{t}" for t in ("write_note", "read_note", "list_notes", "add", "echo", "wait", "fail")}


async def test_calls_return_results_and_is_error_is_data(tool_settings: ToolSettings, tmp_path: Path) -> None:
    workspace = Workspaces(tool_settings).create("task-1")
    async with (
        running_pool(make_registry(example_entry()), tool_settings) as pool,
        pool.open_task("task-1", ["example"], ALL_EXAMPLE, workspace) as tools,
    ):
        assert tools.failed_servers() == {}
        added = await tools.call("example.add", {"a": 2, "b": 40})
        assert (added.text, added.is_error, added.structured) == ("42.0", False, {"result": 42.0})
        assert added.meta["server_id"] == "example"
        failed = await tools.call("example.fail", {"message": "no such customer"})
        assert failed.is_error
        assert "no such customer" in failed.text
        written = await tools.call("example.write_note", {"name": "n1", "text": "hello"})
        assert not written.is_error
        assert (workspace / "n1.txt").read_text(encoding="utf-8") == "hello"


async def test_progress_notifications_reach_the_callback(tool_settings: ToolSettings, tmp_path: Path) -> None:
    events: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total, message))

    async with (
        running_pool(make_registry(example_entry()), tool_settings) as pool,
        pool.open_task("t", ["example"], ALL_EXAMPLE, tmp_path) as tools,
    ):
        with anyio.fail_after(15):
            result = await tools.call("example.wait", {"seconds": 0.1, "steps": 4}, on_progress=on_progress)
        assert not result.is_error
    assert [p for p, _, _ in events] == [0, 1, 2, 3, 4]
    assert events[-1] == (4, 4, "step 4/4")


async def test_a_call_over_its_timeout_fails_and_the_server_stays_usable(
    tool_settings: ToolSettings, tmp_path: Path
) -> None:
    async with (
        running_pool(make_registry(example_entry()), tool_settings) as pool,
        pool.open_task("t", ["example"], ALL_EXAMPLE, tmp_path) as tools,
    ):
        started = time.monotonic()
        with pytest.raises(ToolTimeoutError, match=r"example\.wait did not answer within 0\.3 s"):
            await tools.call("example.wait", {"seconds": 30, "steps": 30}, timeout=0.3)
        assert time.monotonic() - started < 5
        assert (await tools.call("example.echo", {"text": "still here"})).text == "still here"


async def test_the_allow_list_is_enforced_at_the_pool_boundary(
    tool_settings: ToolSettings, tmp_path: Path, call_log: Path
) -> None:
    registry = make_registry(example_entry(config=_logging_config()), example_entry("other"))
    async with (
        running_pool(registry, tool_settings) as pool,
        pool.open_task("t", ["example"], {"example.echo", "other.echo"}, tmp_path) as tools,
    ):
        with pytest.raises(ToolNotAllowedError, match="not in the approved plan's allow-list"):
            await tools.call("example.write_note", {"name": "x", "text": "y"})
        with pytest.raises(ToolNotAllowedError, match="server 'other' was not opened"):
            await tools.call("other.echo", {"text": "x"})
        with pytest.raises(ToolNotAllowedError):
            await tools.call("not-qualified", {})
        assert (await tools.call("example.echo", {"text": "ok"})).text == "ok"
    assert [e["tool"] for e in read_call_log(call_log)] == ["echo", "echo"]  # the refused calls never ran


async def test_two_tasks_at_once_cannot_see_each_others_files(tool_settings: ToolSettings) -> None:
    spaces = Workspaces(tool_settings)
    ws_a, ws_b = spaces.create("task-a"), spaces.create("task-b")
    async with (
        running_pool(make_registry(example_entry()), tool_settings) as pool,
        pool.open_task("task-a", ["example"], ALL_EXAMPLE, ws_a) as a,
        pool.open_task("task-b", ["example"], ALL_EXAMPLE, ws_b) as b,
    ):
        assert instance_pid(ws_a) != instance_pid(ws_b)
        await a.call("example.write_note", {"name": "secret", "text": "for A only"})
        await b.call("example.write_note", {"name": "mine", "text": "B"})
        assert (await a.call("example.list_notes", {})).structured == {"result": ["secret"]}
        assert (await b.call("example.list_notes", {})).structured == {"result": ["mine"]}
        stolen = await b.call("example.read_note", {"name": "secret"})
        assert stolen.is_error
        assert "no note named 'secret'" in stolen.text
    assert sorted(p.name for p in ws_a.iterdir()) == ["secret.txt"]
    assert sorted(p.name for p in ws_b.iterdir()) == ["mine.txt"]


async def test_task_env_reaches_the_server_and_every_call_is_recorded(
    tool_settings: ToolSettings, tmp_path: Path
) -> None:
    log = tmp_path / "task-calls.jsonl"
    async with (
        running_pool(make_registry(example_entry()), tool_settings) as pool,
        pool.open_task("t", ["example"], ALL_EXAMPLE, tmp_path, env={"EXAMPLE_MCP_CALL_LOG": str(log)}) as tools,
    ):
        await tools.call("example.add", {"a": 1, "b": 1})
        pid = instance_pid(tmp_path)
        # The end entry is durable before the result arrives: a completed call is provable.
        assert [e["event"] for e in read_call_log(log)] == ["start", "end"]
    assert {e["pid"] for e in read_call_log(log)} == {pid}


async def test_a_server_that_cannot_start_does_not_stop_the_others(tool_settings: ToolSettings, tmp_path: Path) -> None:
    registry = make_registry(
        example_entry(),
        script_entry("crashy", "crash_server.py"),
        {"id": "ghost", "type": "local_stdio", "config": {"command": "/nonexistent/mcp-server"}},
        example_entry("off", enabled=False),
    )
    allowed = ALL_EXAMPLE | {"crashy.x", "ghost.x", "off.x", "unknown.x"}
    async with (
        running_pool(registry, tool_settings) as pool,
        pool.open_task("t", ["example", "crashy", "ghost", "off", "unknown"], allowed, tmp_path) as tools,
    ):
        failed = tools.failed_servers()
        assert set(failed) == {"crashy", "ghost", "off", "unknown"}
        assert "cannot find its configuration (exit 3)" in failed["crashy"]  # the stderr tail
        assert "tool server 'crashy'" in failed["crashy"]
        assert "could not be started" in failed["ghost"]
        assert "No such file" in failed["ghost"]
        assert "disabled" in failed["off"]
        assert "not in the tool registry" in failed["unknown"]
        with pytest.raises(ToolServerError, match="cannot find its configuration"):
            await tools.call("crashy.x", {})
        assert (await tools.call("example.echo", {"text": "fine"})).text == "fine"


async def test_a_hung_server_fails_within_its_connect_timeout(tool_settings: ToolSettings, tmp_path: Path) -> None:
    registry = make_registry(script_entry("hung", "hung_server.py", connect_timeout_seconds=1.0))
    async with running_pool(registry, tool_settings) as pool:
        started = time.monotonic()
        with anyio.fail_after(10):
            async with pool.open_task("t", ["hung"], {"hung.x"}, tmp_path) as tools:
                elapsed = time.monotonic() - started
                failed = tools.failed_servers()
        assert elapsed < 2.5, elapsed
        assert "did not finish connecting within 1 s" in failed["hung"]
        assert "will never answer" in failed["hung"]


async def test_a_server_killed_mid_call_fails_the_call_then_restarts_within_budget(
    tool_settings: ToolSettings, tmp_path: Path
) -> None:
    async with (
        running_pool(make_registry(example_entry()), tool_settings) as pool,
        pool.open_task("t", ["example"], ALL_EXAMPLE, tmp_path) as tools,
    ):
        await tools.call("example.fail", {"message": "a line for stderr"})
        first_pid = instance_pid(tmp_path)

        async def kill_on_first_step(progress: float, total: float | None, message: str | None) -> None:
            if progress == 1:
                kill_process(psutil.Process(first_pid))

        with anyio.fail_after(15), pytest.raises(ToolServerError) as info:
            await tools.call("example.wait", {"seconds": 20, "steps": 20}, on_progress=kill_on_first_step)
        text = info.value.message
        assert "tool server 'example'" in text
        assert "during a call to 'wait'" in text
        assert "a line for stderr" in text  # the stderr tail
        # The next call restarts the server once (max_restarts_per_step=1) ...
        assert (await tools.call("example.echo", {"text": "back"})).text == "back"
        second_pid = instance_pid(tmp_path)
        assert second_pid != first_pid
        # ... but not twice in one step.
        victim = psutil.Process(second_pid)
        kill_process(victim)
        await anyio.to_thread.run_sync(lambda: victim.wait(timeout=10))
        with pytest.raises(ToolServerError, match="restart budget of 1 per step used up"):
            await tools.call("example.echo", {"text": "again"})
        assert "example" in tools.failed_servers()
        tools.new_step()
        assert (await tools.call("example.echo", {"text": "new step"})).text == "new step"


async def test_many_open_close_cycles_leave_no_process(tool_settings: ToolSettings, tmp_path: Path) -> None:
    registry = make_registry(example_entry(), example_entry("second"), script_entry("crashy", "crash_server.py"))
    async with running_pool(registry, tool_settings) as pool:
        for cycle in range(4):
            workspace = tmp_path / f"ws{cycle}"
            workspace.mkdir()
            async with pool.open_task(f"t{cycle}", ["example", "second", "crashy"], ALL_EXAMPLE, workspace) as t:
                assert len(marked_children()) == 2
                assert pool.live_by_server() == {"example": 1, "second": 1}
                await t.call("example.echo", {"text": str(cycle)})
            assert marked_children() == []
            assert pool.live_by_server() == {}
            assert pool.status()["live_processes"] == 0
    assert marked_children() == []


async def test_closing_the_pool_stops_the_servers_of_open_tasks(tool_settings: ToolSettings, tmp_path: Path) -> None:
    async with (
        running_pool(make_registry(example_entry()), tool_settings) as pool,
        pool.open_task("t", ["example"], ALL_EXAMPLE, tmp_path) as tools,
    ):
        assert len(marked_children()) == 1
        await pool.aclose()
        assert marked_children() == []
        with pytest.raises(ToolServerError):
            await tools.call("example.echo", {"text": "x"})


async def test_a_task_needing_more_processes_than_the_cap_fails_at_once_naming_the_setting(tmp_path: Path) -> None:
    settings = ToolSettings(workspace_root=tmp_path / "ws", max_server_processes=1, connect_timeout_seconds=30)
    registry = make_registry(script_entry("a", "tiny_server.py"), script_entry("b", "tiny_server.py"))
    with anyio.fail_after(30):
        async with (
            running_pool(registry, settings) as pool,
            pool.open_task("t", ["a", "b"], {"a.echo", "b.echo"}, tmp_path) as tools,
        ):
            failed = tools.failed_servers()
            assert set(failed) == {"a", "b"}
            assert "needs 2 tool-server processes at once but tools.max_server_processes is 1" in failed["a"]
            assert pool.status()["live_processes"] == 0


async def test_tasks_beyond_the_process_cap_wait_for_slots_past_the_connect_timeout_and_all_complete(
    tmp_path: Path,
) -> None:
    # Each task needs two servers and the cap fits two tasks: taking a task's slots one by one
    # could deadlock (each task holding one), so a task takes all of its slots at once.
    settings = ToolSettings(
        workspace_root=tmp_path / "ws", max_server_processes=4, connect_timeout_seconds=1.0, call_timeout_seconds=20
    )
    registry = make_registry(script_entry("a", "tiny_server.py"), script_entry("b", "tiny_server.py"))
    allowed = {"a.echo", "b.echo"}
    release_first = anyio.Event()
    both_inside = anyio.Event()
    first_inside: list[str] = []
    done: list[str] = []
    most_live = 0

    async with running_pool(registry, settings) as pool:

        async def one_task(task_id: str, hold: bool) -> None:
            nonlocal most_live
            workspace = pool.workspaces.create(task_id)
            async with pool.open_task(task_id, ["a", "b"], allowed, workspace) as tools:
                assert tools.failed_servers() == {}
                most_live = max(most_live, pool.status()["live_processes"])
                if hold:
                    first_inside.append(task_id)
                    if len(first_inside) == 2:
                        both_inside.set()
                    await release_first.wait()
                for server in ("a", "b"):
                    assert (await tools.call(f"{server}.echo", {"text": task_id})).text == task_id
            done.append(task_id)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for n in range(2):
                    tg.start_soon(one_task, f"held_{n}", True)
                # Starting servers waits on their processes, not only on this loop: wait for the event.
                await both_inside.wait()
                for n in range(6):
                    tg.start_soon(one_task, f"queued_{n}", False)
                while pool.status()["tasks_waiting_for_slots"] < 6:
                    await anyio.wait_all_tasks_blocked()
                assert pool.status()["tasks_waiting_for_slots"] == 6
                # Let the old per-start deadline (the connect timeout) pass: queued tasks keep waiting.
                await anyio.sleep(1.3)
                assert pool.status()["tasks_waiting_for_slots"] == 6 and done == []
                release_first.set()
        assert sorted(done) == sorted([f"held_{n}" for n in range(2)] + [f"queued_{n}" for n in range(6)])
        assert most_live <= 4
        assert pool.status()["tasks_waiting_for_slots"] == 0 and pool.status()["live_processes"] == 0
    assert marked_children() == []


async def test_a_remote_http_server_is_used_through_the_pool(
    tool_settings: ToolSettings, tmp_path: Path, http_example_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMOTE_TEST_URL", http_example_server)
    registry = make_registry(
        {
            "id": "remote",
            "type": "remote_http",
            "config": {"url": "${REMOTE_TEST_URL}", "headers": {"X-Test": "yes"}},
        }
    )
    async with (
        running_pool(registry, tool_settings) as pool,
        pool.open_task("t", ["remote"], {"remote.echo", "remote.fail"}, tmp_path) as tools,
    ):
        assert tools.failed_servers() == {}
        assert (await tools.call("remote.echo", {"text": "over http"})).text == "over http"
        assert (await tools.call("remote.fail", {"message": "remote says no"})).is_error
        assert pool.status()["live_processes"] == 0  # no local process for a remote server


def _logging_config() -> dict[str, object]:
    return {
        "command": "${PYTHON}",
        "args": ["${REGISTRY_DIR}/examples/mcp_server/server.py"],
        "env": {"EXAMPLE_MCP_CALL_LOG": "${EXAMPLE_MCP_CALL_LOG}"},
    }


async def test_a_broken_progress_listener_does_not_break_the_call(tool_settings: ToolSettings, tmp_path: Path) -> None:
    async def broken(progress: float, total: float | None, message: str | None) -> None:
        raise RuntimeError("listener bug")

    async with (
        running_pool(make_registry(example_entry()), tool_settings) as pool,
        pool.open_task("t", ["example"], ALL_EXAMPLE, tmp_path) as tools,
    ):
        with anyio.fail_after(15):
            result = await tools.call("example.wait", {"seconds": 0.05, "steps": 2}, on_progress=broken)
        assert not result.is_error


async def test_an_unreachable_remote_server_is_reported_without_its_secrets(
    tool_settings: ToolSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMOTE_TOKEN", "s3cret-token")
    url = f"http://127.0.0.1:{free_port()}/mcp?token=${{REMOTE_TOKEN}}"
    registry = make_registry(
        {
            "id": "down",
            "type": "remote_http",
            "config": {"url": url, "headers": {"Authorization": "Bearer ${REMOTE_TOKEN}"}},
            "connect_timeout_seconds": 5,
        }
    )
    async with (
        running_pool(registry, tool_settings) as pool,
        pool.open_task("t", ["down"], {"down.echo"}, tmp_path) as tools,
    ):
        error = tools.failed_servers()["down"]
    assert "tool server 'down' failed to connect" in error
    assert "s3cret" not in error


async def test_a_servers_own_child_processes_are_stopped_with_it(tool_settings: ToolSettings, tmp_path: Path) -> None:
    registry = make_registry(script_entry("forking", "forking_server.py"))
    async with running_pool(registry, tool_settings) as pool:
        async with pool.open_task("t", ["forking"], {"forking.echo"}, tmp_path) as tools:
            assert (await tools.call("forking.echo", {"text": "hi"})).text == "hi"
            tree = marked_children()
            assert len(tree) == 2  # the server and the helper it started
        for proc in tree:
            assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE, proc
