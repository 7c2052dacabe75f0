"""PostgreSQL: the store on asyncpg through SQLAlchemy's async engine.

One write path: every task transaction is one call of ``agent_runtime_apply_v2(jsonb)``
(migration 0004) with the document :mod:`.pg_document` encodes; the function returns the task row
as written, or no row when the lease fence refused.

* **A lease holder** starts from its last committed view (no read) and sends the document as one
  statement in autocommit mode (atomic on its own): one round trip. Its transactions on one task
  are serialised in process by a lock per lease. No row lock is held while the body runs. The
  statement goes straight to the pooled asyncpg connection: SQLAlchemy's connection and result
  layers cost about as much CPU as the rest of the holder's write (measured 0.37-0.43 against
  0.22-0.24 ms per one-event transaction; docs/benchmarks.md). A server error wrote nothing (the
  statement is atomic), so it is run again through SQLAlchemy, which raises its usual exception; a
  lost connection may or may not have committed, so it is never run again: the pool is replaced
  and ``sqlalchemy.exc.OperationalError`` raised.
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

import anyio
import asyncpg
import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.util import greenlet_spawn

from agent_runtime.domain.events import Event
from agent_runtime.domain.records import Lease, TaskRecord
from agent_runtime.store import leases, pg_document, pg_text, queries, rows
from agent_runtime.store import schema as t
from agent_runtime.store.store import NOTIFY_CHANNEL, StoreListener, TaskStore
from agent_runtime.store.tx import TaskTx

APPLY = "SELECT * FROM agent_runtime_apply_v2($1::jsonb)"
T = TypeVar("T")
_JSON_COLUMNS = ("metadata", "result", "error")
_TEXT_COLUMNS = tuple(c.name for c in t.tasks.columns if isinstance(c.type, pg_text.EscapedString))


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

    async def _apply_holder(self, tx: TaskTx, fence: Lease) -> list[Event] | None:
        """A lease holder's write: the one statement on the pooled asyncpg connection (see the
        module docstring for how failures are handled)."""
        if not tx.changed:
            return []
        document = pg_document.document(tx, fence, self._notify(tx))
        raw = await self.engine.raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        lost: BaseException | None = None
        try:
            row = await driver.fetchrow(APPLY, document)
        except asyncpg.PostgresError as exc:
            if driver.is_closed():
                raw.invalidate(exc)
                lost = exc
            row = None
            failed = True
        except (asyncpg.InterfaceError, OSError) as exc:
            raw.invalidate(exc)
            lost, row, failed = exc, None, True
        except BaseException:
            raw.invalidate()  # cancelled mid-call (or a bug): the connection's state is unknown
            raise
        else:
            failed = False
        finally:
            with anyio.CancelScope(shield=True):
                await greenlet_spawn(raw.close)
        if lost is not None:
            with anyio.CancelScope(shield=True):
                await self.engine.dispose()  # the others are likely gone too (a restart, a failover)
            raise sa.exc.OperationalError(APPLY, None, lost, connection_invalidated=True) from lost
        if failed:  # a server error: nothing was written; SQLAlchemy raises its own exception
            async with self._autocommit.connect() as conn:
                return await self._apply(conn, tx, fence)
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
                    events = await self._apply_holder(tx, lease)
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
    """The task row the function returned (a driver row: no SQLAlchemy type processing, so JSON
    columns may arrive as text and escaped text columns are restored here; store/pg_text.py)."""
    values = dict(row)
    for name in _JSON_COLUMNS:
        if isinstance(values[name], str):
            values[name] = pg_text.loads(values[name])
    for name in _TEXT_COLUMNS:
        if isinstance(values[name], str):
            values[name] = pg_text.decode_text(values[name])
    return rows.task(values)
