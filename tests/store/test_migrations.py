"""The frozen migrations produce exactly the tables the code expects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from agent_runtime.settings import DatabaseSettings
from agent_runtime.store import migrate
from agent_runtime.store.engine import create_engine
from agent_runtime.store.schema import metadata
from tests.support.databases import database_url


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_migrated_database_matches_the_schema_the_code_uses(backend: str, tmp_path: Path) -> None:
    async with database_url(backend, tmp_path) as url:
        await _check(url)


async def _check(url: str) -> None:
    engine = create_engine(DatabaseSettings(url=url))
    try:
        assert await migrate.pending(engine) is True
        assert await migrate.upgrade(engine) == migrate.head_revision()

        def diff(conn: sa.Connection) -> list[object]:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
        assert await migrate.pending(engine) is False
    finally:
        await engine.dispose()


def test_the_head_revision_constant_is_alembics_head() -> None:
    assert migrate.head_revision() == migrate.HEAD_REVISION


def test_a_database_at_the_head_is_served_without_importing_alembic(tmp_path: Path) -> None:
    # A fresh interpreter: this test process has imported Alembic already.
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    code = f"""
import asyncio, sys
from agent_runtime.settings import DatabaseSettings
from agent_runtime.store import migrate
from agent_runtime.store.engine import create_engine

async def main() -> None:
    engine = create_engine(DatabaseSettings(url={url!r}))
    await migrate.upgrade(engine)  # migrates: imports Alembic
    await engine.dispose()

asyncio.run(main())
"""
    check = f"""
import asyncio, sys
from agent_runtime.settings import DatabaseSettings
from agent_runtime.store import migrate
from agent_runtime.store.engine import create_engine

async def main() -> None:
    engine = create_engine(DatabaseSettings(url={url!r}))
    assert await migrate.pending(engine) is False
    assert await migrate.upgrade(engine) == migrate.HEAD_REVISION
    await engine.dispose()

asyncio.run(main())
print(sorted(m for m in sys.modules if m.split(".")[0] == "alembic"))
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    done = subprocess.run([sys.executable, "-c", check], check=True, timeout=120, capture_output=True, text=True)
    assert done.stdout.strip() == "[]"
