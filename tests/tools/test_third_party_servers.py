"""Third-party MCP servers through ToolPool: mcp-server-time and mcp-server-git (PyPI, each in its
own virtualenv, started by their fork servers) and server-filesystem (npm, spawned).

Both are installed by ``scripts/install-test-servers.sh`` under ``.tools/``; absent, these tests
skip and say how to install them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_runtime.settings import ToolSettings
from agent_runtime.tools.catalog import ToolCatalog
from agent_runtime.tools.workspace import Workspaces
from tests.tools.tool_helpers import (
    FS_SERVER,
    GIT_SERVER,
    INSTALL_HINT,
    TIME_SERVER,
    make_registry,
    running_pool,
)

needs_time = pytest.mark.skipif(not TIME_SERVER.exists(), reason=f"mcp-server-time not installed; {INSTALL_HINT}")
needs_git = pytest.mark.skipif(not GIT_SERVER.exists(), reason=f"mcp-server-git not installed; {INSTALL_HINT}")
needs_fs = pytest.mark.skipif(
    not FS_SERVER.exists(), reason=f"@modelcontextprotocol/server-filesystem not installed; {INSTALL_HINT}"
)


def time_entry() -> dict[str, Any]:
    return {
        "id": "time",
        "type": "local_stdio",
        "config": {
            "command": ".tools/mcp-time-venv/bin/mcp-server-time",
            "args": ["--local-timezone", "UTC"],
        },
    }


def files_entry() -> dict[str, Any]:
    return {
        "id": "files",
        "type": "local_stdio",
        "config": {
            "command": ".tools/node/node_modules/.bin/mcp-server-filesystem",
            "args": ["${WORKSPACE}"],
        },
        "tools": {"write_file": {"idempotent": True}},
    }


@needs_time
async def test_mcp_server_time_answers_through_the_pool(tool_settings: ToolSettings, tmp_path: Path) -> None:
    allowed = {"time.get_current_time", "time.convert_time"}
    async with (
        running_pool(make_registry(time_entry()), tool_settings) as pool,
        pool.open_task("t", ["time"], allowed, tmp_path) as tools,
    ):
        assert tools.failed_servers() == {}
        with anyio.fail_after(20):
            now = await tools.call("time.get_current_time", {"timezone": "UTC"})
        assert not now.is_error
        assert now.structured is not None
        assert now.structured["timezone"] == "UTC"
        bad = await tools.call("time.get_current_time", {"timezone": "Mars/Olympus_Mons"})
        assert bad.is_error
        assert "Invalid timezone" in bad.text
        (fork_server,) = pool.status()["fork_servers"]
        assert fork_server["entry_point"] == "mcp_server_time"
        assert fork_server["interpreter"].startswith(str(TIME_SERVER.parent))  # the server's own venv
        assert fork_server["forked"] == 1


@needs_git
async def test_mcp_server_git_answers_through_its_fork_server(tool_settings: ToolSettings, tmp_path: Path) -> None:
    entry = {"id": "git", "type": "local_stdio", "config": {"command": ".tools/mcp-git-venv/bin/mcp-server-git"}}
    async with running_pool(make_registry(entry), tool_settings) as pool:
        for name in ("one", "two"):
            workspace = pool.workspaces.create(f"git-{name}")
            await anyio.run_process(["git", "init", "--quiet", str(workspace)])
            (workspace / f"{name}.txt").write_text(name, encoding="utf-8")
            async with pool.open_task(f"git-{name}", ["git"], {"git.git_status"}, workspace) as tools:
                assert tools.failed_servers() == {}
                with anyio.fail_after(20):
                    status = await tools.call("git.git_status", {"repo_path": str(workspace)})
                assert not status.is_error, status.text
                assert f"{name}.txt" in status.text
        (fork_server,) = pool.status()["fork_servers"]
        assert (fork_server["entry_point"], fork_server["forked"]) == ("mcp_server_git", 2)


@needs_fs
async def test_server_filesystem_is_rooted_in_the_task_workspace(tool_settings: ToolSettings) -> None:
    spaces = Workspaces(tool_settings)
    ws_a, ws_b = spaces.create("fs-a"), spaces.create("fs-b")
    allowed = {"files.write_file", "files.read_text_file", "files.list_directory"}
    async with (
        running_pool(make_registry(files_entry()), tool_settings) as pool,
        pool.open_task("fs-a", ["files"], allowed, ws_a) as a,
        pool.open_task("fs-b", ["files"], allowed, ws_b) as b,
    ):
        assert a.failed_servers() == {}
        assert b.failed_servers() == {}
        wrote = await a.call("files.write_file", {"path": str(ws_a / "report.md"), "content": "# A"})
        assert not wrote.is_error, wrote.text
        assert (ws_a / "report.md").read_text(encoding="utf-8") == "# A"
        listing = await a.call("files.list_directory", {"path": str(ws_a)})
        assert "report.md" in listing.text
        # Task B's server is rooted in B's workspace: A's file and the host are out of reach.
        peek = await b.call("files.read_text_file", {"path": str(ws_a / "report.md")})
        assert peek.is_error
        assert "Access denied" in peek.text
        host = await b.call("files.read_text_file", {"path": "/etc/hostname"})
        assert host.is_error
        own = await b.call("files.list_directory", {"path": str(ws_b)})
        assert "report.md" not in own.text


@needs_time
@needs_fs
async def test_third_party_tools_are_discovered_with_annotations_and_overrides(tool_settings: ToolSettings) -> None:
    catalog = ToolCatalog(make_registry(time_entry(), files_entry()), tool_settings)
    with anyio.fail_after(60):
        status = await catalog.refresh()
    assert status["time"].ok and status["files"].ok, (status["time"].error, status["files"].error)
    now = catalog.get("time.get_current_time")
    assert now is not None and now.read_only
    write = catalog.get("files.write_file")
    assert write is not None and write.safe_to_repeat  # the registry override
