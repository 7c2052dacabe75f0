"""``store.prepared``: kept statements run straight on pysqlite store and read exactly what
SQLAlchemy's own execution stores and reads (the same text, NULLs, JSON nulls and timestamps)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Connection

from agent_runtime.store import prepared
from agent_runtime.store import schema as t
from agent_runtime.store.engine import sync_sqlite_engine

NOW = datetime(2026, 11, 21, 9, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[Connection]:
    engine = sync_sqlite_engine(sa.make_url(f"sqlite:///{tmp_path / 'p.sqlite'}"))
    t.metadata.create_all(engine)
    with engine.connect() as connection, connection.begin():
        yield connection
    engine.dispose()


def _task(task_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": task_id, "status": "queued", "prompt": "p\u00e9 'quoted'", "metadata": {"a": [1, None, "x"]},
        "created_at": NOW, "updated_at": NOW, "lease_epoch": 0, "last_seq": 0, **extra,
    }  # fmt: skip


def _call(call_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": call_id, "task_id": "t-sa", "plan_version": 1, "step_id": "s1", "turn": 0, "call_index": 0,
        "tool_name": "x.y", "arguments": {}, "status": "started", "result": None, "is_error": True,
        "lease_epoch": 3, "started_at": NOW, "finished_at": None, **extra,
    }  # fmt: skip


def _stored(conn: Connection, table: str, key: str, value: str) -> tuple[Any, ...]:
    """The row as SQLite holds it (no SQLAlchemy type processing), without its key column."""
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.execute(f"SELECT * FROM {table} WHERE {key} = ?", (value,))
    names = [d[0] for d in cursor.description]
    row = cursor.fetchone()
    return tuple(v for n, v in zip(names, row, strict=True) if n != key)


def test_inserts_store_the_same_text_as_sqlalchemy(conn: Connection) -> None:
    conn.execute(t.tasks.insert(), _task("t-sa", result=None, finished_at=None))
    prepared.execute(conn, t.tasks.insert(), _task("t-raw", result=None, finished_at=None))
    assert _stored(conn, "tasks", "id", "t-raw") == _stored(conn, "tasks", "id", "t-sa")
    # JSON None is stored as JSON null text, as SQLAlchemy stores it; an omitted column is NULL.
    assert _stored(conn, "tasks", "id", "t-raw")[7:9] == ("null", None)

    conn.execute(t.tool_calls.insert(), [_call("c-sa")])
    prepared.execute(conn, t.tool_calls.insert(), [_call("c-raw")])  # a list: executemany
    assert _stored(conn, "tool_calls", "id", "c-raw") == _stored(conn, "tool_calls", "id", "c-sa")


def test_reads_return_what_sqlalchemy_returns(conn: Connection) -> None:
    prepared.execute(conn, t.tasks.insert(), _task("t-sa", lease_expires_at=NOW))
    select = sa.select(t.tasks).where(t.tasks.c.id == sa.bindparam("id"))
    expected = [dict(r) for r in conn.execute(select, {"id": "t-sa"}).mappings()]
    got = prepared.execute(conn, select, {"id": "t-sa"})
    assert got.rows == expected
    assert got.rows[0]["metadata"] == {"a": [1, None, "x"]}
    assert got.rows[0]["created_at"] == NOW.replace(tzinfo=None)  # SQLite keeps no zone; rows.aware adds UTC
    assert prepared.execute(conn, select, {"id": "missing"}).first() is None


def test_updates_compare_timestamps_as_stored_and_count_rows(conn: Connection) -> None:
    prepared.execute(conn, t.tasks.insert(), _task("t-1"))
    fenced = (
        t.tasks.update()
        .where(t.tasks.c.id == sa.bindparam("k_id"))
        .where(t.tasks.c.updated_at == sa.bindparam("k_updated", type_=t.tasks.c.updated_at.type))
        .values(status=sa.bindparam("status"), lease_epoch=t.tasks.c.lease_epoch + 1)
    )
    assert prepared.execute(conn, fenced, {"k_id": "t-1", "k_updated": NOW, "status": "planning"}).rowcount == 1
    stale = NOW.replace(microsecond=0)
    assert prepared.execute(conn, fenced, {"k_id": "t-1", "k_updated": stale, "status": "failed"}).rowcount == 0
    row = conn.execute(sa.select(t.tasks.c.status, t.tasks.c.lease_epoch)).one()
    assert tuple(row) == ("planning", 1)  # the literal 1 in the statement was bound too


def test_a_statement_is_compiled_once_per_object(conn: Connection) -> None:
    select = sa.select(t.events).where(t.events.c.task_id == sa.bindparam("task_id"))
    prepared.execute(conn, select, {"task_id": "a"})
    compiled = prepared._prepare(select, None)
    prepared.execute(conn, select, {"task_id": "b"})
    assert prepared._prepare(select, None) is compiled


def test_missing_parameters_and_expanding_in_fail_loudly(conn: Connection) -> None:
    select = sa.select(t.tasks).where(t.tasks.c.id == sa.bindparam("id"))
    with pytest.raises(Exception, match="id"):
        prepared.execute(conn, select, {})
    with pytest.raises(ValueError, match="expanding"):
        prepared.execute(conn, sa.select(t.tasks).where(t.tasks.c.id.in_(["a", "b"])), {})
