"""Task-scoped Python servers started by a fork server: isolation, environment, fallbacks, clean-up.

Every test runs real processes: the fork server under the server's interpreter, and real forked
instances speaking MCP over their own stdio pipes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from agent_runtime.settings import ToolSettings
from agent_runtime.tools.pool import TaskTools, ToolPool
from tests.tools.tool_helpers import REPO, fork_servers, make_registry, marked_children, running_pool, script_entry

INSPECT = {"state.remember", "state.inspect"}


def state_entry(**extra: Any) -> dict[str, Any]:
    return script_entry("state", "stateful_server.py", **extra)


async def inspect(tools: TaskTools) -> dict[str, Any]:
    result = await tools.call("state.inspect", {})
    assert not result.is_error, result.text
    assert result.structured is not None
    seen: dict[str, Any] = result.structured
    return seen


def forked_count(pool: ToolPool) -> int:
    return sum(int(s.get("forked", 0)) for s in pool.status()["fork_servers"])


async def test_each_task_gets_a_fresh_forked_child_in_its_own_session(tool_settings: ToolSettings) -> None:
    async with running_pool(make_registry(state_entry()), tool_settings) as pool:
        pids = []
        for n in range(3):
            workspace = pool.workspaces.create(f"task-{n}")
            async with pool.open_task(f"task-{n}", ["state"], INSPECT, workspace) as tools:
                seen = await inspect(tools)
                assert seen["cwd"] == str(workspace)
                assert seen["pgid"] == seen["pid"] == seen["sid"]  # a new session, so a new process group
                (parent,) = fork_servers()
                assert psutil.Process(seen["pid"]).ppid() == parent.pid
                pids.append(seen["pid"])
        assert len(set(pids)) == 3  # never reused
        assert forked_count(pool) == 3


async def test_two_tasks_cannot_see_each_others_files_memory_or_environment(tool_settings: ToolSettings) -> None:
    async with running_pool(make_registry(state_entry()), tool_settings) as pool:
        ws_a, ws_b = pool.workspaces.create("task-a"), pool.workspaces.create("task-b")
        async with (
            pool.open_task("task-a", ["state"], INSPECT, ws_a) as a,
            pool.open_task("task-b", ["state"], INSPECT, ws_b) as b,
        ):
            assert not (await a.call("state.remember", {"text": "for A only"})).is_error
            seen_by_b = await inspect(b)
            assert (seen_by_b["memory"], seen_by_b["remembered_env"], seen_by_b["files"]) == ([], None, [])
            seen_by_a = await inspect(a)
            assert (seen_by_a["memory"], seen_by_a["remembered_env"]) == (["for A only"], "for A only")
            assert seen_by_a["files"] == ["remembered.txt"]
        # The next task's child is forked from the untouched parent: nothing of A's is left.
        ws_c = pool.workspaces.create("task-c")
        async with pool.open_task("task-c", ["state"], INSPECT, ws_c) as c:
            seen_by_c = await inspect(c)
        assert (seen_by_c["memory"], seen_by_c["remembered_env"], seen_by_c["files"]) == ([], None, [])
        assert forked_count(pool) == 3


async def test_provider_keys_never_reach_a_forked_child(
    tool_settings: ToolSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {"OPENAI_API_KEY": "sk-test-openai", "ANTHROPIC_API_KEY": "sk-ant-test", "AWS_SECRET_ACCESS_KEY": "x"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    entry = state_entry(config={**state_entry()["config"], "env": {"GREETING": "hello", "TASK": "${TASK_ID}"}})
    async with running_pool(make_registry(entry), tool_settings) as pool:
        workspace = pool.workspaces.create("task-env")
        async with pool.open_task("task-env", ["state"], INSPECT, workspace, env={"PER_TASK": "1"}) as tools:
            seen = await inspect(tools)
            startup_env = psutil.Process(seen["pid"]).environ()  # what /proc shows: the fork server's
            (parent,) = fork_servers()
            parent_env = parent.environ()
    assert {"GREETING", "TASK", "PER_TASK", "PATH"} <= set(seen["env_names"])
    for name in secrets:
        assert name not in seen["env_names"]
        assert name not in startup_env
        assert name not in parent_env
    # Values that differ per task are given to the child only, never to the shared parent.
    assert "TASK" not in parent_env and "PER_TASK" not in parent_env
    assert parent_env["GREETING"] == "hello"


async def test_a_server_whose_imports_start_a_thread_is_spawned_instead(tool_settings: ToolSettings) -> None:
    registry = make_registry(script_entry("tiny", "threads_at_import.py"))
    async with running_pool(registry, tool_settings) as pool:
        workspace = pool.workspaces.create("task-t")
        async with pool.open_task("task-t", ["tiny"], {"tiny.echo"}, workspace) as tools:
            assert (await tools.call("tiny.echo", {"text": "spawned"})).text == "spawned"
            (instance,) = marked_children()
            assert instance.ppid() == os.getpid()
        (refusal,) = pool.status()["fork_servers"]
        assert "thread(s) started while importing" in refusal["unavailable"]


async def test_fork_server_false_in_the_registry_spawns_every_instance(tool_settings: ToolSettings) -> None:
    async with running_pool(make_registry(state_entry(fork_server=False)), tool_settings) as pool:
        workspace = pool.workspaces.create("task-s")
        async with pool.open_task("task-s", ["state"], INSPECT, workspace) as tools:
            seen = await inspect(tools)
            assert psutil.Process(seen["pid"]).ppid() == os.getpid()
        assert pool.status()["fork_servers"] == []
        assert fork_servers() == []


DRIVER = """
import anyio, json, sys
from pathlib import Path
from agent_runtime.settings import ToolSettings
from agent_runtime.tools.pool import ToolPool
from tests.tools.tool_helpers import make_registry, script_entry

async def main() -> None:
    settings = ToolSettings(workspace_root=Path(sys.argv[1]), connect_timeout_seconds=30)
    pool = ToolPool(make_registry(script_entry("state", "stateful_server.py")), settings)
    await pool.start()
    workspace = pool.workspaces.create("doomed")
    async with pool.open_task("doomed", ["state"], {"state.inspect"}, workspace) as tools:
        seen = (await tools.call("state.inspect", {})).structured
        forker = pool.status()["fork_servers"][0]["pid"]
        print("PIDS", json.dumps({"child": seen["pid"], "fork_server": forker}), flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


async def test_kill_9_of_the_service_leaves_no_fork_server_and_no_child(tmp_path: Path) -> None:
    service = await anyio.open_process([sys.executable, "-c", DRIVER, str(tmp_path / "ws")], cwd=REPO, stderr=None)
    async with service:
        assert service.stdout is not None
        lines = BufferedByteReceiveStream(service.stdout)
        with anyio.fail_after(60):
            line = b""
            while not line.startswith(b"PIDS "):  # structlog writes its lines to stdout too
                line = await lines.receive_until(b"\n", 1 << 16)
        pids = json.loads(line.removeprefix(b"PIDS "))
        victims = [psutil.Process(pids["child"]), psutil.Process(pids["fork_server"])]
        assert all(p.is_running() for p in victims)
        service.send_signal(signal.SIGKILL)
        with anyio.fail_after(10):
            await service.wait()
    _, alive = await anyio.to_thread.run_sync(lambda: psutil.wait_procs(victims, timeout=15))
    assert alive == []
