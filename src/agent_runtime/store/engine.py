"""Engine construction for SQLite (embedded, WAL) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_runtime.errors import ConfigError
from agent_runtime.settings import DatabaseSettings

SUPPORTED = ("sqlite+aiosqlite", "postgresql+asyncpg")


def create_engine(db: DatabaseSettings) -> AsyncEngine:
    """Build the async engine; for SQLite create the file's folder and set WAL + busy timeout."""
    try:
        url = make_url(db.url)
    except Exception as exc:
        raise ConfigError(f"database.url: not a valid database URL: {exc}") from exc
    if url.drivername not in SUPPORTED:
        raise ConfigError(
            f"database.url: driver {url.drivername!r} is not supported; use one of {', '.join(SUPPORTED)}"
        )
    if url.drivername.startswith("sqlite"):
        return _sqlite_engine(db, url.database)
    return create_async_engine(
        db.url, echo=db.echo, pool_size=db.pool_size, max_overflow=db.pool_size, pool_pre_ping=True
    )


def _sqlite_engine(db: DatabaseSettings, database: str | None) -> AsyncEngine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(db.url, echo=db.echo, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below emit BEGIN itself, so writers can ask for IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
