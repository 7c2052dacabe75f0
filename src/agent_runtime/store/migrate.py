"""Apply and inspect Alembic migrations programmatically (used by ``agent-runtime migrate`` and start-up).

Alembic is imported only when a database is not at :data:`HEAD_REVISION` (importing it costs
0.6-0.8 s of start-up here): a database already at the head is recognised by reading Alembic's
version table with plain SQL. ``tests/store/test_migrations.py`` checks that :data:`HEAD_REVISION`
is Alembic's head, so a new migration cannot forget it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD_REVISION = "0009"
"""The newest migration in ``migrations/versions`` (update it with every new migration)."""
VERSION_TABLE = "alembic_version"


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    """Alembic's head, read from the migration scripts (imports Alembic)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The database's revision from Alembic's version table (None: not migrated yet), in plain SQL."""

    def read(conn: Connection) -> str | None:
        if not sa.inspect(conn).has_table(VERSION_TABLE):
            return None
        rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
        if len(rows) > 1:  # branches: not something this project makes; let Alembic decide
            from alembic.runtime.migration import MigrationContext

            return MigrationContext.configure(conn).get_current_revision()
        return rows[0] if rows else None

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def pending(engine: AsyncEngine) -> bool:
    """True when the database lacks this code's newest migration.

    A database *ahead* of this code (a newer version migrated it during a rolling upgrade) is not
    pending: migrations are additive, so older replicas keep serving until they are replaced.
    """
    current = await current_revision(engine)
    if current == HEAD_REVISION:
        return False
    if current is None:
        return True
    from alembic.script import ScriptDirectory

    known = {rev.revision for rev in ScriptDirectory.from_config(_config()).walk_revisions()}
    return current in known


async def upgrade(engine: AsyncEngine) -> str | None:
    """Bring the database to the newest revision; return it (without Alembic if already there)."""
    current = await current_revision(engine)
    if current == HEAD_REVISION:
        return current

    def run(conn: Connection) -> None:
        from alembic import command

        command.upgrade(_config(conn), "head")

    async with engine.begin() as conn:
        await conn.run_sync(run)
    return await current_revision(engine)
