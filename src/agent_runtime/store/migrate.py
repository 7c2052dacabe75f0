"""Apply and inspect Alembic migrations programmatically (used by ``agent-runtime migrate`` and start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    def read(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def pending(engine: AsyncEngine) -> bool:
    """True when the database lacks this code's newest migration.

    A database *ahead* of this code (a newer version migrated it during a rolling upgrade) is not
    pending: migrations are additive, so older replicas keep serving until they are replaced.
    """
    current = await current_revision(engine)
    head = head_revision()
    if current == head:
        return False
    if current is None:
        return True
    known = {rev.revision for rev in ScriptDirectory.from_config(_config()).walk_revisions()}
    return current in known


async def upgrade(engine: AsyncEngine) -> str | None:
    """Bring the database to the newest revision; return it."""

    def run(conn: Connection) -> None:
        command.upgrade(_config(conn), "head")

    async with engine.begin() as conn:
        await conn.run_sync(run)
    return await current_revision(engine)
