"""Artifacts: the files a task leaves in ``${WORKSPACE}/out/``, kept after its workspace is removed.

When execution completes, :meth:`ArtifactStore.collect` copies each regular file directly under
``out/`` to ``<artifacts.root>/<task_id>/<name>`` (hashing it on the way) and returns what goes
into the task's result: ``artifacts`` (``name``, ``size``, ``sha256``, ``media_type``) and, when
any file was left out, ``artifacts_skipped`` (``name``, ``reason``). A file that breaks a rule is
skipped, not fatal: the task did its work, and the result says exactly what was not kept and why.

Rules: a name is a plain file name (letters, digits, ``.``, ``_``, ``-``; no path, at most 128
characters); subdirectories are not collected; a symbolic link is followed only when its target is
a file inside ``out/`` (one leading anywhere else is skipped, so a tool cannot publish
``/etc/passwd``); files are opened without following a link in their last component and checked to
be regular files after opening; sizes are enforced while copying (``artifacts.max_file_bytes``
per file, ``artifacts.max_task_bytes`` per task, ``artifacts.max_files``), so a file that grows
after it was measured is still cut off. Files are taken in name order, so which ones fit under the
task limit does not depend on the directory's order.

Only a task that completes keeps artifacts; a failed or cancelled task's workspace is removed as
before. Retention removes a task's artifacts after its rows (:meth:`ArtifactStore.sweep_orphans`,
called from the runtime's housekeeping): any directory whose task no longer exists goes, which also
cleans up after a crash between the two.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import shutil
import stat
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import structlog

from agent_runtime.settings import ArtifactSettings
from agent_runtime.tools.workspace import check_task_id

log = structlog.get_logger(__name__)

OUT_DIR = "out"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)
_CHUNK = 1 << 16
_TMP_PREFIX = ".partial-"
_TASK_DIR = re.compile(r"^task_[0-9a-f]{24}$")

_TYPES = mimetypes.MimeTypes()  # the built-in table only: the same answer on every machine
for _type, _ext in (("text/markdown", ".md"), ("application/x-ndjson", ".jsonl"), ("application/yaml", ".yaml"),
                    ("application/yaml", ".yml"), ("text/csv", ".csv"), ("application/json", ".json")):  # fmt: skip
    _TYPES.add_type(_type, _ext)


def media_type(name: str) -> str:
    return _TYPES.guess_type(name, strict=False)[0] or "application/octet-stream"


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name)) and name not in (".", "..") and not name.startswith(_TMP_PREFIX)


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    size: int
    sha256: str
    media_type: str


class _Skip(Exception):
    """This file is not kept; the message says why."""


class ArtifactStore:
    """Kept files on disk under ``artifacts.root``. Cheap to build; holds no open resources."""

    def __init__(self, settings: ArtifactSettings) -> None:
        self.root = settings.root.resolve()
        self.settings = settings

    def task_dir(self, task_id: str) -> Path:
        return self.root / check_task_id(task_id)

    def path(self, task_id: str, name: str) -> Path | None:
        """Where artifact ``name`` of the task is kept, or ``None`` for a name no artifact can have."""
        return self.task_dir(task_id) / name if valid_name(name) else None

    async def collect(self, task_id: str, workspace: Path) -> dict[str, Any]:
        """Keep the files in ``workspace/out/``; return the result's ``artifacts`` (and ``artifacts_skipped``)."""
        kept, skipped = await anyio.to_thread.run_sync(self._collect, workspace / OUT_DIR, self.task_dir(task_id))
        if kept or skipped:
            log.info("artifacts_kept", task_id=task_id, kept=len(kept), skipped=len(skipped))
        result: dict[str, Any] = {"artifacts": [asdict(a) for a in kept]}
        if skipped:
            result["artifacts_skipped"] = skipped
        return result

    async def sweep_orphans(self, exists: Callable[[str], Awaitable[bool]]) -> int:
        """Remove the artifacts of every task for which ``exists`` says no; return how many went."""
        names = await anyio.to_thread.run_sync(self._task_dirs)
        removed = 0
        for name in names:
            if not await exists(name):
                await anyio.to_thread.run_sync(self._remove_tree, self.root / name)
                removed += 1
        return removed

    # -- in a worker thread -------------------------------------------------------------------------

    def _task_dirs(self) -> list[str]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        # Only names a task id can have: whatever else lives under the root is not ours to delete.
        return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False) and _TASK_DIR.match(e.name))

    @staticmethod
    def _remove_tree(path: Path) -> None:
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            pass
        except OSError:
            log.exception("artifacts_remove_failed", path=str(path))

    def _collect(self, out: Path, dest: Path) -> tuple[list[Artifact], list[dict[str, str]]]:
        try:
            info = out.lstat()
        except FileNotFoundError:
            return [], []
        if not stat.S_ISDIR(info.st_mode):
            return [], [{"name": OUT_DIR, "reason": "out/ is not a directory (a link or a file): nothing kept"}]
        real_out = out.resolve()
        kept: list[Artifact] = []
        skipped: list[dict[str, str]] = []
        total = 0
        for entry in sorted(os.scandir(out), key=lambda e: e.name):
            try:
                artifact = self._keep(entry, real_out, dest, len(kept), total)
            except _Skip as why:
                skipped.append({"name": entry.name, "reason": str(why)})
                continue
            except OSError as exc:
                log.exception("artifact_copy_failed", name=entry.name)
                skipped.append({"name": entry.name, "reason": f"could not be kept: {exc.strerror or exc}"})
                continue
            kept.append(artifact)
            total += artifact.size
        return kept, skipped

    def _keep(self, entry: os.DirEntry[str], real_out: Path, dest: Path, count: int, total: int) -> Artifact:
        limits = self.settings
        if not valid_name(entry.name):
            raise _Skip("not a plain file name (letters, digits, '.', '_', '-'; at most 128 characters)")
        source = Path(entry.path)
        if entry.is_symlink():
            source = source.resolve()
            if source.parent != real_out:
                raise _Skip("a symbolic link to a file outside out/")
        if count >= limits.max_files:
            raise _Skip(f"more files than artifacts.max_files ({limits.max_files})")
        room = min(limits.max_file_bytes, limits.max_task_bytes - total)
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _Skip("not a regular file (subdirectories and special files are not collected)")
        with os.fdopen(fd, "rb") as src:
            dest.mkdir(parents=True, exist_ok=True)
            tmp = dest / f"{_TMP_PREFIX}{entry.name}"
            digest = hashlib.sha256()
            size = 0
            try:
                with tmp.open("wb") as out_file:
                    while chunk := src.read(_CHUNK):
                        size += len(chunk)
                        if size > room:
                            raise _Skip(self._too_big(size, total))
                        digest.update(chunk)
                        out_file.write(chunk)
                os.replace(tmp, dest / entry.name)
            finally:
                tmp.unlink(missing_ok=True)
        return Artifact(entry.name, size, digest.hexdigest(), media_type(entry.name))

    def _too_big(self, size: int, total: int) -> str:
        limits = self.settings
        if size > limits.max_file_bytes:
            return f"larger than artifacts.max_file_bytes ({limits.max_file_bytes} bytes)"
        return (
            f"would take the task's artifacts past artifacts.max_task_bytes ({limits.max_task_bytes} bytes; "
            f"{total} already kept)"
        )
