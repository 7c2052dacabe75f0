"""SQLite: the store on a synchronous pysqlite engine, run **inline on the event loop**.

An operation is one task's rows, a fraction of a millisecond, and a hop to a worker thread costs
about as much again (through aiosqlite every statement costs several hops). Writers are
serialised in process by a lock (which is what SQLite does anyway), so an inline write never waits
for SQLite's own lock; the embedded database belongs to one process. What could stall the loop is
moved off it: WAL checkpoints (automatic checkpointing is off; the store checkpoints on a worker
thread every ``CHECKPOINT_EVERY`` commits) and bulk deletes (retention).

One write path: a task transaction is written as kept statements (:mod:`.sqlite_writes`) inside
``BEGIN IMMEDIATE`` on the loop's connection, under the writer lock. A lease holder starts from its
last committed view (no read); anyone else reads the row under the lock, so it is current.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_runtime.domain.events import Event
from agent_runtime.domain.records import Lease
from agent_runtime.store import leases, queries, rows, sqlite_writes
from agent_runtime.store.engine import sync_sqlite_engine
from agent_runtime.store.store import StoreListener, TaskStore
from agent_runtime.store.tx import TaskTx

log = structlog.get_logger(__name__)

CHECKPOINT_EVERY = 1000
CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
T = TypeVar("T")


class SqliteStore(TaskStore):
    is_postgres = False

    def __init__(self, engine: AsyncEngine, listener: StoreListener | None = None) -> None:
        super().__init__(engine, listener)
        self.sync_engine: Engine = sync_sqlite_engine(engine.url)
        """The pysqlite engine every read and write of the store goes through."""
        self._loop_conn: Connection | None = None
        self._write_lock = anyio.Lock(fast_acquire=True)  # one writer at a time, queued here
        self._commits = self._checkpointed = 0
        self._checkpoint: asyncio.Future[object] | None = None

    async def aclose(self) -> None:
        await self.settle()
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None
        await anyio.to_thread.run_sync(self.sync_engine.dispose)
        await self.engine.dispose()

    # -- running operations -------------------------------------------------------------------

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        return self._inline_read(fn)

    def _inline_read(self, fn: Callable[[Connection], T]) -> T:
        """Inline read on the loop's own connection, outside any transaction (SQLite autocommit)."""
        conn = self.loop_connection(None)
        try:
            return fn(conn)
        finally:
            conn.rollback()  # ends SQLAlchemy's bookkeeping; no BEGIN was sent, nothing to roll back

    def loop_connection(self, begin: str | None = None) -> Connection:
        """The connection inline operations use. They run one at a time on the event loop thread,
        so one connection serves them all (no pool checkout and reset per operation); work moved
        to a worker thread takes a pooled connection of its own. ``begin``: how a transaction
        starts (``IMMEDIATE`` for writes; None: reads outside a transaction)."""
        if self._loop_conn is None or self._loop_conn.closed or self._loop_conn.invalidated:
            self._loop_conn = self.sync_engine.connect()
        return self._loop_conn.execution_options(sqlite_begin=begin)

    def _pooled_read(self, fn: Callable[[Connection], T]) -> T:
        with self.sync_engine.connect() as conn:
            return fn(conn.execution_options(sqlite_begin=None))

    async def _write(self, fn: Callable[[Connection], T], *, offload: bool = False) -> T:
        async with self._write_lock:
            if offload:
                result = await anyio.to_thread.run_sync(self._pooled_write, fn)
            else:
                result = self._inline_write(fn)
        self._maybe_checkpoint()
        return result

    def _inline_write(self, fn: Callable[[Connection], T]) -> T:
        """Inline write transaction on the loop's own connection (callers hold the writer lock)."""
        conn = self.loop_connection("IMMEDIATE")
        with conn.begin():
            result = fn(conn)
        self._commits += 1
        return result

    def _pooled_write(self, fn: Callable[[Connection], T]) -> T:
        with self.sync_engine.connect() as conn, conn.execution_options(sqlite_begin="IMMEDIATE").begin():
            result = fn(conn)
        self._commits += 1
        return result

    def _maybe_checkpoint(self) -> None:
        """Now and then, copy the WAL into the database on a worker thread (it may fsync).

        Started, not awaited: a writer never waits for it, and nothing suspends between a commit
        and the caller getting its result (``aclose`` waits for one still running)."""
        if self._commits - self._checkpointed < CHECKPOINT_EVERY or self._checkpoint is not None:
            return
        self._checkpointed = self._commits
        future = asyncio.get_running_loop().run_in_executor(
            None, self._pooled_read, lambda c: c.exec_driver_sql(CHECKPOINT).all()
        )
        self._checkpoint = future
        future.add_done_callback(self._checkpoint_done)

    async def settle(self) -> None:
        """Wait for a WAL checkpoint still running."""
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])

    def _checkpoint_done(self, future: asyncio.Future[object]) -> None:
        self._checkpoint = None
        if not future.cancelled() and (error := future.exception()) is not None:
            log.warning("sqlite_checkpoint_failed", error=f"{type(error).__name__}: {error}")

    def _released(self, conn: Connection, lease: Lease) -> None:
        """One process owns the database: the listener is told after the commit, nobody else."""

    # -- task transactions ----------------------------------------------------------------------

    async def _insert(self, tx: TaskTx) -> list[Event]:
        events = await self._write(lambda conn: sqlite_writes.write(conn, tx, None))
        assert events is not None  # no fence on an insert
        return events

    @asynccontextmanager
    async def transaction(self, task_id: str, lease: Lease | None = None) -> AsyncIterator[TaskTx]:
        async with self._write_lock:
            view = self.views.get(lease) if lease is not None else None
            if view is None:
                view = self._inline_read(lambda c: queries.task(c, task_id))
            tx = TaskTx(leases.check(view, lease), rows.utcnow())
            try:
                yield tx
                events = self._inline_write(lambda c: sqlite_writes.write(c, tx, lease))
            except BaseException:
                if lease is not None:
                    self.views.forget(lease)
                raise
            if events is None:
                assert lease is not None
                self.views.forget(lease)
                raise leases.lost(task_id)
            if lease is not None and tx.changed:
                self.views.remember(tx.task)
        self._after_commit(tx, events)
        self._maybe_checkpoint()
