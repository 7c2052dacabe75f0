"""The launcher: starts and stops server instances, capping live stdio processes.

Every instance of the service goes through one :class:`Launcher`: task-scoped servers, warm
instances alike. It holds the process slots (``tools.max_server_processes``) and knows every live
connection, so closing the service stops them all.

The cap is back-pressure, not failure: a task takes all the slots it needs at once
(:meth:`Launcher.reserve_slots`, one task at a time in arrival order, so two tasks can never each
hold part of what the other needs) and waits for them as long as it takes; only its own
cancellation ends the wait. A task that needs more slots than the cap fails at once, clearly. Warm
instances take only a slot that is free and nobody waits for. A Python stdio server whose entry point is
recognised (``entrypoints.py``) is started by its fork server (``forkserver.py``) unless the
registry says ``fork_server: false``; if that fork server cannot run, the instance is spawned.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import structlog

from agent_runtime.errors import ToolServerError
from agent_runtime.settings import ToolSettings
from agent_runtime.tools.entrypoints import find_entry_point
from agent_runtime.tools.forkserver import ForkServer, ForkServers
from agent_runtime.tools.registry import LaunchSpec
from agent_runtime.tools.workspace import LOGS_DIR

if TYPE_CHECKING:
    from agent_runtime.tools.connection import ServerConnection

log = structlog.get_logger(__name__)
_CLIENT = "agent_runtime.tools.connection"
_imported: set[str] = set()


async def import_client() -> None:
    """Import ``tools.connection``, and with it the MCP client (~0.3 s here, most of it ``mcp``
    importing its server side too), in a worker thread the first time, so the event loop keeps
    serving meanwhile. Nothing on the way to readiness imports it (checked in
    ``tests/tools/test_catalogue_persistence.py``)."""
    if _CLIENT not in _imported:
        await anyio.to_thread.run_sync(importlib.import_module, _CLIENT)
        _imported.add(_CLIENT)


class Launcher:
    """Starts instances (taking a process slot for stdio) and releases them (giving it back)."""

    def __init__(self, settings: ToolSettings) -> None:
        self.settings = settings
        self.forks = ForkServers(settings.workspace_root.resolve() / LOGS_DIR / "fork-servers")
        self._slots = anyio.Semaphore(settings.max_server_processes)
        self._reserving = anyio.Lock()  # FIFO: one task gathers its slots at a time
        self._slot_listeners: list[Callable[[], None]] = []
        self._waiting_tasks = 0
        self._live: set[ServerConnection] = set()
        self._releasing: set[asyncio.Task[None]] = set()
        self.closed = False

    def reopen(self) -> None:
        self.closed = False
        self.forks.reopen()

    async def launch(
        self, spec: LaunchSpec, *, stderr_path: Path | None, slot: Literal["wait", "free", "held"] = "wait"
    ) -> ServerConnection:
        """Start one instance; ToolServerError if it cannot.

        A stdio instance needs a process slot: ``wait`` waits for one (as long as it takes),
        ``free`` takes one only if it is free now (else ToolServerError), ``held`` uses one the
        caller already holds (from :meth:`reserve_slots`; given back if the start fails).
        """
        needs_slot = spec.transport == "local_stdio"
        await import_client()
        if self.closed:
            if needs_slot and slot == "held":
                self.give_back_slots(1)
            raise ToolServerError(f"tool pool is closed; cannot start {spec.server_id!r}")
        if needs_slot and slot != "held":
            await self._take_slot(spec, wait=slot == "wait")
        try:
            fork = await self._fork_server(spec) if needs_slot else None
        except BaseException:
            if needs_slot:
                self.give_back_slots(1)
            raise
        from agent_runtime.tools.connection import ServerConnection

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
        from mcp.client.stdio import get_default_environment

        server = await self.forks.get(entry, {**get_default_environment(), **spec.static_env})
        return (server, argv) if server is not None else None

    async def release(self, conn: ServerConnection, *, keep_slot: bool = False) -> None:
        """Stop an instance and give its process slot back (idempotent); with ``keep_slot`` the
        caller keeps the slot, to start a replacement with ``slot="held"``."""
        if conn not in self._live:
            return
        try:
            await conn.aclose()
        finally:
            if conn in self._live:
                self._live.discard(conn)
                if conn.spec.transport == "local_stdio" and not keep_slot:
                    self.give_back_slots(1)

    async def reserve_slots(self, count: int, *, owner: str) -> None:
        """Take ``count`` process slots for ``owner`` (a task id), waiting (in arrival order) until they are
        free; ToolServerError at once if ``count`` exceeds ``tools.max_server_processes``."""
        cap = self.settings.max_server_processes
        if count > cap:
            raise ToolServerError(
                f"{owner} needs {count} tool-server processes at once but tools.max_server_processes is {cap}",
                details={"needed": count, "max_server_processes": cap},
            )
        if count == 0:
            return
        taken = 0
        self._waiting_tasks += 1
        try:
            async with self._reserving:
                if self._slots.value < count:
                    log.info("tool_server_slots_busy", owner=owner, needed=count, slots=cap)
                while taken < count:
                    await self._slots.acquire()
                    taken += 1
        except BaseException:
            self.give_back_slots(taken)
            raise
        finally:
            self._waiting_tasks -= 1

    def give_back_slots(self, count: int) -> None:
        """Return ``count`` held slots (a waiting task gets them first, then warm refills)."""
        for _ in range(count):
            self._slots.release()
        if count and self._slots.value > 0:
            for listener in self._slot_listeners:
                listener()

    def free_slots(self) -> int:
        """Slots free now that no task is waiting for."""
        return 0 if self._waiting_tasks else self._slots.value

    def on_slot_freed(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever a slot becomes free with nobody waiting for it."""
        self._slot_listeners.append(listener)

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
            "tasks_waiting_for_slots": self._waiting_tasks,
            "fork_servers": self.forks.status(),
        }

    def _release_later(self, conn: ServerConnection) -> None:
        task = asyncio.get_running_loop().create_task(self.release(conn), name=f"mcp-release:{conn.server_id}")
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _take_slot(self, spec: LaunchSpec, *, wait: bool) -> None:
        if wait:
            await self.reserve_slots(1, owner=f"tool server {spec.server_id!r}")
            return
        if self._waiting_tasks:
            raise ToolServerError("no free tool-server process slot (tasks are waiting for one)")
        try:
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            raise ToolServerError("no free tool-server process slot") from None
