"""Fixtures for the tool tests: settings, a call log, an HTTP example server, a leak check.

Everything runs real servers: the example server (in-process or over stdio/HTTP), tiny misbehaving
scripts in ``servers/``, and the third-party servers that ``scripts/install-test-servers.sh`` puts
under ``.tools/`` (tests using them skip, saying so, when they are absent).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from agent_runtime.settings import ToolSettings
from tests.tools.tool_helpers import EXAMPLE_SERVER, fork_servers, free_port, marked_children


@pytest.fixture(autouse=True)
def no_leftover_servers() -> Iterator[None]:
    """Every test must leave no tool server process behind (checked after all teardown)."""
    yield
    leftovers = marked_children() + fork_servers()
    assert not leftovers, f"tool server processes left running: {[p.pid for p in leftovers]}"


@pytest.fixture
def tool_settings(tmp_path: Path) -> ToolSettings:
    return ToolSettings(
        workspace_root=tmp_path / "workspaces",
        connect_timeout_seconds=30.0,
        call_timeout_seconds=20.0,
        max_restarts_per_step=1,
    )


@pytest.fixture
def call_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A call-log path, exported so registry entries can reference ``${EXAMPLE_MCP_CALL_LOG}``."""
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv("EXAMPLE_MCP_CALL_LOG", str(path))
    return path


@pytest.fixture
async def http_example_server(tmp_path: Path) -> AsyncIterator[str]:
    """The example server over streamable HTTP on 127.0.0.1; yields its endpoint URL."""
    port = free_port()
    env = {**os.environ, "EXAMPLE_MCP_CALL_LOG": str(tmp_path / "http-calls.jsonl")}
    process: Process = await anyio.open_process(
        [sys.executable, str(EXAMPLE_SERVER), "--http", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=None,
        stderr=-1,  # subprocess.PIPE
    )
    assert process.stderr is not None
    seen = ""
    try:
        with anyio.fail_after(30):
            async for chunk in TextReceiveStream(process.stderr):
                seen += chunk
                if "Uvicorn running on" in seen:
                    break
        # Not drained afterwards: the few log lines of a test fit easily in the pipe buffer.
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await process.wait()
        await process.aclose()
