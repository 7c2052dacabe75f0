"""Engine construction for SQLite (embedded, WAL) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_runtime.errors import ConfigError
from agent_runtime.settings import DatabaseSettings
from agent_runtime.store import pg_text

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
    # No pre-ping: it costs a round trip per checkout. A dead connection fails one operation (the
    # runner and clients retry) and is replaced; recycling bounds how stale a pooled one can get.
    # JSON values come back through pg_text.loads: NUL in stored strings is escaped (store/pg_text.py).
    return create_async_engine(
        db.url,
        echo=db.echo,
        pool_size=db.pool_size,
        max_overflow=db.pool_size,
        pool_recycle=1800,
        json_deserializer=pg_text.loads,
    )


def _sqlite_engine(db: DatabaseSettings, database: str | None) -> AsyncEngine:
    """The async SQLite engine: used for migrations and administration; the store's own reads and
    writes go through :func:`sync_sqlite_engine`, inline on the event loop (see ``store.sqlite``)."""
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(db.url, echo=db.echo, connect_args={"timeout": 30})
    _sqlite_hooks(engine.sync_engine)
    return engine


def sync_sqlite_engine(url: URL) -> Engine:
    """A synchronous pysqlite engine on the same file, with the same pragmas and BEGIN control
    (except automatic WAL checkpoints: the store runs those on a worker thread)."""
    engine = sa_create_engine(
        url.set(drivername="sqlite+pysqlite"),
        connect_args={"timeout": 30, "check_same_thread": False},
        pool_size=8,
        max_overflow=8,
    )
    _sqlite_hooks(engine, autocheckpoint=False)
    return engine


def _sqlite_hooks(engine: Engine, *, autocheckpoint: bool = True) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below emit BEGIN itself, so writers can ask for IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        if not autocheckpoint:  # the store checkpoints off the event loop (see ``store.sqlite``)
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode is not None:  # None: a read outside any transaction (SQLite autocommit)
            conn.exec_driver_sql(f"BEGIN {mode}")
