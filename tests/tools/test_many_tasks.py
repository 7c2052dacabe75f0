"""Lifecycle hygiene at volume: 200 task-scoped server lifecycles (forked by a fork server, or
spawned) leave no process behind."""

from __future__ import annotations

from pathlib import Path

import anyio
import psutil
import pytest

from agent_runtime.settings import ToolSettings
from tests.tools.tool_helpers import instance_pid, make_registry, marked_children, running_pool, script_entry

TASKS = 200


@pytest.mark.parametrize("fork_server", [True, False], ids=["forked", "spawned"])
async def test_two_hundred_tasks_leave_no_server_process_behind(tmp_path: Path, fork_server: bool) -> None:
    settings = ToolSettings(workspace_root=tmp_path / "ws", connect_timeout_seconds=30, max_server_processes=16)
    registry = make_registry(script_entry("tiny", "tiny_server.py", fork_server=fork_server))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    seen_pids: set[int] = set()
    limiter = anyio.Semaphore(10)

    async with running_pool(registry, settings) as pool:

        async def one_task(n: int) -> None:
            async with limiter:
                task_id = f"task_{n:04d}"
                workspace = pool.workspaces.create(task_id)
                async with pool.open_task(task_id, ["tiny"], {"tiny.echo"}, workspace) as tools:
                    result = await tools.call("tiny.echo", {"text": f"hello {n}"})
                    assert result.text == f"hello {n}" and not result.is_error
                    seen_pids.add(instance_pid(workspace))
                await pool.workspaces.remove(task_id)

        with anyio.fail_after(240):
            async with anyio.create_task_group() as tg:
                for n in range(TASKS):
                    tg.start_soon(one_task, n)
        assert pool.status()["live_processes"] == 0
        forked = sum(s.get("forked", 0) for s in pool.status()["fork_servers"])
        assert forked == (TASKS if fork_server else 0)

    assert len(seen_pids) == TASKS  # every task had its own server process
    assert marked_children() == []
    leftover = {p.pid for p in psutil.Process().children(recursive=True)} - before
    alive = [pid for pid in leftover if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert not any((tmp_path / "ws").glob("task_*"))
