"""Warm instances: pre-started in a private empty directory that becomes the task's workspace."""

from __future__ import annotations

import anyio
import psutil

from agent_runtime.settings import ToolSettings
from agent_runtime.tools.workspace import Workspaces
from tests.tools.tool_helpers import (
    example_entry,
    instance_pid,
    make_registry,
    marked_children,
    running_pool,
    script_entry,
)

NOTES = {"example.write_note", "example.list_notes", "example.read_note"}


def warm_pids() -> set[int]:
    return {p.pid for p in marked_children()}


async def test_a_warm_instance_is_handed_to_one_task_in_that_tasks_workspace(
    tool_settings: ToolSettings,
) -> None:
    spaces = Workspaces(tool_settings)
    registry = make_registry(example_entry(prewarm=1))
    with anyio.fail_after(60):
        async with running_pool(registry, tool_settings, wait_for_warm=True) as pool:
            assert pool.status()["warm"]["servers"]["example"]["ready"] == 1
            (warm_pid,) = warm_pids()
            first_ws = spaces.create("first")
            async with pool.open_task("first", ["example"], NOTES, first_ws) as first:
                assert instance_pid(first_ws) == warm_pid
                assert pool.status()["warm"]["handed_out"] == 1
                await first.call("example.write_note", {"name": "a", "text": "first's"})
                assert (first_ws / "a.txt").read_text(encoding="utf-8") == "first's"
                assert psutil.Process(warm_pid).cwd() == str(first_ws)

                await pool.wait_warm()  # a replacement was started in the background
                assert pool.status()["warm"]["servers"]["example"]["ready"] == 1
                (replacement,) = warm_pids() - {warm_pid}

                # A workspace that already holds files gets a cold start; the warm one stays idle.
                second_ws = spaces.create("second")
                (second_ws / "input.txt").write_text("given", encoding="utf-8")
                async with pool.open_task("second", ["example"], NOTES, second_ws) as second:
                    assert instance_pid(second_ws) not in (warm_pid, replacement)
                    assert (await second.call("example.list_notes", {})).structured == {"result": ["input"]}
                assert pool.status()["warm"]["handed_out"] == 1

            # The handed-out instance is never returned to the pool: it stopped with its task.
            assert not psutil.pid_exists(warm_pid) or psutil.Process(warm_pid).status() == psutil.STATUS_ZOMBIE
            third_ws = spaces.create("third")
            async with pool.open_task("third", ["example"], NOTES, third_ws) as third:
                assert instance_pid(third_ws) == replacement
                assert (await third.call("example.list_notes", {})).structured == {"result": []}
    assert list(spaces.warm_root.iterdir()) == []  # idle instances' directories and logs are removed


async def test_replacing_the_registry_stops_warm_instances_no_longer_wanted(
    tool_settings: ToolSettings,
) -> None:
    with anyio.fail_after(60):
        async with running_pool(make_registry(example_entry(prewarm=2)), tool_settings, wait_for_warm=True) as pool:
            assert len(warm_pids()) == 2
            pool.replace_registry(make_registry(example_entry(prewarm=0)))
            await pool.wait_warm()
            assert warm_pids() == set()
            assert pool.status()["warm"]["servers"] == {}


async def test_an_instance_idle_past_the_limit_is_replaced_by_a_fresh_one(tool_settings: ToolSettings) -> None:
    settings = tool_settings.model_copy(update={"warm_max_idle_seconds": 3600.0})
    registry = make_registry(script_entry("tiny", "tiny_server.py", prewarm=1))
    with anyio.fail_after(60):
        async with running_pool(registry, settings, wait_for_warm=True) as pool:
            (old_pid,) = warm_pids()
            assert pool.warm.recycle_idle(3600.0) == 0  # not idle long enough
            assert pool.warm.recycle_idle(0.0) == 1  # the idle limit passed: replace it
            await pool.wait_warm()
            status = pool.status()["warm"]
            assert status["recycled_idle"] == 1 and status["servers"]["tiny"]["ready"] == 1
            (new_pid,) = warm_pids()
            assert new_pid != old_pid  # the old instance was stopped (marked_children skips zombies)
    assert marked_children() == []


async def test_with_prewarm_one_consecutive_tasks_each_find_a_ready_instance(tool_settings: ToolSettings) -> None:
    registry = make_registry(script_entry("tiny", "tiny_server.py", prewarm=1))
    with anyio.fail_after(60):
        async with running_pool(registry, tool_settings, wait_for_warm=True) as pool:
            for n in range(1, 6):
                workspace = pool.workspaces.create(f"task_{n}")
                async with pool.open_task(f"task_{n}", ["tiny"], {"tiny.echo"}, workspace) as tools:
                    status = pool.status()["warm"]
                    assert status["handed_out"] == n and status["missed"] == 0
                    # The replacement started at hand-out, while this task still runs.
                    assert status["servers"]["tiny"]["starting"] + status["servers"]["tiny"]["ready"] == 1
                    assert (await tools.call("tiny.echo", {"text": f"hi {n}"})).text == f"hi {n}"
                await pool.wait_warm()
                assert pool.status()["warm"]["servers"]["tiny"]["ready"] == 1
            assert pool.status()["warm"]["missed"] == 0
    assert marked_children() == []


async def test_a_refill_waits_for_a_free_process_slot_and_starts_when_one_is_given_back(
    tool_settings: ToolSettings,
) -> None:
    settings = tool_settings.model_copy(update={"max_server_processes": 1})
    registry = make_registry(script_entry("tiny", "tiny_server.py", prewarm=1))
    with anyio.fail_after(60):
        async with running_pool(registry, settings, wait_for_warm=True) as pool:
            workspace = pool.workspaces.create("only")
            async with pool.open_task("only", ["tiny"], {"tiny.echo"}, workspace) as tools:
                status = pool.status()
                assert status["live_processes"] == 1  # the handed-out instance holds the one slot
                assert status["warm"]["servers"]["tiny"] == {
                    "target": 1,
                    "ready": 0,
                    "starting": 0,
                    "last_error": None,
                }
                assert (await tools.call("tiny.echo", {"text": "x"})).text == "x"
            await pool.wait_warm()  # the slot came back with the task's end: the refill ran
            status = pool.status()
            assert status["warm"]["servers"]["tiny"]["ready"] == 1 and status["live_processes"] == 1
    assert marked_children() == []
