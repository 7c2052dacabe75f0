"""The persisted tool catalogue (table ``tool_catalogue``): each server's last discovery.

The catalogue (``tools/catalog.py``) loads these rows at start-up and serves the tool lists whose
``entry_hash`` still matches the registry entry, without starting the servers; its background
discovery writes every outcome back. Rows go through the store's own read and write paths (SQLite's
single writer, PostgreSQL's pool); replicas on PostgreSQL share them, the last write winning.

The table is a cache: a database that cannot be read or written (unreachable, or not yet migrated
to the revision that adds the table) costs only the cache. :meth:`CatalogueStore.load` then
answers nothing and :meth:`CatalogueStore.save` does nothing, each with a warning; discovery runs
as it would without the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from agent_runtime.store import rows
from agent_runtime.store import schema as t
from agent_runtime.store.store import TaskStore

log = structlog.get_logger(__name__)
C = t.tool_catalogue


@dataclass(frozen=True, slots=True)
class CatalogueRow:
    """One server's last discovery as stored."""

    server_id: str
    entry_hash: str
    """Which registry entry (launch configuration and tool overrides) the tools were listed with."""
    tools: list[dict[str, Any]]
    """The tool list of the last successful discovery (plain JSON; ``tools/catalog.py`` reads it)."""
    discovered_at: datetime | None
    """When the tools were last listed successfully (None: never)."""
    attempted_at: datetime
    error: str | None
    """The last attempt's error (None: it succeeded)."""


def load(conn: Connection) -> dict[str, CatalogueRow]:
    """Every stored row, by server id."""
    found: dict[str, CatalogueRow] = {}
    for row in conn.execute(sa.select(C)).mappings():
        attempted = rows.aware(row["attempted_at"])
        assert attempted is not None
        found[row["server_id"]] = CatalogueRow(
            server_id=row["server_id"],
            entry_hash=row["entry_hash"],
            tools=list(row["tools"] or []),
            discovered_at=rows.aware(row["discovered_at"]),
            attempted_at=attempted,
            error=row["error"],
        )
    return found


def save(conn: Connection, row: CatalogueRow) -> None:
    """Insert or replace the server's row (one statement, so concurrent replicas never collide)."""
    values: Mapping[str, Any] = {
        "server_id": row.server_id,
        "entry_hash": row.entry_hash,
        "tools": row.tools,
        "discovered_at": row.discovered_at,
        "attempted_at": row.attempted_at,
        "error": row.error,
    }
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg = pg_insert(C).values(**values)
        conn.execute(pg.on_conflict_do_update(index_elements=[C.c.server_id], set_=_replace(pg.excluded)))
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        lite = sqlite_insert(C).values(**values)
        conn.execute(lite.on_conflict_do_update(index_elements=[C.c.server_id], set_=_replace(lite.excluded)))


def _replace(excluded: Any) -> dict[str, Any]:
    return {c.name: getattr(excluded, c.name) for c in C.c if c.name != "server_id"}


class CatalogueStore:
    """Load and save catalogue rows through a :class:`TaskStore`'s read and write paths."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store

    async def load(self) -> dict[str, CatalogueRow]:
        """Every stored row by server id; none (with a warning) when the table cannot be read."""
        try:
            return await self.store._read(load)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("tool_catalogue_unreadable", error=f"{type(exc).__name__}: {_first_line(exc)}")
            return {}

    async def save(self, row: CatalogueRow) -> None:
        """Store the row; a failure is logged and otherwise ignored (the table is a cache)."""
        try:
            await self.store._write(lambda conn: save(conn, row))
        except (SQLAlchemyError, OSError) as exc:
            log.warning(
                "tool_catalogue_not_saved", server=row.server_id, error=f"{type(exc).__name__}: {_first_line(exc)}"
            )


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""
