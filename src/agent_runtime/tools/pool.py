"""Task-scoped MCP tool servers: the service-wide ``ToolPool`` and one task's ``TaskTools``.

``async with pool.open_task(...) as tools`` starts exactly the servers a task needs, concurrently,
in the task's workspace, and stops them all when the block ends. The approved plan's allow-list is
enforced here, at the pool boundary: a name not in ``allowed_tools`` never reaches a server. A
server that fails to start is reported by ``failed_servers()`` without aborting the others; a server
that crashes is restarted on its next call, at most ``max_restarts_per_step`` times per step. The
crashed call itself is not repeated: whether a call may run twice is the executor's decision.

The pool caps live server processes at ``max_server_processes``: a task takes the slots of all its
stdio servers at once and waits for them as long as it takes (back-pressure, see ``launcher.py``);
a crashed server's restart reuses its slot. It keeps the warm instances of ``warm.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from agent_runtime.errors import ConfigError, ToolNotAllowedError, ToolServerError
from agent_runtime.settings import ToolSettings
from agent_runtime.tools.base import ToolResult, split_name
from agent_runtime.tools.launcher import Launcher
from agent_runtime.tools.registry import Registry, StdioServer, resolve_launch
from agent_runtime.tools.shared import TASK_META_KEY, SharedServer, SharedServers
from agent_runtime.tools.warm import WarmPool
from agent_runtime.tools.workspace import Workspaces

if TYPE_CHECKING:  # the MCP client is imported on first need (catalog.py, launcher.py)
    from agent_runtime.tools.connection import ProgressCallback, ServerConnection

log = structlog.get_logger(__name__)


class ToolPool:
    """Starts and stops tool server instances for tasks; one per service."""

    def __init__(self, registry: Registry, settings: ToolSettings) -> None:
        self.registry = registry
        self.settings = settings
        self.workspaces = Workspaces(settings)
        self.launcher = Launcher(settings)
        self.warm = WarmPool(self.launcher, self.workspaces, settings)
        self.shared = SharedServers(self.launcher, settings)
        self._open_tasks: set[TaskTools] = set()

    async def start(self, *, wait_for_warm: bool = False) -> None:
        """Start the warm instances the registry asks for (``prewarm: N``), optionally waiting."""
        self.launcher.reopen()
        self.warm.sync(self.registry)
        self.shared.sync(self.registry)
        if wait_for_warm:
            await self.wait_warm()

    async def wait_warm(self) -> None:
        """Wait until no warm instance is starting and every shared instance has made its first
        start attempt (each one is then ready or failed)."""
        await self.warm.settle()
        await self.shared.settle()

    async def aclose(self) -> None:
        """Stop every server this pool started: warm ones and those of still-open tasks."""
        self.launcher.closed = True  # no new instance from here on
        with anyio.CancelScope(shield=True):
            await self.warm.aclose()
            await self.shared.aclose()
            await self.launcher.aclose()

    def replace_registry(self, registry: Registry) -> None:
        """Use ``registry`` for tasks opened from now on; warm instances follow the new entries."""
        self.registry = registry
        if not self.launcher.closed:
            self.warm.sync(registry)
            self.shared.sync(registry)

    def live_by_server(self) -> dict[str, int]:
        """Live stdio server processes per registry entry (for the metrics gauge)."""
        return self.launcher.live_by_server()

    def status(self) -> dict[str, Any]:
        """Counts for operators: live processes, open tasks, warm instances per server."""
        return {
            **self.launcher.status(),
            "open_tasks": len(self._open_tasks),
            "warm": self.warm.status(),
            "shared": self.shared.status(),
        }

    def claim_warm(
        self, task_id: str, server_ids: list[str], workspace: Path, registry: Registry
    ) -> dict[str, ServerConnection]:
        """A warm instance for the task, if one fits (see ``warm.py``)."""
        return self.warm.claim(task_id, server_ids, workspace, registry)

    # --- tasks -----------------------------------------------------------------------------

    @asynccontextmanager
    async def open_task(
        self,
        task_id: str,
        server_ids: Iterable[str],
        allowed_tools: set[str],
        workspace: Path,
        env: Mapping[str, str] | None = None,
    ) -> AsyncIterator[TaskTools]:
        """Start the task's servers in ``workspace``; stop them all when the block ends.

        ``env`` is added to the environment of the task's stdio servers (over the registry's).
        """
        tools = TaskTools(self, task_id, list(dict.fromkeys(server_ids)), allowed_tools, workspace, env)
        self._open_tasks.add(tools)
        try:
            await tools._start_all()
            yield tools
        finally:
            self._open_tasks.discard(tools)
            with anyio.CancelScope(shield=True):
                await tools._close_all()


class _Server:
    """One server of one task: its current connection, or why it has none, and its restart count."""

    def __init__(self, server_id: str) -> None:
        self.server_id = server_id
        self.conn: ServerConnection | None = None
        self.shared: SharedServer | None = None
        self.error: str | None = None
        self.restarts = 0
        self.starts = 0
        self.lock = anyio.Lock()


class TaskTools:
    """The live tool servers of one task, behind its allow-list. Made by ``ToolPool.open_task``."""

    def __init__(
        self,
        pool: ToolPool,
        task_id: str,
        server_ids: list[str],
        allowed_tools: set[str],
        workspace: Path,
        env: Mapping[str, str] | None,
    ) -> None:
        self.task_id = task_id
        self.workspace = workspace
        self.allowed_tools = frozenset(allowed_tools)
        self._pool = pool
        self._registry = pool.registry
        self._env = dict(env or {})
        self._servers = {sid: _Server(sid) for sid in server_ids}

    # --- queries ---------------------------------------------------------------------------

    @property
    def server_ids(self) -> list[str]:
        """The servers opened for this task, in the order asked for."""
        return list(self._servers)

    @property
    def registry(self) -> Registry:
        """The registry snapshot this task was opened with (restarts use it too)."""
        return self._registry

    def failed_servers(self) -> dict[str, str]:
        """Servers without a usable connection (start failed, or crashed past the restart budget)."""
        limit = self._pool.settings.max_restarts_per_step
        failed = {}
        for sid, server in self._servers.items():
            if server.shared is not None:
                if not server.shared.usable():
                    failed[sid] = server.shared.last_error() or "no running instance"
            elif server.conn is None:
                failed[sid] = server.error or "not started"
            elif not server.conn.alive() and server.restarts >= limit:
                failed[sid] = server.conn.error or "stopped"
        return failed

    def new_step(self) -> None:
        """Reset the restart budget: call between steps when one TaskTools serves several steps."""
        for server in self._servers.values():
            server.restarts = 0

    # --- calls -----------------------------------------------------------------------------

    async def call(
        self,
        qualified_name: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> ToolResult:
        """Call ``server.tool``. Refused (ToolNotAllowedError) unless in the task's allow-list."""
        if qualified_name not in self.allowed_tools:
            raise ToolNotAllowedError(
                f"tool {qualified_name!r} is not in the approved plan's allow-list for task {self.task_id}",
                details={"tool": qualified_name},
            )
        server_id, tool = split_name(qualified_name)
        server = self._servers.get(server_id)
        if server is None:
            raise ToolNotAllowedError(
                f"tool {qualified_name!r}: server {server_id!r} was not opened for task {self.task_id}",
                details={"tool": qualified_name},
            )
        if server.shared is not None:
            return await server.shared.call(self.task_id, tool, arguments, timeout=timeout, on_progress=on_progress)
        conn = await self._usable(server)
        meta = {TASK_META_KEY: self.task_id}
        return await conn.call_tool(tool, arguments, timeout=timeout, on_progress=on_progress, meta=meta)

    async def _usable(self, server: _Server) -> ServerConnection:
        """The server's live connection, restarting a crashed one if the budget allows."""
        async with server.lock:
            conn = server.conn
            if conn is None:
                raise ToolServerError(server.error or "not started", details={"server_id": server.server_id})
            if conn.alive():
                return conn
            limit = self._pool.settings.max_restarts_per_step
            if server.restarts >= limit:
                raise ToolServerError(
                    f"{conn.error or 'tool server stopped'}\n(restart budget of {limit} per step used up)",
                    details={"server_id": server.server_id, "restart_budget_exhausted": True},
                )
            server.restarts += 1
            log.warning(
                "tool_server_restarting",
                server=server.server_id,
                task_id=self.task_id,
                restart=server.restarts,
                limit=limit,
            )
            await self._pool.launcher.release(conn, keep_slot=True)
            server.conn = None
            await self._start(server, held=conn.spec.transport == "local_stdio")
            if server.conn is None:
                raise ToolServerError(server.error or "restart failed", details={"server_id": server.server_id})
            return server.conn

    # --- lifecycle -------------------------------------------------------------------------

    async def _start_all(self) -> None:
        warm = {}
        if not self._env:
            warm = self._pool.claim_warm(self.task_id, self.server_ids, self.workspace, self._registry)
        cold: list[tuple[_Server, bool]] = []
        for server in self._servers.values():
            entry = self._registry.get(server.server_id)
            if entry is not None and entry.enabled and entry.scope == "shared":
                self._attach_shared(server)
            elif server.server_id in warm:
                server.conn = warm[server.server_id]
                server.starts += 1
            else:
                cold.append((server, isinstance(entry, StdioServer) and entry.enabled))
        try:
            await self._pool.launcher.reserve_slots(sum(held for _, held in cold), owner=f"task {self.task_id}")
        except ToolServerError as exc:  # more stdio servers than the cap: none of them can start
            for server, held in cold:
                if held:
                    server.starts += 1
                    server.error = exc.message
            cold = [(server, held) for server, held in cold if not held]
        async with anyio.create_task_group() as tg:
            for server, held in cold:
                tg.start_soon(self._start, server, held)
        failed = self.failed_servers()
        if failed:
            log.warning("tool_servers_failed_to_start", task_id=self.task_id, servers=sorted(failed))

    def _attach_shared(self, server: _Server) -> None:
        if self._env:
            server.error = (
                f"tool server {server.server_id!r} is shared by every task (scope: shared), so it cannot "
                "take this task's env"
            )
            return
        server.shared = self._pool.shared.get(server.server_id)
        if server.shared is None:
            server.error = f"shared tool server {server.server_id!r} is not running"

    async def _start(self, server: _Server, held: bool = False) -> None:
        """Start ``server``; ``held``: a process slot is already held for it (given back on failure)."""
        server.starts += 1
        entry = self._registry.get(server.server_id)
        launching = False
        try:
            if entry is None or not entry.enabled:
                state = "not in the tool registry" if entry is None else "disabled in the tool registry"
                raise ToolServerError(f"tool server {server.server_id!r} is {state}")
            spec = resolve_launch(
                entry,
                registry=self._registry,
                settings=self._pool.settings,
                workspace=self.workspace,
                extra_env=self._env,
                task_id=self.task_id,
            )
            logs = self._pool.workspaces.logs_dir(self.task_id)
            stderr_path = logs / f"{server.server_id}-{server.starts}.stderr.log"
            if held and spec.transport != "local_stdio":
                self._pool.launcher.give_back_slots(1)
                held = False
            launching = True
            server.conn = await self._pool.launcher.launch(
                spec,
                stderr_path=stderr_path if isinstance(entry, StdioServer) else None,
                slot="held" if held else "wait",
            )
            server.error = None
        except BaseException as exc:
            if held and not launching:
                self._pool.launcher.give_back_slots(1)
            if not isinstance(exc, ToolServerError | ConfigError):
                raise
            server.error = exc.message
            log.warning("tool_server_unavailable", task_id=self.task_id, server=server.server_id, error=exc.message)

    async def _close_all(self) -> None:
        async with anyio.create_task_group() as tg:
            for server in self._servers.values():
                if server.conn is not None:
                    tg.start_soon(self._pool.launcher.release, server.conn)
