"""Third-party MCP servers through ToolPool: mcp-server-time (PyPI) and server-filesystem (npm).

Both are installed by ``scripts/install-test-servers.sh`` under ``.tools/``; absent, these tests
skip and say how to install them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_runtime.settings import ToolSettings
from agent_runtime.tools.workspace import Workspaces
from tests.tools.tool_helpers import FS_SERVER, INSTALL_HINT, TIME_SERVER, make_registry, running_pool

needs_time = pytest.mark.skipif(not TIME_SERVER.exists(), reason=f"mcp-server-time not installed; {INSTALL_HINT}")
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
        specs = {i.name: i for i in tools.tool_specs()}
        assert specs["get_current_time"].read_only
        with anyio.fail_after(20):
            now = await tools.call("time.get_current_time", {"timezone": "UTC"})
        assert not now.is_error
        assert now.structured is not None
        assert now.structured["timezone"] == "UTC"
        bad = await tools.call("time.get_current_time", {"timezone": "Mars/Olympus_Mons"})
        assert bad.is_error
        assert "Invalid timezone" in bad.text


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
        write_spec = a.tool_specs(["files.write_file"])[0]
        assert write_spec.safe_to_repeat  # the registry override
