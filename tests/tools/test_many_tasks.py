"""Lifecycle hygiene at volume: 200 task-scoped server lifecycles leave no child process behind."""

from __future__ import annotations

from pathlib import Path

import anyio
import psutil

from agent_runtime.settings import ToolSettings
from tests.tools.tool_helpers import make_registry, marked_children, running_pool, script_entry

TASKS = 200


async def test_two_hundred_tasks_leave_no_server_process_behind(tmp_path: Path) -> None:
    settings = ToolSettings(workspace_root=tmp_path / "ws", connect_timeout_seconds=30, max_server_processes=16)
    registry = make_registry(script_entry("tiny", "tiny_server.py"))
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
                    pid = tools.server_pid("tiny")
                    assert pid is not None
                    seen_pids.add(pid)
                await pool.workspaces.remove(task_id)

        with anyio.fail_after(240):
            async with anyio.create_task_group() as tg:
                for n in range(TASKS):
                    tg.start_soon(one_task, n)
        assert pool.status()["live_processes"] == 0

    assert len(seen_pids) == TASKS  # every task had its own server process
    assert marked_children() == []
    leftover = {p.pid for p in psutil.Process().children(recursive=True)} - before
    alive = [pid for pid in leftover if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert not any((tmp_path / "ws").glob("task_*"))
