"""SQLite specifics: time-ordered ids, and WAL checkpoints taken off the event loop."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from agent_runtime.store import sqlite as store_module
from agent_runtime.store.rows import new_id
from tests.support.databases import migrated_store


def test_ids_made_in_the_same_millisecond_still_sort_in_creation_order() -> None:
    ids = [new_id("task") for _ in range(20_000)]  # far more than one per millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {len(i) for i in ids} == {len("task_") + 24}


async def test_commits_reach_the_main_database_file_through_the_stores_own_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "CHECKPOINT_EVERY", 5)
    db = tmp_path / "store.sqlite"  # where ``migrated_store`` puts SQLite
    async with migrated_store("sqlite", tmp_path) as store:
        for i in range(5):
            await store.create_task(f"t{i}", {})
        await store.settle()  # the checkpoint runs on a worker thread; writers never wait for it
        # The main file alone (no WAL) holds what the checkpoint copied into it.
        copy = tmp_path / "main-file-only.sqlite"
        shutil.copyfile(db, copy)
        with sqlite3.connect(copy) as conn:
            assert conn.execute("SELECT count(*) FROM tasks").fetchone() == (5,)
