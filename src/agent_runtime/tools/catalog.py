"""The tool catalogue: what every enabled server offers, for the planner and the approval policy.

Discovery starts a throwaway instance of each server in its own empty temporary directory (never a
task's workspace), lists its tools and stops it; all servers concurrently. ``${TASK_ID}`` is
``catalogue-discovery`` there, so an entry that uses it can be discovered (and planned with). Tools carry their
annotations (read-only, idempotent, destructive) with the registry's per-tool override applied.
A server that fails discovery is reported in ``status()`` and keeps its last good tool list, if any;
it never stops the others or the service.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import anyio
import structlog

from agent_runtime.errors import ConfigError, ToolServerError
from agent_runtime.settings import ToolSettings
from agent_runtime.tools.base import ToolInfo, split_name
from agent_runtime.tools.connection import connected
from agent_runtime.tools.registry import DISCOVERY_TASK_ID, HttpServer, Registry, StdioServer, resolve_launch

log = structlog.get_logger(__name__)


@dataclass
class ServerStatus:
    """The outcome of the latest discovery of one server."""

    server_id: str
    ok: bool = False
    error: str | None = None
    discovered_at: datetime | None = None
    """When the tool list was last fetched successfully."""
    attempted_at: datetime | None = None
    tools: list[ToolInfo] = field(default_factory=list)


class ToolCatalog:
    """Cached tool lists per enabled server. ``await refresh()`` at start-up and periodically."""

    def __init__(self, registry: Registry, settings: ToolSettings) -> None:
        self.registry = registry
        self.settings = settings
        self._servers: dict[str, ServerStatus] = {}
        self._lock = anyio.Lock()

    def tools(self) -> list[ToolInfo]:
        """Every discovered tool of every enabled server, in registry order."""
        return [tool for sid in self._enabled_ids() for tool in self._servers.get(sid, ServerStatus(sid)).tools]

    def get(self, qualified: str) -> ToolInfo | None:
        try:
            server_id, name = split_name(qualified)
        except ValueError:
            return None
        status = self._servers.get(server_id)
        if status is None or server_id not in self._enabled_ids():
            return None
        return next((t for t in status.tools if t.name == name), None)

    def status(self) -> dict[str, ServerStatus]:
        """Per enabled server: ok, error text (with stderr tail), discovered_at, tools."""
        return {sid: self._servers.get(sid, ServerStatus(sid)) for sid in self._enabled_ids()}

    def replace_registry(self, registry: Registry) -> None:
        """Switch to a reloaded registry; entries of removed or changed servers are forgotten."""
        old = self.registry
        self.registry = registry
        for sid in list(self._servers):
            if registry.get(sid) != old.get(sid):
                del self._servers[sid]

    async def refresh(self, server_ids: list[str] | None = None) -> dict[str, ServerStatus]:
        """Discover the given (default: all enabled) servers concurrently; never raises for one."""
        ids = self._enabled_ids() if server_ids is None else server_ids
        async with self._lock, anyio.create_task_group() as tg:
            for sid in ids:
                tg.start_soon(self._discover, sid)
        return self.status()

    async def refresh_forever(self) -> None:
        """Refresh every ``catalog_refresh_seconds`` until cancelled (run it as a background task)."""
        while True:
            await anyio.sleep(self.settings.catalog_refresh_seconds)
            await self.refresh()

    def _enabled_ids(self) -> list[str]:
        return [s.id for s in self.registry.enabled()]

    async def _discover(self, server_id: str) -> None:
        entry = self.registry.get(server_id)
        status = self._servers.setdefault(server_id, ServerStatus(server_id))
        status.attempted_at = datetime.now(UTC)
        if entry is None or not entry.enabled:
            status.ok, status.error, status.tools = False, "not an enabled server of the registry", []
            return
        try:
            tools = await self._list(entry)
        except (ToolServerError, ConfigError) as exc:
            status.ok, status.error = False, exc.message
            log.warning("tool_discovery_failed", server=server_id, error=exc.message)
            return
        if self.registry.get(server_id) != entry:
            return  # the registry was replaced meanwhile; this result describes the old entry
        status.ok, status.error, status.tools = True, None, tools
        status.discovered_at = status.attempted_at

    async def _list(self, entry: StdioServer | HttpServer) -> list[ToolInfo]:
        tmp = Path(await anyio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix=f"mcp-discover-{entry.id}-")))
        try:
            workspace = tmp / "workspace"
            await anyio.to_thread.run_sync(workspace.mkdir)
            spec = resolve_launch(
                entry, registry=self.registry, settings=self.settings, workspace=workspace, task_id=DISCOVERY_TASK_ID
            )
            log = tmp / "stderr.log" if isinstance(entry, StdioServer) else None
            async with connected(spec, stderr_path=log) as conn:
                return list(conn.tools)
        finally:
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(tmp, ignore_errors=True))
