"""Shared servers (``scope: shared``): long-lived instances that serve every task's calls.

A shared server runs ``instances: N`` instances for as long as it is in the registry; one MCP session
per instance carries the calls of many tasks at once (each call goes to the instance with the fewest
calls in flight, with the task id in the request's ``_meta``). Each task's allow-list is still
enforced by ``TaskTools.call`` before a call gets here. A crashed instance is restarted by its
supervisor with exponential backoff; the calls in flight on it fail with ``ToolServerError`` (so the
executor records ``tool_call_failed`` and applies its usual in-doubt rules).

The registry refuses ``shared`` for servers that take ``${WORKSPACE}``, ``${TASK_ID}`` or a ``cwd``,
and the pool refuses per-task ``env`` for them. A stdio instance runs in its own directory,
``<workspace_root>/.shared/<server id>``. A shared server sees every task's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from agent_runtime.errors import ConfigError, ToolServerError
from agent_runtime.settings import ToolSettings
from agent_runtime.tools.base import ToolResult
from agent_runtime.tools.launcher import Launcher
from agent_runtime.tools.registry import HttpServer, Registry, StdioServer, resolve_launch

if TYPE_CHECKING:
    from agent_runtime.tools.connection import ProgressCallback, ServerConnection

log = structlog.get_logger(__name__)

SHARED_DIR = ".shared"
TASK_META_KEY = "agent-runtime/task-id"
"""The ``_meta`` key of every tool call that names the calling task."""
BACKOFF_START_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 60.0
"""An instance that ran this long resets the backoff when it crashes."""
HEALTH_CHECK_SECONDS = 1.0


class _Instance:
    def __init__(self, index: int) -> None:
        self.index = index
        self.conn: ServerConnection | None = None
        self.in_flight = 0
        self.restarts = 0
        self.error: str | None = None


class SharedServer:
    """The instances of one shared registry entry and their supervisors."""

    def __init__(self, entry: StdioServer | HttpServer, registry: Registry, launcher: Launcher, root: Path) -> None:
        self.entry = entry
        self._registry = registry
        self._launcher = launcher
        self._directory = root / entry.id
        self._instances = [_Instance(i) for i in range(entry.instances)]
        self._ready = anyio.Event()
        self._first_attempts = 0
        self._settled = anyio.Event()
        self._supervisors: list[asyncio.Task[None]] = []
        self.calls = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for instance in self._instances:
            name = f"mcp-shared:{self.entry.id}:{instance.index}"
            self._supervisors.append(loop.create_task(self._supervise(instance), name=name))

    def usable(self) -> bool:
        """False when no instance is ready and the last start failed (callers then fail at once)."""
        return any(i.conn is not None and i.conn.alive() for i in self._instances) or not any(
            i.error for i in self._instances
        )

    def last_error(self) -> str | None:
        return next((i.error for i in self._instances if i.error), None)

    async def settle(self) -> None:
        """Wait until every instance has made its first start attempt (ready or failed)."""
        await self._settled.wait()

    async def call(
        self,
        task_id: str,
        tool: str,
        arguments: dict[str, Any] | None,
        *,
        timeout: float | None,
        on_progress: ProgressCallback | None,
    ) -> ToolResult:
        """Call ``tool`` for ``task_id`` on the least busy ready instance (waiting up to the connect
        timeout for one while all are restarting)."""
        instance = await self._pick()
        conn = instance.conn
        assert conn is not None
        instance.in_flight += 1
        self.calls += 1
        try:
            return await conn.call_tool(
                tool, arguments, timeout=timeout, on_progress=on_progress, meta={TASK_META_KEY: task_id}
            )
        finally:
            instance.in_flight -= 1

    async def _pick(self) -> _Instance:
        deadline = anyio.current_time() + (
            self.entry.connect_timeout_seconds or self._launcher.settings.connect_timeout_seconds
        )
        while True:
            ready = [i for i in self._instances if i.conn is not None and i.conn.alive()]
            if ready:
                return min(ready, key=lambda i: i.in_flight)
            self._ready = anyio.Event() if self._ready.is_set() else self._ready
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                await self._ready.wait()
            if anyio.current_time() >= deadline:
                raise ToolServerError(
                    f"shared tool server {self.entry.id!r} has no running instance"
                    + (f": {self.last_error()}" if self.last_error() else ""),
                    details={"server_id": self.entry.id},
                )

    def status(self) -> dict[str, Any]:
        return {
            "instances": len(self._instances),
            "ready": sum(1 for i in self._instances if i.conn is not None and i.conn.alive()),
            "in_flight": sum(i.in_flight for i in self._instances),
            "calls": self.calls,
            "restarts": sum(i.restarts for i in self._instances),
            "last_error": self.last_error(),
        }

    async def aclose(self) -> None:
        for task in self._supervisors:
            task.cancel()
        for task in self._supervisors:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._supervisors = []

    async def _supervise(self, instance: _Instance) -> None:
        backoff = BACKOFF_START_SECONDS
        try:
            while True:
                started = time.monotonic()
                conn = await self._start(instance)
                if conn is not None:
                    instance.conn = conn
                    self._ready.set()
                    while conn.alive():  # checked each second; a call on a dead instance notices at once
                        with anyio.move_on_after(HEALTH_CHECK_SECONDS):
                            await conn.wait_stopped()
                    instance.error = conn.error
                    instance.conn = None
                    log.warning("shared_tool_server_crashed", server=self.entry.id, instance=instance.index)
                    await self._launcher.release(conn)
                    if time.monotonic() - started > HEALTHY_AFTER_SECONDS:
                        backoff = BACKOFF_START_SECONDS
                instance.restarts += 1
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
        finally:
            conn, instance.conn = instance.conn, None
            if conn is not None:
                with anyio.CancelScope(shield=True):
                    await self._launcher.release(conn)

    async def _start(self, instance: _Instance) -> ServerConnection | None:
        try:
            return await self._launch(instance)
        finally:
            if instance.restarts == 0:
                self._first_attempts += 1
                if self._first_attempts == len(self._instances):
                    self._settled.set()

    async def _launch(self, instance: _Instance) -> ServerConnection | None:
        try:
            await anyio.to_thread.run_sync(lambda: self._directory.mkdir(parents=True, exist_ok=True))
            spec = resolve_launch(
                self.entry, registry=self._registry, settings=self._launcher.settings, workspace=self._directory
            )
            stderr = self._directory.parent / f"{self.entry.id}-{instance.index}.stderr.log"
            conn = await self._launcher.launch(
                spec, stderr_path=stderr if isinstance(self.entry, StdioServer) else None
            )
        except (ToolServerError, ConfigError) as exc:
            instance.error = exc.message
            log.warning(
                "shared_tool_server_not_started", server=self.entry.id, instance=instance.index, error=exc.message
            )
            return None
        instance.error = None
        log.info("shared_tool_server_started", server=self.entry.id, instance=instance.index, pid=conn.pid)
        return conn


class SharedServers:
    """Every shared server of the registry, following registry reloads."""

    def __init__(self, launcher: Launcher, settings: ToolSettings) -> None:
        self._launcher = launcher
        self._root = settings.workspace_root.resolve() / SHARED_DIR
        self._servers: dict[str, SharedServer] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    def get(self, server_id: str) -> SharedServer | None:
        return self._servers.get(server_id)

    def sync(self, registry: Registry) -> None:
        """Start the shared servers of ``registry``; stop (in the background) those removed or changed."""
        wanted = {e.id: e for e in registry.enabled() if e.scope == "shared"}
        for sid, server in list(self._servers.items()):
            if wanted.get(sid) != server.entry:
                del self._servers[sid]
                task = asyncio.get_running_loop().create_task(server.aclose(), name=f"mcp-shared-stop:{sid}")
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)
        for sid, entry in wanted.items():
            if sid not in self._servers:
                server = SharedServer(entry, registry, self._launcher, self._root)
                self._servers[sid] = server
                server.start()

    def status(self) -> dict[str, Any]:
        return {sid: server.status() for sid, server in self._servers.items()}

    async def settle(self) -> None:
        """Wait until every shared instance has made its first start attempt."""
        for server in list(self._servers.values()):
            await server.settle()

    async def aclose(self) -> None:
        servers, self._servers = list(self._servers.values()), {}
        async with anyio.create_task_group() as tg:
            for server in servers:
                tg.start_soon(server.aclose)
        if self._stopping:
            await asyncio.wait(list(self._stopping))
