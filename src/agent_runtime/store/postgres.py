"""PostgreSQL: the store on asyncpg through SQLAlchemy's async engine.

One write path: every task transaction is one call of ``agent_runtime_apply_v2(jsonb)``
(migration 0004) with the document :mod:`.pg_document` encodes; the function returns the task row
as written, or no row when the lease fence refused.

* **A lease holder** starts from its last committed view (no read) and sends the document as one
  statement in autocommit mode (atomic on its own): one round trip. Its transactions on one task
  are serialised in process by a lock per lease. No row lock is held while the body runs.
* **A writer without a lease** (an API command) reads the row ``SELECT ... FOR UPDATE`` and sends
  the same function in that transaction, so its checks see the row as it is written.

Claims, renewals, releases and retention are SQLAlchemy statements in a transaction; reads run in
autocommit mode (no BEGIN/ROLLBACK round trips; each statement sees committed data). Commits that
other replicas should see send ``NOTIFY agent_runtime`` in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agent_runtime.domain.events import Event
from agent_runtime.domain.records import Lease, TaskRecord
from agent_runtime.store import leases, pg_document, queries, rows
from agent_runtime.store.store import NOTIFY_CHANNEL, StoreListener, TaskStore
from agent_runtime.store.tx import TaskTx

APPLY = "SELECT * FROM agent_runtime_apply_v2($1::jsonb)"
T = TypeVar("T")
_JSON_COLUMNS = ("metadata", "result", "error")


class PostgresStore(TaskStore):
    is_postgres = True

    def __init__(self, engine: AsyncEngine, listener: StoreListener | None = None) -> None:
        super().__init__(engine, listener)
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        """The same pool, for reads and single-statement writes (no BEGIN/COMMIT)."""

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        async with self._autocommit.connect() as conn:
            return await conn.run_sync(fn)

    async def _write(self, fn: Callable[[Connection], T], *, offload: bool = False) -> T:
        async with self.engine.begin() as conn:
            return await conn.run_sync(fn)

    async def settle(self) -> None:
        """Nothing runs in the background on PostgreSQL."""

    def _released(self, conn: Connection, lease: Lease) -> None:
        payload = json.dumps({"task": lease.task_id, "last": 0, "work": True, "o": self.origin})
        conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, payload)))

    # -- task transactions ----------------------------------------------------------------------

    def _notify(self, tx: TaskTx) -> dict[str, Any] | None:
        """What the function should NOTIFY: other replicas follow events and wake for work."""
        if not tx.events and not tx.wakes_workers:
            return None
        return {"channel": NOTIFY_CHANNEL, "work": tx.wakes_workers, "o": self.origin}

    async def _apply(self, conn: AsyncConnection, tx: TaskTx, fence: Lease | None) -> list[Event] | None:
        """Write ``tx`` with the one function call; its stored events, or None if fenced off."""
        if not tx.changed:
            return []
        document = pg_document.document(tx, fence, self._notify(tx))
        row = (await conn.exec_driver_sql(APPLY, (document,))).mappings().first()
        if row is None:
            return None
        return tx.committed(_task(row))

    async def _insert(self, tx: TaskTx) -> list[Event]:
        async with self._autocommit.connect() as conn:
            events = await self._apply(conn, tx, None)
        assert events is not None  # no fence on an insert
        return events

    @asynccontextmanager
    async def transaction(self, task_id: str, lease: Lease | None = None) -> AsyncIterator[TaskTx]:
        if lease is None:
            async with self.engine.begin() as conn:
                record = await conn.run_sync(lambda c: queries.task(c, task_id, for_update=True))
                tx = TaskTx(record, rows.utcnow())
                yield tx
                events = await self._apply(conn, tx, None)
                assert events is not None  # no fence: the row is locked
            self._after_commit(tx, events)
            return
        lock = self.views.lock(lease)
        try:
            async with lock:
                try:
                    view = self.views.get(lease)
                    if view is None:
                        view = await self.get_task(task_id)
                    tx = TaskTx(leases.check(view, lease), rows.utcnow())
                    yield tx
                    async with self._autocommit.connect() as conn:
                        events = await self._apply(conn, tx, lease)
                except BaseException:
                    self.views.forget(lease)
                    raise
                if events is None:
                    self.views.forget(lease)
                    raise leases.lost(task_id)
                if tx.changed:
                    self.views.remember(tx.task)
        finally:
            self.views.drop_idle_lock(lease, lock)
        self._after_commit(tx, events)


def _task(row: Mapping[Any, Any]) -> TaskRecord:
    """The task row the function returned (a driver row: JSON columns arrive as text)."""
    values = dict(row)
    for name in _JSON_COLUMNS:
        if isinstance(values[name], str):
            values[name] = json.loads(values[name])
    return rows.task(values)
