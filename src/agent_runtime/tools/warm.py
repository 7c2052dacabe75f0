"""Warm instances (``prewarm: N``): servers started ahead of time, each handed to one task only.

A warm instance must still work in its task's workspace, and an idle server in a shared neutral
directory would break isolation. So each warm instance is started in a fresh, empty directory of
its own (``<workspace_root>/.warm/<id>``), and at hand-over that very directory *becomes* the task's
workspace: it is renamed onto the task's (empty) workspace path. The process's working directory
follows the rename, so the server now runs in the task's workspace and has never seen any other.

Hence the rules: only servers that take the workspace solely as their cwd may be prewarmed (the
registry refuses ``prewarm`` with ``${WORKSPACE}`` or ``cwd``); at most one server per task can be
warm (one directory becomes the workspace); the task's workspace must be empty, on the same
filesystem, and the task must pass no extra ``env``. Otherwise the task gets a cold start. An
instance is never returned to the pool; its replacement starts in the background at once, at
hand-out (with the fork server that costs tens of milliseconds, so a steady stream of tasks keeps
finding a ready instance). A warm instance only takes a *free* process slot
(``tools.max_server_processes``): tasks waiting for a slot get it first, and a refill that found
none is retried when a slot is given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from agent_runtime.errors import ConfigError, ToolServerError
from agent_runtime.settings import ToolSettings
from agent_runtime.tools.launcher import Launcher
from agent_runtime.tools.registry import Registry, StdioServer, resolve_launch
from agent_runtime.tools.workspace import Workspaces

if TYPE_CHECKING:
    from agent_runtime.tools.connection import ServerConnection

log = structlog.get_logger(__name__)


@dataclass
class _Instance:
    entry: StdioServer
    conn: ServerConnection
    directory: Path
    log: Path
    ready_at: float = field(default_factory=time.monotonic)


class WarmPool:
    """Keeps ``prewarm`` idle instances per server, started through ``launcher``."""

    def __init__(self, launcher: Launcher, workspaces: Workspaces, settings: ToolSettings) -> None:
        self._launcher = launcher
        self._workspaces = workspaces
        self._settings = settings
        self._registry: Registry | None = None
        self._entries: dict[str, StdioServer] = {}
        self._ready: dict[str, list[_Instance]] = {}
        self._starting: dict[str, int] = {}
        self._errors: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._handed_out = 0
        self._missed = 0
        self._recycled = 0
        self._sweeper: asyncio.Task[None] | None = None
        """Replaces idle instances; kept apart from ``_tasks`` so :meth:`settle` does not wait on it."""
        launcher.on_slot_freed(self.slot_freed)

    def sync(self, registry: Registry) -> None:
        """Follow the registry: drop instances of changed or removed entries, start missing ones."""
        self._registry = registry
        wanted = {e.id: e for e in registry.enabled() if isinstance(e, StdioServer) and e.prewarm > 0}
        for sid in list(self._ready):
            if wanted.get(sid) != self._entries.get(sid):
                for instance in self._ready.pop(sid):
                    self._spawn(self._discard(instance))
        self._entries = wanted
        for entry in wanted.values():
            self._top_up(entry)
        max_idle = self._settings.warm_max_idle_seconds
        if max_idle is not None and wanted and self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(max_idle))

    def recycle_idle(self, max_idle: float) -> int:
        """Replace instances idle for longer than ``max_idle`` seconds (the idle limit); return how many."""
        now = time.monotonic()
        recycled = 0
        for sid, group in self._ready.items():
            stale = [i for i in group if now - i.ready_at > max_idle]
            for instance in stale:
                group.remove(instance)
                self._spawn(self._discard(instance))
                recycled += 1
            if stale and sid in self._entries:
                self._top_up(self._entries[sid])
        self._recycled += recycled
        return recycled

    async def _sweep_forever(self, max_idle: float) -> None:
        while True:
            await anyio.sleep(max_idle / 2)
            self.recycle_idle(max_idle)

    def claim(
        self, task_id: str, server_ids: list[str], workspace: Path, registry: Registry
    ) -> dict[str, ServerConnection]:
        """Hand one warm instance to task ``task_id`` whose workspace is ``workspace``, if one of
        ``server_ids`` has one ready and ``registry`` (the task's snapshot) still describes it the
        same way; the instance's directory becomes the workspace (see module doc)."""
        if workspace.exists() and (not workspace.is_dir() or any(workspace.iterdir())):
            return {}
        for sid in server_ids:
            entry = self._entries.get(sid)
            if entry is None or registry.get(sid) != entry:
                continue
            while self._ready.get(sid):
                instance = self._ready[sid].pop(0)
                if not instance.conn.alive():
                    self._spawn(self._discard(instance))
                    continue
                try:
                    workspace.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(instance.directory, workspace)
                except OSError as exc:
                    log.warning("warm_handover_failed", server=sid, task_id=task_id, error=str(exc))
                    self._ready[sid].insert(0, instance)
                    return {}
                self._move_log(instance, task_id)
                self._handed_out += 1
                self._top_up(entry)
                log.info("warm_instance_handed_out", server=sid, task_id=task_id)
                return {sid: instance.conn}
            self._missed += 1
            self._top_up(entry)
        return {}

    def slot_freed(self) -> None:
        """A process slot was given back: start the instances a full cap kept from starting."""
        if self._registry is None or self._launcher.closed:
            return
        for entry in self._entries.values():
            self._top_up(entry)

    def status(self) -> dict[str, Any]:
        servers = {
            sid: {
                "target": entry.prewarm,
                "ready": len(self._ready.get(sid, [])),
                "starting": self._starting.get(sid, 0),
                "last_error": self._errors.get(sid),
            }
            for sid, entry in self._entries.items()
        }
        return {
            "servers": servers,
            "handed_out": self._handed_out,
            "missed": self._missed,
            "recycled_idle": self._recycled,
        }

    async def settle(self) -> None:
        """Wait for the instances being started now (and any replacements they trigger)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._entries = {}
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        instances = [i for group in self._ready.values() for i in group]
        self._ready.clear()
        async with anyio.create_task_group() as tg:
            for instance in instances:
                tg.start_soon(self._discard, instance)

    # --- internals -------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _top_up(self, entry: StdioServer) -> None:
        missing = entry.prewarm - len(self._ready.get(entry.id, [])) - self._starting.get(entry.id, 0)
        for _ in range(max(0, min(missing, self._launcher.free_slots()))):
            self._starting[entry.id] = self._starting.get(entry.id, 0) + 1
            self._spawn(self._start_one(entry))

    async def _start_one(self, entry: StdioServer) -> None:
        try:
            await self._start_instance(entry)
        except Exception:  # top level of a background task: log, never lose the error
            log.exception("warm_instance_crashed", server=entry.id)

    async def _start_instance(self, entry: StdioServer) -> None:
        root = self._workspaces.warm_root
        name = uuid.uuid4().hex
        directory, stderr_log = root / name, root / f"{name}.stderr.log"
        registry = self._registry
        try:
            if registry is None:
                raise ToolServerError("the warm pool has no registry yet")
            await anyio.to_thread.run_sync(lambda: directory.mkdir(parents=True))
            spec = resolve_launch(entry, registry=registry, settings=self._settings, workspace=directory)
            conn = await self._launcher.launch(spec, stderr_path=stderr_log, slot="free")
        except (ToolServerError, ConfigError) as exc:
            self._errors[entry.id] = exc.message
            log.warning("warm_instance_not_started", server=entry.id, error=exc.message)
            await anyio.to_thread.run_sync(_remove, directory, stderr_log)
            return
        except BaseException:  # cancelled by aclose(): leave no directory behind
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_remove, directory, stderr_log)
            raise
        finally:
            self._starting[entry.id] -= 1
        instance = _Instance(entry, conn, directory, stderr_log)
        if self._entries.get(entry.id) != entry:  # the registry changed while it started
            await self._discard(instance)
            return
        self._errors.pop(entry.id, None)
        self._ready.setdefault(entry.id, []).append(instance)

    async def _discard(self, instance: _Instance) -> None:
        await self._launcher.release(instance.conn)
        await anyio.to_thread.run_sync(_remove, instance.directory, instance.log)

    def _move_log(self, instance: _Instance, task_id: str) -> None:
        name = f"{instance.entry.id}-warm-{instance.directory.name}.stderr.log"
        target = self._workspaces.logs_dir(task_id) / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(instance.log, target)  # the server keeps writing to the same open file
        except OSError:
            log.exception("warm_log_move_failed", server=instance.entry.id, task_id=task_id)


def _remove(directory: Path, log: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    log.unlink(missing_ok=True)
