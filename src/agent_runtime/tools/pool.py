"""Task-scoped MCP tool servers: the service-wide ``ToolPool`` and one task's ``TaskTools``.

``async with pool.open_task(...) as tools`` starts exactly the servers a task needs, concurrently,
in the task's workspace, and stops them all when the block ends. The approved plan's allow-list is
enforced here, at the pool boundary: a name not in ``allowed_tools`` never reaches a server. A
server that fails to start is reported by ``failed_servers()`` without aborting the others; a server
that crashes is restarted on its next call, at most ``max_restarts_per_step`` times per step. The
crashed call itself is not repeated: whether a call may run twice is the executor's decision.

The pool caps live server processes at ``max_server_processes`` (a start waits up to its connect
timeout for a slot, then fails clearly) and keeps the warm instances of ``warm.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from agent_runtime.errors import ConfigError, ToolNotAllowedError, ToolServerError
from agent_runtime.settings import ToolSettings
from agent_runtime.tools.base import ToolInfo, ToolResult, split_name
from agent_runtime.tools.connection import ProgressCallback, ServerConnection
from agent_runtime.tools.registry import LaunchSpec, Registry, StdioServer, resolve_launch
from agent_runtime.tools.warm import WarmPool
from agent_runtime.tools.workspace import Workspaces

logger = logging.getLogger(__name__)


class ToolPool:
    """Starts and stops tool server instances for tasks; one per service."""

    def __init__(self, registry: Registry, settings: ToolSettings) -> None:
        self.registry = registry
        self.settings = settings
        self.workspaces = Workspaces(settings)
        self._slots = anyio.Semaphore(settings.max_server_processes)
        self._live: set[ServerConnection] = set()
        self._open_tasks: set[TaskTools] = set()
        self._warm = WarmPool(self)
        self._releasing: set[asyncio.Task[None]] = set()
        self._closed = False

    async def start(self, *, wait_for_warm: bool = False) -> None:
        """Start the warm instances the registry asks for (``prewarm: N``), optionally waiting."""
        self._closed = False
        self._warm.sync(self.registry)
        if wait_for_warm:
            await self.wait_warm()

    def recycle_idle_warm(self, max_idle: float) -> int:
        """Replace warm instances idle for longer than ``max_idle`` seconds (done periodically when
        ``tools.warm_max_idle_seconds`` is set); return how many were replaced."""
        return self._warm.recycle_idle(max_idle)

    async def wait_warm(self) -> None:
        """Wait until no warm instance is starting (each one is then ready or failed)."""
        await self._warm.settle()

    async def aclose(self) -> None:
        """Stop every server this pool started: warm ones and those of still-open tasks."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self._warm.aclose()
            async with anyio.create_task_group() as tg:
                for conn in list(self._live):
                    tg.start_soon(self.release, conn)
            if self._releasing:
                await asyncio.wait(list(self._releasing))

    def replace_registry(self, registry: Registry) -> None:
        """Use ``registry`` for tasks opened from now on; warm instances follow the new entries."""
        self.registry = registry
        if not self._closed:
            self._warm.sync(registry)

    def live_by_server(self) -> dict[str, int]:
        """Live stdio server processes per registry entry (for the metrics gauge)."""
        counts: dict[str, int] = {}
        for conn in self._live:
            if conn.spec.transport == "local_stdio":
                counts[conn.spec.server_id] = counts.get(conn.spec.server_id, 0) + 1
        return counts

    def status(self) -> dict[str, Any]:
        """Counts for operators: live processes, open tasks, warm instances per server."""
        return {
            "live_processes": sum(1 for c in self._live if c.spec.transport == "local_stdio"),
            "live_connections": len(self._live),
            "max_server_processes": self.settings.max_server_processes,
            "open_tasks": len(self._open_tasks),
            "warm": self._warm.status(),
        }

    # --- instances -------------------------------------------------------------------------

    async def launch(
        self, spec: LaunchSpec, *, stderr_path: Path | None, wait_for_slot: bool = True
    ) -> ServerConnection:
        """Start one instance (taking a process slot for stdio); ToolServerError if it cannot."""
        if self._closed:
            raise ToolServerError(f"tool pool is closed; cannot start {spec.server_id!r}")
        needs_slot = spec.transport == "local_stdio"
        if needs_slot:
            await self._take_slot(spec, wait=wait_for_slot)
        conn = ServerConnection(spec, stderr_path=stderr_path)
        self._live.add(conn)
        try:
            await conn.start()
        except ToolServerError:
            # Report the failure now; a hung server's teardown (up to ~4 s) finishes in the background.
            self._release_later(conn)
            raise
        except BaseException:
            await self.release(conn)
            raise
        return conn

    def _release_later(self, conn: ServerConnection) -> None:
        task = asyncio.get_running_loop().create_task(self.release(conn), name=f"mcp-release:{conn.server_id}")
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def release(self, conn: ServerConnection) -> None:
        """Stop an instance and give its process slot back (idempotent)."""
        if conn not in self._live:
            return
        try:
            await conn.aclose()
        finally:
            if conn in self._live:
                self._live.discard(conn)
                if conn.spec.transport == "local_stdio":
                    self._slots.release()

    async def _take_slot(self, spec: LaunchSpec, *, wait: bool) -> None:
        if not wait:
            try:
                self._slots.acquire_nowait()
            except anyio.WouldBlock:
                raise ToolServerError("no free tool-server process slot") from None
            return
        with anyio.move_on_after(spec.connect_timeout):
            await self._slots.acquire()
            return
        raise ToolServerError(
            f"cannot start tool server {spec.server_id!r}: all {self.settings.max_server_processes} "
            "tool-server process slots (tools.max_server_processes) stayed busy for "
            f"{spec.connect_timeout:g} s",
            details={"server_id": spec.server_id},
        )

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
            if server.conn is None:
                failed[sid] = server.error or "not started"
            elif not server.conn.alive() and server.restarts >= limit:
                failed[sid] = server.conn.error or "stopped"
        return failed

    def tool_specs(self, names: Iterable[str] | None = None) -> list[ToolInfo]:
        """ToolInfo of allowed tools (all of them if ``names`` is None) that the servers listed."""
        wanted = set(self.allowed_tools if names is None else names)
        refused = wanted - self.allowed_tools
        if refused:
            raise ToolNotAllowedError(f"tools not allowed for task {self.task_id}: {sorted(refused)}")
        specs = []
        for server in self._servers.values():
            for info in server.conn.tools if server.conn is not None else []:
                if info.qualified_name in wanted:
                    specs.append(info)
        return specs

    def server_pid(self, server_id: str) -> int | None:
        """The process id of a stdio server's current instance (for operators and tests)."""
        server = self._servers.get(server_id)
        return server.conn.pid if server is not None and server.conn is not None else None

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
        conn = await self._usable(server)
        return await conn.call_tool(tool, arguments, timeout=timeout, on_progress=on_progress)

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
            logger.warning(
                "restarting tool server %r for task %s (%d/%d)",
                server.server_id,
                self.task_id,
                server.restarts,
                limit,
            )
            await self._pool.release(conn)
            server.conn = None
            await self._start(server)
            if server.conn is None:
                raise ToolServerError(server.error or "restart failed", details={"server_id": server.server_id})
            return server.conn

    # --- lifecycle -------------------------------------------------------------------------

    async def _start_all(self) -> None:
        warm = self._pool._warm.claim(self) if not self._env else {}
        async with anyio.create_task_group() as tg:
            for server in self._servers.values():
                if server.server_id in warm:
                    server.conn = warm[server.server_id]
                    server.starts += 1
                else:
                    tg.start_soon(self._start, server)
        failed = self.failed_servers()
        if failed:
            logger.warning("task %s: tool servers failed to start: %s", self.task_id, sorted(failed))

    async def _start(self, server: _Server) -> None:
        server.starts += 1
        entry = self._registry.get(server.server_id)
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
            log = self._pool.workspaces.logs_dir(self.task_id) / f"{server.server_id}-{server.starts}.stderr.log"
            server.conn = await self._pool.launch(spec, stderr_path=log if isinstance(entry, StdioServer) else None)
            server.error = None
        except (ToolServerError, ConfigError) as exc:
            server.error = exc.message
            logger.warning("task %s: tool server %r unavailable: %s", self.task_id, server.server_id, exc.message)

    async def _close_all(self) -> None:
        async with anyio.create_task_group() as tg:
            for server in self._servers.values():
                if server.conn is not None:
                    tg.start_soon(self._pool.release, server.conn)
