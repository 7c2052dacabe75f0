"""Running SQLAlchemy Core statements on SQLite without SQLAlchemy's per-execution machinery.

The store's hot statements (the fenced task update, journal inserts and updates, the task and
event reads, the claim) are built once with SQLAlchemy Core, with named bind parameters, and kept.
On PostgreSQL they run through ``Connection.execute`` as usual. On SQLite, SQLAlchemy's per-call
work (cache-key lookup, execution context, parameter and result processing through several
layers) cost about three times what SQLite itself spends on these small statements; so
:func:`execute` compiles each kept statement **once** for SQLite and then runs it straight on the
pysqlite connection, converting values with the same type processors SQLAlchemy would use (so the
stored text is byte-identical: the fence compares ``updated_at`` as stored). It runs inside
whatever transaction the SQLAlchemy connection has open (same DBAPI connection).

Statements built per call with literal values (rare paths) are not kept; they keep going through
``Connection.execute``. Expanding ``IN`` parameters are not supported here (they go through SQLAlchemy).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Executable, Insert
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any]
Row = dict[str, Any]

_DIALECT = sqlite.dialect(paramstyle="named")


class Prepared:
    """One statement compiled for SQLite (named parameters), with its value converters."""

    __slots__ = ("binds", "defaults", "keys", "results", "sql")

    def __init__(self, statement: ClauseElement, column_keys: Sequence[str] | None = None) -> None:
        compiled = statement.compile(dialect=_DIALECT, column_keys=list(column_keys) if column_keys else None)
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        self.binds: dict[str, Processor] = {}
        self.defaults: dict[str, Any] = {}
        for bind, name in compiled.bind_names.items():
            if bind.expanding:
                raise ValueError(f"{name}: expanding IN parameters are not supported by Prepared")
            processor = bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
            if processor is not None:
                self.binds[name] = processor
            if not bind.required:
                value = bind.effective_value
                self.defaults[name] = processor(value) if processor is not None else value
        columns = list(getattr(statement, "exported_columns", ()))
        self.keys = [c.key for c in columns]
        self.results: list[tuple[int, Processor]] = []
        for i, column in enumerate(columns):
            processor = column.type.dialect_impl(_DIALECT).result_processor(_DIALECT, None)
            if processor is not None:
                self.results.append((i, processor))

    def params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(self.defaults)
        binds = self.binds
        for name, value in values.items():
            processor = binds.get(name)
            out[name] = processor(value) if processor is not None else value
        return out

    def rows(self, cursor: sqlite3.Cursor) -> list[Row]:
        keys, results = self.keys, self.results
        out: list[Row] = []
        for raw in cursor.fetchall():
            values = list(raw)
            for i, processor in results:
                values[i] = processor(values[i])
            out.append(dict(zip(keys, values, strict=True)))
        return out


class Outcome:
    """What a statement returned: its rows (as dicts) and how many rows it changed."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def first(self) -> Row | None:
        return self.rows[0] if self.rows else None


_prepared: dict[tuple[int, tuple[str, ...] | None], tuple[Executable, Prepared]] = {}


def _prepare(statement: Executable, column_keys: tuple[str, ...] | None) -> Prepared:
    key = (id(statement), column_keys)
    found = _prepared.get(key)
    if found is not None and found[0] is statement:
        return found[1]
    assert isinstance(statement, ClauseElement)
    prepared = Prepared(statement, column_keys)
    _prepared[key] = (statement, prepared)  # holds the statement, so its id is never reused
    return prepared


def execute(
    conn: Connection,
    statement: Executable,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> Outcome:
    """Run a **kept** statement (module-level or cached: it is compiled once per object) with
    ``params`` (one mapping, or a list of them for executemany). An INSERT sets the columns its
    (first) parameters name, as with ``Connection.execute``."""
    if conn.dialect.name != "sqlite":
        result = conn.execute(statement, params)
        return Outcome([dict(r) for r in result.mappings()] if result.returns_rows else [], result.rowcount)
    many = isinstance(params, Sequence)
    column_keys = None
    if isinstance(statement, Insert):
        first = params[0] if isinstance(params, Sequence) else params
        column_keys = tuple(first) if first else None
    prepared = _prepare(statement, column_keys)
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    if many:
        assert isinstance(params, Sequence)
        cursor = driver.executemany(prepared.sql, [prepared.params(p) for p in params])
        return Outcome([], cursor.rowcount)
    assert not isinstance(params, Sequence)
    cursor = driver.execute(prepared.sql, prepared.params(params or {}))
    return Outcome(prepared.rows(cursor) if cursor.description is not None else [], cursor.rowcount)
