"""Database backends for tests: SQLite in a temp dir, and PostgreSQL when a DSN is given.

Set ``AGENT_RUNTIME_TEST_POSTGRES_URL`` (``.ci/run`` does) to run the PostgreSQL variants; each
use gets a fresh database created from that server and dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from agent_runtime.services.pg_listener import asyncpg_dsn
from agent_runtime.settings import DatabaseSettings
from agent_runtime.store import migrate
from agent_runtime.store.engine import create_engine
from agent_runtime.store.store import StoreListener, TaskStore, open_store

PG_ENV = "AGENT_RUNTIME_TEST_POSTGRES_URL"
PG_SKIP_REASON = (
    f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test); .ci/run sets it"
)


def postgres_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def require_postgres() -> str:
    url = postgres_url()
    if url is None:
        pytest.skip(PG_SKIP_REASON)
    return url


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """Create an empty database on the test server; yield its SQLAlchemy URL; drop it afterwards."""
    base = require_postgres()
    name = f"ar_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(asyncpg_dsn(base))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    head, _, _ = base.rpartition("/")
    try:
        yield f"{head}/{name}"
    finally:
        admin = await asyncpg.connect(asyncpg_dsn(base))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def database_url(backend: str, tmp: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp / 'store.sqlite'}"
        return
    async with fresh_postgres_database() as url:
        yield url


@asynccontextmanager
async def migrated_store(backend: str, tmp: Path, listener: StoreListener | None = None) -> AsyncIterator[TaskStore]:
    """A ``TaskStore`` on a freshly migrated database of ``backend`` (``sqlite`` or ``postgres``)."""
    async with database_url(backend, tmp) as url:
        engine = create_engine(DatabaseSettings(url=url))
        await migrate.upgrade(engine)
        store = open_store(engine, listener)
        try:
            yield store
        finally:
            await store.aclose()
