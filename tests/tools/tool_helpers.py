"""Helpers shared by the tool tests (imported as ``tool_helpers``; fixtures are in conftest.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil

from agent_runtime.settings import ToolSettings
from agent_runtime.tools.forkserver import FORK_SERVER_ENV
from agent_runtime.tools.pool import ToolPool
from agent_runtime.tools.processes import MARKER_ENV
from agent_runtime.tools.registry import Registry

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SERVER = REPO / "examples" / "mcp_server" / "server.py"
SCRIPTS = Path(__file__).resolve().parent / "servers"
TIME_SERVER = REPO / ".tools" / "mcp-time-venv" / "bin" / "mcp-server-time"
GIT_SERVER = REPO / ".tools" / "mcp-git-venv" / "bin" / "mcp-server-git"
FS_SERVER = REPO / ".tools" / "node" / "node_modules" / ".bin" / "mcp-server-filesystem"
INSTALL_HINT = "run scripts/install-test-servers.sh to install it"


def example_entry(server_id: str = "example", **extra: Any) -> dict[str, Any]:
    """A registry entry for our example server over stdio, run by the test interpreter."""
    entry: dict[str, Any] = {
        "id": server_id,
        "type": "local_stdio",
        "config": {"command": "${PYTHON}", "args": ["${REGISTRY_DIR}/examples/mcp_server/server.py"]},
    }
    entry.update(extra)
    return entry


def script_entry(server_id: str, script: str, **extra: Any) -> dict[str, Any]:
    """A registry entry for one of the misbehaving scripts in tests/tools/servers."""
    entry: dict[str, Any] = {
        "id": server_id,
        "type": "local_stdio",
        "config": {"command": "${PYTHON}", "args": [str(SCRIPTS / script)]},
    }
    entry.update(extra)
    return entry


def make_registry(*entries: dict[str, Any]) -> Registry:
    return Registry.from_data({"servers": list(entries)}, base_dir=REPO)


def read_call_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def load_example_module() -> ModuleType:
    """Import examples/mcp_server/server.py (not a package) for in-process tests."""
    spec = importlib.util.spec_from_file_location("example_mcp_server", EXAMPLE_SERVER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _marked(*, fork_servers: bool) -> list[psutil.Process]:
    me = os.getpid()
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            env = proc.environ()
            if MARKER_ENV not in env or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            # A fork server is our own child; its children inherit its start-up environment.
            is_fork_server = FORK_SERVER_ENV in env and proc.ppid() == me
            if is_fork_server == fork_servers:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def marked_children() -> list[psutil.Process]:
    """Our descendant processes that are tool server instances, spawned or forked (they carry the
    instance marker); fork servers are not instances."""
    return _marked(fork_servers=False)


def fork_servers() -> list[psutil.Process]:
    """Our fork-server processes (the parents of forked instances)."""
    return _marked(fork_servers=True)


def instance_pid(workspace: Path) -> int:
    """The pid of the one server instance working in ``workspace`` (its current directory)."""
    found: list[int] = []
    for proc in marked_children():
        try:
            if Path(proc.cwd()) == workspace.resolve():
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    assert len(found) == 1, f"expected one server instance in {workspace}, found {found}"
    return found[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def running_pool(registry: Registry, settings: ToolSettings, **start: Any) -> AsyncIterator[ToolPool]:
    """A started ToolPool that is always closed, even when the test fails."""
    pool = ToolPool(registry, settings)
    await pool.start(**start)
    try:
        yield pool
    finally:
        await pool.aclose()
