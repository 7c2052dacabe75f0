"""Shared servers (``scope: shared``): one long-lived instance serves every task's calls."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import psutil
import pytest

from agent_runtime.errors import ConfigError, ToolNotAllowedError, ToolServerError
from agent_runtime.settings import ToolSettings
from agent_runtime.tools.pool import TaskTools, ToolPool
from agent_runtime.tools.processes import kill_process
from agent_runtime.tools.shared import TASK_META_KEY
from tests.tools.tool_helpers import example_entry, make_registry, marked_children, running_pool, script_entry


async def whoami(tools: TaskTools) -> dict[str, object]:
    result = await tools.call("tiny.whoami", {})
    assert not result.is_error, result.text
    seen: dict[str, object] = json.loads(result.text)
    return seen


async def ready(pool: ToolPool, server_id: str, count: int = 1) -> None:
    with anyio.fail_after(30):
        await pool.wait_warm()
    assert pool.status()["shared"][server_id]["ready"] == count


async def test_one_instance_serves_every_tasks_calls_with_the_task_id_in_meta(
    tool_settings: ToolSettings, tmp_path: Path
) -> None:
    registry = make_registry(script_entry("tiny", "tiny_server.py", scope="shared"))
    async with running_pool(registry, tool_settings) as pool:
        await ready(pool, "tiny")
        (instance,) = marked_children()
        async with (
            pool.open_task("task-a", ["tiny"], {"tiny.whoami", "tiny.echo"}, tmp_path / "a") as a,
            pool.open_task("task-b", ["tiny"], {"tiny.echo"}, tmp_path / "b") as b,
        ):
            assert a.failed_servers() == b.failed_servers() == {}
            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(b.call, "tiny.echo", {"text": str(n)})
            seen = await whoami(a)
            assert seen == {"pid": instance.pid, "meta": {TASK_META_KEY: "task-a"}}
            with pytest.raises(ToolNotAllowedError):  # B's allow-list holds at the pool boundary
                await b.call("tiny.whoami", {})
            assert marked_children() == [instance]  # no per-task process was started
        assert pool.status()["shared"]["tiny"]["calls"] == 21
        assert instance.is_running()  # the tasks ended; the shared instance did not


async def test_a_crashed_instance_fails_its_calls_in_flight_and_is_restarted(
    tool_settings: ToolSettings, tmp_path: Path
) -> None:
    registry = make_registry(example_entry(scope="shared"))
    async with running_pool(registry, tool_settings) as pool:
        await ready(pool, "example")
        (first,) = marked_children()
        async with pool.open_task("task-x", ["example"], {"example.wait", "example.echo"}, tmp_path / "x") as tools:

            async def kill_on_first_step(progress: float, total: float | None, message: str | None) -> None:
                if progress == 1:
                    kill_process(psutil.Process(first.pid))

            with anyio.fail_after(20), pytest.raises(ToolServerError, match="during a call to 'wait'"):
                await tools.call("example.wait", {"seconds": 20, "steps": 20}, on_progress=kill_on_first_step)
            with anyio.fail_after(40):  # the next call waits for the restarted instance
                assert (await tools.call("example.echo", {"text": "back"})).text == "back"
        (second,) = marked_children()
        assert second.pid != first.pid
        assert pool.status()["shared"]["example"]["restarts"] >= 1


async def test_calls_spread_over_the_instances_of_a_shared_server(tool_settings: ToolSettings, tmp_path: Path) -> None:
    registry = make_registry(script_entry("tiny", "tiny_server.py", scope="shared", instances=2))
    async with running_pool(registry, tool_settings) as pool:
        await ready(pool, "tiny", count=2)
        pids: set[object] = set()
        async with pool.open_task("task-s", ["tiny"], {"tiny.whoami"}, tmp_path / "s") as tools:

            async def one() -> None:
                pids.add((await whoami(tools))["pid"])

            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(one)
        assert pids == {p.pid for p in marked_children()}
        assert len(pids) == 2


async def test_a_task_with_its_own_env_cannot_use_a_shared_server(tool_settings: ToolSettings, tmp_path: Path) -> None:
    registry = make_registry(script_entry("tiny", "tiny_server.py", scope="shared"))
    async with (
        running_pool(registry, tool_settings) as pool,
        pool.open_task("task-e", ["tiny"], {"tiny.echo"}, tmp_path, env={"TOKEN": "per-task"}) as tools,
    ):
        assert "cannot take this task's env" in tools.failed_servers()["tiny"]
        with pytest.raises(ToolServerError, match="cannot take this task's env"):
            await tools.call("tiny.echo", {"text": "x"})


@pytest.mark.parametrize(
    ("extra", "config", "problem"),
    [
        ({}, {"command": "x", "args": ["${WORKSPACE}"]}, "cannot take ${WORKSPACE} or ${TASK_ID}"),
        ({}, {"command": "x", "env": {"T": "${TASK_ID}"}}, "cannot take ${WORKSPACE} or ${TASK_ID}"),
        ({}, {"command": "x", "cwd": "sub"}, "cannot take a cwd"),
        ({"prewarm": 1}, {"command": "x"}, "prewarm applies to scope: task servers only"),
    ],
)
def test_shared_is_refused_for_servers_that_depend_on_the_task(
    extra: dict[str, object], config: dict[str, object], problem: str
) -> None:
    entry = {"id": "s", "type": "local_stdio", "scope": "shared", "config": config, **extra}
    with pytest.raises(ConfigError) as info:
        make_registry(entry)
    assert problem in info.value.message
    assert "servers[0] (id 's')" in info.value.message
