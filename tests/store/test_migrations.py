"""The frozen migrations produce exactly the tables the code expects."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from agent_runtime.settings import DatabaseSettings
from agent_runtime.store import migrate
from agent_runtime.store.engine import create_engine
from agent_runtime.store.schema import metadata


async def test_migrated_database_matches_the_schema_the_code_uses(tmp_path: Path) -> None:
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'm.sqlite'}"))
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
