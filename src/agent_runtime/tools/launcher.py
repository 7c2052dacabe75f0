"""The launcher: starts and stops server instances, capping live stdio processes.

Every instance of the service goes through one :class:`Launcher`: task-scoped servers, warm
instances alike. It holds the process slots (``tools.max_server_processes``) and knows every live
connection, so closing the service stops them all. A Python stdio server whose entry point is
recognised (``entrypoints.py``) is started by its fork server (``forkserver.py``) unless the
registry says ``fork_server: false``; if that fork server cannot run, the instance is spawned.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import structlog
from mcp.client.stdio import get_default_environment

from agent_runtime.errors import ToolServerError
from agent_runtime.settings import ToolSettings
from agent_runtime.tools.connection import ServerConnection
from agent_runtime.tools.entrypoints import find_entry_point
from agent_runtime.tools.forkserver import ForkServer, ForkServers
from agent_runtime.tools.registry import LaunchSpec
from agent_runtime.tools.workspace import LOGS_DIR

log = structlog.get_logger(__name__)


class Launcher:
    """Starts instances (taking a process slot for stdio) and releases them (giving it back)."""

    def __init__(self, settings: ToolSettings) -> None:
        self.settings = settings
        self.forks = ForkServers(settings.workspace_root.resolve() / LOGS_DIR / "fork-servers")
        self._slots = anyio.Semaphore(settings.max_server_processes)
        self._live: set[ServerConnection] = set()
        self._releasing: set[asyncio.Task[None]] = set()
        self.closed = False

    def reopen(self) -> None:
        self.closed = False
        self.forks.reopen()

    async def launch(
        self, spec: LaunchSpec, *, stderr_path: Path | None, wait_for_slot: bool = True
    ) -> ServerConnection:
        """Start one instance; ToolServerError if it cannot (or no slot is free in time)."""
        if self.closed:
            raise ToolServerError(f"tool pool is closed; cannot start {spec.server_id!r}")
        needs_slot = spec.transport == "local_stdio"
        if needs_slot:
            await self._take_slot(spec, wait=wait_for_slot)
        fork = await self._fork_server(spec) if needs_slot else None
        conn = ServerConnection(spec, stderr_path=stderr_path, fork=fork)
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

    async def _fork_server(self, spec: LaunchSpec) -> tuple[ForkServer, tuple[str, ...]] | None:
        """The fork server for this instance and its ``sys.argv``, or None to spawn it."""
        if not spec.fork_server or not hasattr(os, "fork"):
            return None
        found = find_entry_point(spec.command, spec.args)
        if found is None:
            return None
        entry, argv = found
        server = await self.forks.get(entry, {**get_default_environment(), **spec.static_env})
        return (server, argv) if server is not None else None

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

    async def aclose(self) -> None:
        """Stop every live instance."""
        self.closed = True
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for conn in list(self._live):
                    tg.start_soon(self.release, conn)
            if self._releasing:
                await asyncio.wait(list(self._releasing))
            await self.forks.aclose()

    def live_by_server(self) -> dict[str, int]:
        """Live stdio server processes per registry entry (for the metrics gauge)."""
        counts: dict[str, int] = {}
        for conn in self._live:
            if conn.spec.transport == "local_stdio":
                counts[conn.spec.server_id] = counts.get(conn.spec.server_id, 0) + 1
        return counts

    def status(self) -> Mapping[str, Any]:
        return {
            "live_processes": sum(1 for c in self._live if c.spec.transport == "local_stdio"),
            "live_connections": len(self._live),
            "max_server_processes": self.settings.max_server_processes,
            "fork_servers": self.forks.status(),
        }

    def _release_later(self, conn: ServerConnection) -> None:
        task = asyncio.get_running_loop().create_task(self.release(conn), name=f"mcp-release:{conn.server_id}")
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

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
        log.warning("tool_server_slots_busy", server=spec.server_id, slots=self.settings.max_server_processes)
        raise ToolServerError(
            f"cannot start tool server {spec.server_id!r}: all {self.settings.max_server_processes} "
            "tool-server process slots (tools.max_server_processes) stayed busy for "
            f"{spec.connect_timeout:g} s",
            details={"server_id": spec.server_id},
        )
