"""Per-task workspaces: created on demand, found again, removed at the end unless kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_runtime.settings import ToolSettings
from agent_runtime.tools.workspace import Workspaces


def test_a_workspace_is_created_under_the_root_and_found_again(tmp_path: Path) -> None:
    spaces = Workspaces(ToolSettings(workspace_root=tmp_path / "root"))
    path = spaces.create("task-1")
    (path / "kept.txt").write_text("x", encoding="utf-8")
    assert path == (tmp_path / "root" / "task-1").resolve()
    assert spaces.create("task-1") == path  # a resumed task finds its files again
    assert (path / "kept.txt").exists()
    assert spaces.logs_dir("task-1").parent.name == ".logs"


@pytest.mark.parametrize("bad", ["", "..", "../escape", "a/b", ".hidden", "x" * 200])
def test_task_ids_that_cannot_name_a_directory_are_refused(tmp_path: Path, bad: str) -> None:
    spaces = Workspaces(ToolSettings(workspace_root=tmp_path))
    with pytest.raises(ValueError, match="cannot name a workspace directory"):
        spaces.path(bad)


async def test_a_workspace_is_removed_at_the_end_with_its_logs(tmp_path: Path) -> None:
    spaces = Workspaces(ToolSettings(workspace_root=tmp_path))
    async with spaces.workspace("t") as path:
        (path / "f.txt").write_text("x", encoding="utf-8")
        spaces.logs_dir("t").mkdir(parents=True)
    assert not path.exists()
    assert not spaces.logs_dir("t").exists()


async def test_keep_workspaces_keeps_them_unless_forced(tmp_path: Path) -> None:
    spaces = Workspaces(ToolSettings(workspace_root=tmp_path, keep_workspaces=True))
    async with spaces.workspace("t") as path:
        (path / "f.txt").write_text("x", encoding="utf-8")
    assert (path / "f.txt").exists()
    assert await spaces.remove("t", force=True)
    assert not path.exists()


async def test_empty_or_missing_workspaces_are_removed_too(tmp_path: Path) -> None:
    spaces = Workspaces(ToolSettings(workspace_root=tmp_path))
    empty = spaces.create("empty")
    assert await spaces.remove("empty")  # an empty directory: removed inline
    assert await spaces.remove("never-created")  # nothing there: nothing to do
    assert not empty.exists()
    assert not spaces.logs_dir("empty").exists()
