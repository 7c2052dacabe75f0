"""The tool catalogue: what every enabled server offers, for the planner and the approval policy.

Discovery starts a throwaway instance of each server in its own empty temporary directory (never a
task's workspace), lists its tools and stops it; all servers concurrently. ``${TASK_ID}`` is
``catalogue-discovery`` there, so an entry that uses it can be discovered (and planned with). Tools carry their
annotations (read-only, idempotent, destructive) with the registry's per-tool override applied.
A server that fails discovery is reported in ``status()`` and keeps its last good tool list, if any;
it never stops the others or the service.

With a :class:`CatalogueCache` (the ``tool_catalogue`` table, ``store/catalogue.py``) every outcome
is written back, and :meth:`ToolCatalog.restore` serves the stored lists at start-up without
starting any server: a stored list counts when its entry hash (:func:`entry_hash`: the entry's
type, launch configuration and tool overrides, and the registry folder) matches the current entry.
The service then refreshes every server in the background (``runtime.serve_background``). An entry
with no matching stored list is *pending* until its first discovery ends, ok or failed
(:meth:`ToolCatalog.pending`, :meth:`ToolCatalog.wait_settled`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

import anyio
import structlog

from agent_runtime.errors import ConfigError, ToolServerError
from agent_runtime.settings import ToolSettings
from agent_runtime.store.catalogue import CatalogueRow
from agent_runtime.tools.base import ToolInfo, split_name
from agent_runtime.tools.launcher import import_client
from agent_runtime.tools.registry import DISCOVERY_TASK_ID, HttpServer, Registry, StdioServer, resolve_launch

log = structlog.get_logger(__name__)
Source = Literal["discovery", "database"]


class CatalogueCache(Protocol):
    """Where discovery outcomes are kept between starts (``store.catalogue.CatalogueStore``)."""

    async def load(self) -> dict[str, CatalogueRow]: ...

    async def save(self, row: CatalogueRow) -> None: ...


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
    source: Source | None = None
    """Where the tool list (and ``ok``/``error``) came from: this process's ``discovery``, or the
    ``database`` (the last discovery stored, by this or another replica, for the same entry)."""
    discovering: bool = False
    """A discovery of this server is running."""
    pending: bool = True
    """Nothing known yet: no stored outcome for this entry and no discovery finished."""


def entry_hash(entry: StdioServer | HttpServer, registry: Registry) -> str:
    """What a stored tool list was discovered with: the entry's type, launch configuration and tool
    overrides, and the registry folder (``${REGISTRY_DIR}``). Not the environment's values that
    ``${NAME}`` refers to (they may be secrets): a change there shows at the next discovery."""
    identity = {
        "type": entry.type,
        "config": entry.config.model_dump(mode="json"),
        "tools": {name: o.model_dump(mode="json") for name, o in sorted(entry.tools.items())},
        "registry_dir": str(registry.base_dir),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class ToolCatalog:
    """Cached tool lists per enabled server. ``await refresh()`` at start-up and periodically."""

    def __init__(self, registry: Registry, settings: ToolSettings, cache: CatalogueCache | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.cache = cache
        self._servers: dict[str, ServerStatus] = {}
        self._lock = anyio.Lock()
        self._progress = anyio.Event()

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
        """Per enabled server: ok, error text (with stderr tail), discovered_at, tools, source."""
        return {sid: self._servers.get(sid, ServerStatus(sid)) for sid in self._enabled_ids()}

    def pending(self) -> list[str]:
        """Enabled servers with nothing known yet (their first discovery has not ended)."""
        return [sid for sid, status in self.status().items() if status.pending]

    async def wait_settled(self) -> None:
        """Wait until no enabled server is pending (each has a stored or discovered outcome)."""
        while self.pending():
            await self._progress.wait()

    def replace_registry(self, registry: Registry) -> None:
        """Switch to a reloaded registry; entries of removed or changed servers are forgotten."""
        old = self.registry
        self.registry = registry
        for sid in list(self._servers):
            if registry.get(sid) != old.get(sid):
                del self._servers[sid]

    async def restore(self) -> list[str]:
        """Serve the stored outcomes whose entry hash matches the current entry (servers this
        process has not discovered yet only); return the ids restored."""
        if self.cache is None:
            return []
        stored = await self.cache.load()
        restored = []
        for entry in self.registry.enabled():
            row = stored.get(entry.id)
            if row is None or entry.id in self._servers or row.entry_hash != entry_hash(entry, self.registry):
                continue
            tools = _tools_from_json(row.tools)
            if tools is None:
                continue  # written by another version of the code: discover again
            self._servers[entry.id] = ServerStatus(
                entry.id,
                ok=row.error is None and row.discovered_at is not None,
                error=row.error,
                discovered_at=row.discovered_at,
                attempted_at=row.attempted_at,
                tools=tools,
                source="database",
                pending=False,
            )
            restored.append(entry.id)
        return restored

    async def refresh(self, server_ids: list[str] | None = None) -> dict[str, ServerStatus]:
        """Discover the given (default: all enabled) servers concurrently; never raises for one."""
        ids = self._enabled_ids() if server_ids is None else server_ids
        await import_client()
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
        status.discovering = True
        try:
            tools = await self._list(entry)
        except (ToolServerError, ConfigError) as exc:
            status.ok, status.error = False, exc.message
            log.warning("tool_discovery_failed", server=server_id, error=exc.message)
        else:
            if self.registry.get(server_id) != entry:
                return  # the registry was replaced meanwhile; this result describes the old entry
            status.ok, status.error, status.tools = True, None, tools
            status.discovered_at = status.attempted_at
        finally:
            status.discovering = False
            status.pending = False
            status.source = "discovery"
            self._progress.set()
            self._progress = anyio.Event()
        await self._save(entry, status)

    async def _save(self, entry: StdioServer | HttpServer, status: ServerStatus) -> None:
        if self.cache is None or status.attempted_at is None or self.registry.get(entry.id) != entry:
            return
        row = CatalogueRow(
            server_id=entry.id,
            entry_hash=entry_hash(entry, self.registry),
            tools=[_tool_to_json(tool) for tool in status.tools],
            discovered_at=status.discovered_at,
            attempted_at=status.attempted_at,
            error=status.error,
        )
        await self.cache.save(row)

    async def _list(self, entry: StdioServer | HttpServer) -> list[ToolInfo]:
        from agent_runtime.tools.connection import connected

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


def _tool_to_json(tool: ToolInfo) -> dict[str, object]:
    return {**dataclasses.asdict(tool), "overridden": list(tool.overridden)}


def _tools_from_json(stored: list[dict[str, object]]) -> list[ToolInfo] | None:
    """The stored tools, or None when a row does not fit :class:`ToolInfo` (another code version)."""
    try:
        return [ToolInfo(**{**item, "overridden": tuple(item.get("overridden") or ())}) for item in stored]  # type: ignore[arg-type]
    except TypeError:
        return None
