"""The frozen migrations produce exactly the tables the code expects."""

from __future__ import annotations

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
