"""Per-task workspace directories under ``settings.workspace_root``.

A task's workspace is ``<root>/<task_id>``: the working directory (and ``${WORKSPACE}``) of the
task's tool servers, kept across the task's steps and removed when the task ends unless
``keep_workspaces`` is set. Server stderr logs go to ``<root>/.logs/<task_id>/`` so they never show
up among the task's files; warm-pool directories live in ``<root>/.warm/`` (same filesystem, so a
warm directory can be renamed into place).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
import structlog

from agent_runtime.settings import ToolSettings

log = structlog.get_logger(__name__)

_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
LOGS_DIR = ".logs"
WARM_DIR = ".warm"


def check_task_id(task_id: str) -> str:
    """``task_id`` if it can name a directory (no separators, no ``..``); else ``ValueError``."""
    if not _TASK_ID.match(task_id) or ".." in task_id:
        raise ValueError(f"task id {task_id!r} cannot name a workspace directory")
    return task_id


class Workspaces:
    """Creates, locates and removes task workspaces. Cheap to build; holds no open resources."""

    def __init__(self, settings: ToolSettings) -> None:
        self.root = settings.workspace_root.resolve()
        self.keep = settings.keep_workspaces

    def path(self, task_id: str) -> Path:
        return self.root / check_task_id(task_id)

    def logs_dir(self, task_id: str) -> Path:
        return self.root / LOGS_DIR / check_task_id(task_id)

    @property
    def warm_root(self) -> Path:
        return self.root / WARM_DIR

    def create(self, task_id: str) -> Path:
        """Create the task's workspace (or find it again after a restart) and return its path."""
        path = self.path(task_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def remove(self, task_id: str, *, force: bool = False) -> bool:
        """Delete the task's workspace and logs unless ``keep_workspaces`` (``force`` overrides)."""
        if self.keep and not force:
            log.info("workspace_kept", task_id=task_id, path=str(self.path(task_id)))
            return False
        for path in (self.path(task_id), self.logs_dir(task_id)):
            if not _remove_if_empty(path):  # a tree to walk: off the event loop
                await anyio.to_thread.run_sync(_rmtree, path)
        return True

    @asynccontextmanager
    async def workspace(self, task_id: str) -> AsyncIterator[Path]:
        """The workspace for the duration of a block, removed at the end (unless kept)."""
        path = await anyio.to_thread.run_sync(self.create, task_id)
        try:
            yield path
        finally:
            with anyio.CancelScope(shield=True):
                await self.remove(task_id)


def _remove_if_empty(path: Path) -> bool:
    """Remove ``path`` if it is missing or an empty directory (one system call, done inline);
    False if it has contents."""
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _rmtree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError:
        log.exception("workspace_remove_failed", path=str(path))
