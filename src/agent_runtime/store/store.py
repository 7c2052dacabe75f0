"""``TaskStore``: the one storage implementation, on SQLite or PostgreSQL through SQLAlchemy Core.

Every store operation is a plain synchronous function over a SQLAlchemy ``Connection``; only how
it is run differs by backend:

* **PostgreSQL**: on the async engine (asyncpg) through ``AsyncConnection.run_sync``, so a
  transaction costs network round trips, not thread hops.
* **SQLite**: on a synchronous pysqlite engine, run **inline on the event loop**: an operation is
  one task's rows, a fraction of a millisecond, and a hop to a worker thread costs about as much
  again (through aiosqlite every statement costs several hops). Writers are serialised in process
  by a lock (which is what SQLite does anyway), so an inline write never waits for SQLite's own
  lock; the embedded database belongs to one process. What could stall the loop is moved off it:
  WAL checkpoints (automatic checkpointing is off; the store checkpoints on a worker thread every
  ``CHECKPOINT_EVERY`` commits) and bulk deletes (retention).

Writes happen in :meth:`TaskStore.transaction` (one task; events in the same commit; fenced by
lease epoch) or in the lease operations. After a commit the stored events go to the
:class:`StoreListener` (the in-process event bus); on PostgreSQL a ``NOTIFY`` in the same
transaction tells the other replicas.

**Lease holders write optimistically.** Under a lease only its holder writes the task (a cancel
bumps the epoch), so the holder's last committed view of the row (kept per task and epoch) is
current, and its transaction starts from it without reading the row. The fenced update (epoch,
owner, and the ``last_seq`` and ``updated_at`` it started from) refuses the write if the view was
stale; the view is dropped and :class:`LeaseLostError` raised. The holder's transactions on one
task are serialised in process (SQLite: the writer lock; PostgreSQL: a lock per lease), so they
never refuse each other. On PostgreSQL no row lock is held while the body runs, and a transaction
made only of journal writes (steps, tool calls, events) is sent as **one statement**, the
``agent_runtime_apply`` function (migration 0002), outside an explicit transaction: one round trip
instead of ~10. Writers without a lease (API commands) read the row ``FOR UPDATE`` and write
statement by statement, as before. Reads on PostgreSQL run in autocommit mode (no BEGIN/ROLLBACK
round trips; each statement sees committed data, as under READ COMMITTED).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import anyio
import asyncpg
import sqlalchemy as sa
import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from agent_runtime.domain.events import Event, TaskCreated
from agent_runtime.domain.records import (
    ApprovalRecord,
    Lease,
    PlanVersionRecord,
    StepRecord,
    TaskRecord,
    ToolCallRecord,
)
from agent_runtime.domain.states import CLAIMABLE, LEASED, TaskStatus
from agent_runtime.errors import LeaseLostError, NotFoundError
from agent_runtime.store import rows
from agent_runtime.store import schema as t
from agent_runtime.store.engine import sync_sqlite_engine
from agent_runtime.store.prepared import execute
from agent_runtime.store.tx import TaskTx

log = structlog.get_logger(__name__)

NOTIFY_CHANNEL = "agent_runtime"
APPLY = "SELECT agent_runtime_apply($1::jsonb)"
UNDEFINED_FUNCTION = "42883"
MAX_SNAPSHOTS = 10_000
CHECKPOINT_EVERY = 1000
CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
T = TypeVar("T")


class StoreListener(Protocol):
    """Told about commits, in process. The event bus implements it."""

    def events_committed(self, events: Sequence[Event]) -> None: ...

    def work_available(self) -> None: ...


class Dispatcher(Protocol):
    """This process's runner, offered the work its own commits make claimable (see ``_offer``)."""

    def reserve(self, status: TaskStatus) -> tuple[str, float] | None:
        """Hold a free slot for a task about to become claimable in ``status``: (owner, lease
        seconds), or None to leave the task to the claim loops (no room, draining, global limits)."""
        ...

    def adopt(self, lease: Lease) -> None:
        """The lease was committed: run the task in the reserved slot."""
        ...

    def unreserve(self, status: TaskStatus) -> None:
        """The write failed: free the reserved slot."""
        ...


class _NoListener:
    def events_committed(self, events: Sequence[Event]) -> None:
        pass

    def work_available(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    statuses: Sequence[TaskStatus]
    limit: int
    global_limit: int | None = None


class _Fenced(Exception):
    """Raised inside a write to roll it back when the lease fence refused it."""


class TaskStore:
    def __init__(self, engine: AsyncEngine, listener: StoreListener | None = None) -> None:
        self.engine = engine
        self.listener: StoreListener = listener or _NoListener()
        self.is_postgres = engine.dialect.name == "postgresql"
        self._sync: Engine | None = None if self.is_postgres else sync_sqlite_engine(engine.url)
        self._loop_conn: Connection | None = None
        self.origin = secrets.token_hex(6)
        """Tags this process's NOTIFY payloads, so its own listener can skip them."""
        self._write_lock = anyio.Lock(fast_acquire=True)  # SQLite only: one writer at a time, queued here
        self._commits = self._checkpointed = 0
        self._checkpoint: asyncio.Future[object] | None = None
        self._snapshots: dict[tuple[str, int], TaskRecord] = {}
        """Each lease holder's last committed view of its task, by (task, epoch) (see ``transaction``)."""
        self._holder_locks: dict[tuple[str, int], anyio.Lock] = {}
        """PostgreSQL: serialises one lease holder's transactions on its task."""
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        """PostgreSQL: the same pool, for reads and single-statement writes (no BEGIN/COMMIT)."""
        self.apply_function = self.is_postgres
        """Write journal-only transactions with ``agent_runtime_apply`` (off if the database lacks it)."""
        self.dispatcher: Dispatcher | None = None
        """Set by the runtime: commits that make a task claimable lease it to this process's runner."""

    async def aclose(self) -> None:
        await self.settle()
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None
        if self._sync is not None:
            await anyio.to_thread.run_sync(self._sync.dispose)
        await self.engine.dispose()

    # -- running operations -------------------------------------------------------------------

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        if self._sync is None:
            async with self._autocommit.connect() as conn:
                return await conn.run_sync(fn)
        return self._sqlite_read(fn)

    def _sqlite_read(self, fn: Callable[[Connection], T]) -> T:
        """Inline read on the loop's own connection, outside any transaction (SQLite autocommit)."""
        conn = self._loop_connection(None)
        try:
            return fn(conn)
        finally:
            conn.rollback()  # ends SQLAlchemy's bookkeeping; no BEGIN was sent, nothing to roll back

    def _loop_connection(self, begin: str | None) -> Connection:
        """The connection inline operations use. They run one at a time on the event loop thread,
        so one connection serves them all (no pool checkout and reset per operation); work moved
        to a worker thread takes a pooled connection of its own."""
        assert self._sync is not None
        if self._loop_conn is None or self._loop_conn.closed or self._loop_conn.invalidated:
            self._loop_conn = self._sync.connect()
        return self._loop_conn.execution_options(sqlite_begin=begin)

    def _pooled_read(self, fn: Callable[[Connection], T]) -> T:
        assert self._sync is not None
        with self._sync.connect() as conn:
            return fn(conn.execution_options(sqlite_begin=None))

    async def _write(self, fn: Callable[[Connection], T], *, offload: bool = False) -> T:
        """One write transaction. ``offload``: on SQLite, run it on a worker thread (bulk work)."""
        if self._sync is None:
            async with self.engine.begin() as conn:
                return await conn.run_sync(fn)
        async with self._write_lock:
            if offload:
                result = await anyio.to_thread.run_sync(self._pooled_write, fn)
            else:
                result = self._sqlite_write(fn)
        self._maybe_checkpoint()
        return result

    def _sqlite_write(self, fn: Callable[[Connection], T]) -> T:
        """Inline write transaction on the loop's own connection (callers hold the writer lock)."""
        conn = self._loop_connection("IMMEDIATE")
        with conn.begin():
            result = fn(conn)
        self._commits += 1
        return result

    def _pooled_write(self, fn: Callable[[Connection], T]) -> T:
        assert self._sync is not None
        with self._sync.connect() as conn, conn.execution_options(sqlite_begin="IMMEDIATE").begin():
            result = fn(conn)
        self._commits += 1
        return result

    def _maybe_checkpoint(self) -> None:
        """SQLite: now and then, copy the WAL into the database on a worker thread (it may fsync).

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
        """Wait for background maintenance (a WAL checkpoint) still running."""
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])

    def _checkpoint_done(self, future: asyncio.Future[object]) -> None:
        self._checkpoint = None
        if not future.cancelled() and (error := future.exception()) is not None:
            log.warning("sqlite_checkpoint_failed", error=f"{type(error).__name__}: {error}")

    def _notify(self, conn: Connection, payload: str) -> None:
        if self.is_postgres:
            conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, payload)))

    def _payload(self, tx: TaskTx, events: list[Event], last_seq: int | None = None) -> str:
        """NOTIFY payload: which task, its last sequence number, how many events, whether workers
        should wake, and who sent it (so this process's listener can skip its own)."""
        last = tx.task.last_seq if last_seq is None else last_seq
        return json.dumps(
            {"task": tx.task.id, "last": last, "n": len(events), "work": tx.wakes_workers, "o": self.origin},
            separators=(",", ":"),
        )

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())

    # -- commands -------------------------------------------------------------------------------

    async def create_task(
        self, prompt: str, metadata: dict[str, Any], *, tenant: str = "default", submitted_by: str | None = None
    ) -> TaskRecord:
        now = rows.utcnow()
        task_id = rows.new_id("task")
        record = TaskRecord(
            id=task_id, status=TaskStatus.QUEUED, prompt=prompt, metadata=metadata, created_at=now,
            updated_at=now, current_plan_version=None, approved_plan_version=None, result=None, error=None,
            revision_feedback=None, lease_owner=None, lease_expires_at=None, lease_epoch=0, last_seq=0,
            tenant=tenant, submitted_by=submitted_by,
        )  # fmt: skip
        tx = TaskTx(record, now)
        tx.emit(TaskCreated(status=TaskStatus.QUEUED))
        tx.wakes_workers = True
        offered = self._offer(tx, None, new=True)

        def write(conn: Connection) -> list[Event]:
            row = {
                "id": task_id, "status": TaskStatus.QUEUED, "prompt": prompt, "metadata": metadata,
                "created_at": now, "updated_at": now, "lease_epoch": 0, "last_seq": 0,
                "tenant": tenant, "submitted_by": submitted_by,
            }  # fmt: skip
            execute(conn, _TASK_INSERT, row)
            events, _ = tx.flush(conn, None)
            self._notify(conn, self._payload(tx, events))
            return events

        with self._handing_off(tx, offered):
            events = await self._write(write)
        self._after_commit(tx, events)
        return tx.task

    @asynccontextmanager
    async def transaction(self, task_id: str, lease: Lease | None = None) -> AsyncIterator[TaskTx]:
        """A write transaction on one task. With ``lease``, it commits only if the lease still holds.

        The body only buffers writes (see :class:`TaskTx`); they are written together at the end.
        """
        if self._sync is not None:
            async with self._sqlite_transaction(task_id, lease) as tx:
                yield tx
        elif lease is not None:
            async with self._holder_transaction(task_id, lease) as tx:
                yield tx
        else:
            async with self.engine.begin() as conn:
                record = await conn.run_sync(_load_task, task_id, True)
                tx = TaskTx(record, rows.utcnow())
                yield tx
                offered = self._offer(tx, None)
                with self._handing_off(tx, offered):
                    events, ok = await conn.run_sync(tx.flush, None)
                    if not ok:  # cannot happen under the row lock; kept as a guard
                        raise self._lost(task_id, None)
                    if events or tx.wakes_workers:
                        await conn.run_sync(self._notify, self._payload(tx, events))
                    await conn.commit()  # before the runner adopts the lease
            self._after_commit(tx, events)

    @asynccontextmanager
    async def _sqlite_transaction(self, task_id: str, lease: Lease | None) -> AsyncIterator[TaskTx]:
        key = (task_id, lease.epoch) if lease is not None else None
        async with self._write_lock:
            snapshot = self._snapshots.get(key) if key is not None else None
            if snapshot is None:
                snapshot = self._sqlite_read(lambda c: _load_task(c, task_id, False))
            tx = TaskTx(_check_lease(snapshot, lease), rows.utcnow())
            yield tx
            offered = self._offer(tx, lease)
            try:
                with self._handing_off(tx, offered):
                    events = self._sqlite_write(lambda c: _flush_or_raise(tx, c, lease))
            except _Fenced:
                raise self._lost(task_id, key) from None
            if key is not None:
                self._remember(key, tx.task)
        self._after_commit(tx, events)
        self._maybe_checkpoint()

    @asynccontextmanager
    async def _holder_transaction(self, task_id: str, lease: Lease) -> AsyncIterator[TaskTx]:
        """PostgreSQL, lease holder: start from the last committed view, write in one round trip."""
        key = (task_id, lease.epoch)
        lock = self._holder_locks.setdefault(key, anyio.Lock(fast_acquire=True))
        try:
            async with lock:
                snapshot = self._snapshots.get(key)
                if snapshot is None:
                    snapshot = await self._read(lambda c: _load_task(c, task_id, False))
                tx = TaskTx(_check_lease(snapshot, lease), rows.utcnow())
                yield tx
                try:
                    events = await self._holder_write(tx, lease)
                except _Fenced:
                    raise self._lost(task_id, key) from None
                self._remember(key, tx.task)
        finally:
            if key not in self._snapshots and not lock.locked() and self._holder_locks.get(key) is lock:
                del self._holder_locks[key]  # the lease is over (or lost); a waiter would own the lock
        self._after_commit(tx, events)

    async def _holder_write(self, tx: TaskTx, lease: Lease) -> list[Event]:
        if not tx.changed:
            return []
        stored, values = tx.prepare()
        if self.apply_function:
            notify = None
            if stored or tx.wakes_workers:
                notify = (NOTIFY_CHANNEL, self._payload(tx, stored, values["last_seq"]))
            document = tx.apply_document(lease, stored, values, notify)
            if document is not None:
                applied = await self._apply(document)
                if applied is not None:
                    if not applied:
                        raise _Fenced
                    tx.committed(values)
                    return stored
        async with self.engine.begin() as conn:
            events = await conn.run_sync(lambda c: _flush_or_raise(tx, c, lease))
            if events or tx.wakes_workers:
                await conn.run_sync(self._notify, self._payload(tx, events))
        return events

    async def _apply(self, document: str) -> bool | None:
        """Run ``agent_runtime_apply`` (one statement, so atomic, outside any transaction): True if
        written, False if the fence refused, None if the database lacks the function.

        It goes straight to the pooled asyncpg connection: SQLAlchemy's connection and result
        layers cost about twice the round trip's own CPU here. If that fails, the statement runs
        again through SQLAlchemy, which raises its usual exceptions (and, after a dropped
        connection, replaces the pool's connections as usual). Running it again is safe: a server
        error wrote nothing, and a write that did commit before its connection dropped is refused
        by the fence (``last_seq`` moved on)."""
        raw = await self.engine.raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        try:
            return bool(await driver.fetchval(APPLY, document))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            if not isinstance(exc, asyncpg.PostgresError) or driver.is_closed():
                raw.invalidate(exc)
        except BaseException:
            raw.invalidate()  # cancelled mid-call (or a bug): the connection's state is unknown
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await greenlet_spawn(raw.close)
        try:
            async with self._autocommit.connect() as conn:
                return bool((await conn.exec_driver_sql(APPLY, (document,))).scalar())
        except sa.exc.ProgrammingError as exc:
            if getattr(exc.orig, "sqlstate", None) != UNDEFINED_FUNCTION:
                raise
        # Not migrated to 0002 yet (a rolling upgrade): nothing was written; use statements from now on.
        log.warning("store_apply_function_missing", hint="run `agent-runtime migrate`")
        self.apply_function = False
        return None

    def _offer(self, tx: TaskTx, lease: Lease | None, *, new: bool = False) -> TaskStatus | None:
        """Before a command's write that makes a task claimable: lease it to this process's runner
        in the same transaction if it has a free slot, saving a claim transaction and the trip
        through the claim loop. Returns the status it was offered in (None: left to the claims).

        Only for writers without a lease, and only when the task starts from a status no claim
        can take (a new task, or e.g. awaiting approval): then no other worker can have leased it
        since it was read, and the new epoch is the read epoch + 1."""
        if self.dispatcher is None or lease is not None or not tx.wakes_workers:
            return None
        if not new and tx.started_from.status in CLAIMABLE:
            return None
        status = tx.task.status
        reserved = self.dispatcher.reserve(status)
        if reserved is None:
            return None
        owner, seconds = reserved
        tx.lease_to(owner, tx.now + timedelta(seconds=seconds))
        return status

    @contextmanager
    def _handing_off(self, tx: TaskTx, offered: TaskStatus | None) -> Iterator[None]:
        """Around the write of an offered transaction: on commit the runner adopts the lease (and
        the view is kept, like a claim's); on failure the reserved slot is freed."""
        if offered is None or self.dispatcher is None:
            yield
            return
        try:
            yield
        except BaseException:
            self.dispatcher.unreserve(offered)
            raise
        task = tx.task
        assert task.lease_owner is not None
        lease = Lease(task.id, task.lease_owner, task.lease_epoch, offered, task.last_seq)
        self._remember((task.id, lease.epoch), task, held=True)
        self.dispatcher.adopt(lease)

    def _remember(self, key: tuple[str, int], task: TaskRecord, *, held: bool = False) -> None:
        """Keep a lease holder's view after its commit (while the task is still leased; ``held``:
        just claimed, still queued or approved)."""
        if held or task.status in LEASED:
            if len(self._snapshots) > MAX_SNAPSHOTS:  # abandoned leases (cancelled workers): start over
                self._snapshots.clear()
                for k, lock in list(self._holder_locks.items()):
                    if not lock.locked():
                        del self._holder_locks[k]
            self._snapshots[key] = task
        else:
            self._snapshots.pop(key, None)

    def _forget(self, key: tuple[str, int]) -> None:
        self._snapshots.pop(key, None)
        lock = self._holder_locks.get(key)
        if lock is not None and not lock.locked():
            del self._holder_locks[key]

    def _lost(self, task_id: str, key: tuple[str, int] | None) -> LeaseLostError:
        if key is not None:
            self._snapshots.pop(key, None)
        return LeaseLostError(f"task {task_id}: lease lost before commit", details={"task_id": task_id})

    def _after_commit(self, tx: TaskTx, events: list[Event]) -> None:
        if events:
            self.listener.events_committed(events)
        if tx.wakes_workers:
            self.listener.work_available()

    # -- leases ---------------------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        statuses: Sequence[TaskStatus],
        *,
        limit: int,
        lease_seconds: float,
        global_limit: int | None = None,
    ) -> list[Lease]:
        """Lease up to ``limit`` claimable tasks in ``statuses``: unleased, or with an expired lease."""
        [leases] = await self.claim_batch(owner, [ClaimRequest(statuses, limit, global_limit)], lease_seconds)
        return leases

    async def claim_batch(
        self, owner: str, requests: Sequence[ClaimRequest], lease_seconds: float
    ) -> list[list[Lease]]:
        """Several claims (e.g. planning and execution work) in one transaction."""
        if all(r.limit <= 0 for r in requests):
            return [[] for _ in requests]

        def claim_all(conn: Connection) -> list[list[TaskRecord]]:
            return [self._claim(conn, owner, r, lease_seconds) for r in requests]

        claimed = await self._write(claim_all)
        out: list[list[Lease]] = []
        for records in claimed:
            leases = []
            for record in records:
                lease = Lease(record.id, owner, record.lease_epoch, record.status, record.last_seq)
                self._remember((record.id, lease.epoch), record, held=True)  # the first write reads nothing
                leases.append(lease)
            out.append(leases)
        return out

    def _claim(self, conn: Connection, owner: str, request: ClaimRequest, lease_seconds: float) -> list[TaskRecord]:
        wanted = [str(s) for s in request.statuses if s in CLAIMABLE]  # awaiting approval is never leased
        if request.limit <= 0 or not wanted:
            return []
        now = rows.utcnow()
        room = request.limit
        if request.global_limit is not None:
            room = min(room, self._global_room(conn, wanted, request.global_limit, now))
            if room <= 0:
                return []
        params = {
            "owner": owner, "now": now, "room": room, "expires": now + timedelta(seconds=lease_seconds),
        }  # fmt: skip
        return [rows.task(r) for r in execute(conn, _claim_statement(tuple(wanted), self.is_postgres), params).rows]

    def _global_room(self, conn: Connection, statuses: list[str], global_limit: int, now: datetime) -> int:
        if self.is_postgres:
            # Serialise global-limit claims across replicas for the rest of this transaction.
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(0x61677274)))
        active = conn.scalar(
            sa.select(sa.func.count())
            .select_from(t.tasks)
            .where(t.tasks.c.status.in_(statuses))
            .where(t.tasks.c.lease_expires_at >= now)
        )
        return global_limit - int(active or 0)

    async def renew(self, lease: Lease, lease_seconds: float) -> bool:
        """Extend the lease; False means it was lost (taken over, cancelled, or finished)."""

        def renew(conn: Connection) -> bool:
            expires = rows.utcnow() + timedelta(seconds=lease_seconds)
            return execute(conn, _RENEW, {**_owned(lease), "expires": expires}).rowcount == 1

        renewed = await self._write(renew)
        if not renewed:
            self._forget((lease.task_id, lease.epoch))
        return renewed

    async def release(self, lease: Lease) -> None:
        """Give the task back (e.g. at shutdown) so another worker may claim it at once."""

        def release(conn: Connection) -> bool:
            released = execute(conn, _RELEASE, _owned(lease)).rowcount == 1
            if released:
                self._notify(conn, json.dumps({"task": lease.task_id, "last": 0, "work": True}))
            return released

        self._forget((lease.task_id, lease.epoch))
        if await self._write(release):
            self.listener.work_available()

    # -- queries --------------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> TaskRecord:
        return await self._read(lambda conn: _load_task(conn, task_id, False))

    async def list_tasks(
        self,
        *,
        status: TaskStatus | None,
        limit: int,
        cursor: str | None,
        tenant: str | None = None,
        submitted_by: str | None = None,
    ) -> tuple[list[TaskRecord], str | None]:
        """Newest first. ``cursor`` is the last id of the previous page. ``tenant`` and
        ``submitted_by``, when given, keep only that tenant's (that subject's) tasks."""
        stmt = sa.select(t.tasks).order_by(t.tasks.c.id.desc()).limit(limit + 1)
        if status is not None:
            stmt = stmt.where(t.tasks.c.status == status)
        if tenant is not None:
            stmt = stmt.where(t.tasks.c.tenant == tenant)
        if submitted_by is not None:
            stmt = stmt.where(t.tasks.c.submitted_by == submitted_by)
        if cursor:
            stmt = stmt.where(t.tasks.c.id < cursor)
        found = await self._read(lambda conn: [rows.task(r) for r in conn.execute(stmt).mappings()])
        next_cursor = found[limit - 1].id if len(found) > limit else None
        return found[:limit], next_cursor

    async def plan_versions(self, task_id: str) -> list[PlanVersionRecord]:
        stmt = (
            sa.select(t.plan_versions).where(t.plan_versions.c.task_id == task_id).order_by(t.plan_versions.c.version)
        )
        return await self._read(lambda conn: [rows.plan_version(r) for r in conn.execute(stmt).mappings()])

    async def plan_version(self, task_id: str, version: int) -> PlanVersionRecord:
        params = {"task_id": task_id, "version": version}
        row = await self._read(lambda conn: execute(conn, _PLAN_VERSION, params).first())
        if row is None:
            raise NotFoundError(f"task {task_id} has no plan version {version}", details={"task_id": task_id})
        return rows.plan_version(row)

    async def steps(self, task_id: str, version: int) -> list[StepRecord]:
        params = {"task_id": task_id, "version": version}
        return await self._read(lambda conn: [rows.step(r) for r in execute(conn, _STEPS, params).rows])

    async def tool_calls(self, task_id: str, step_id: str | None = None) -> list[ToolCallRecord]:
        stmt, params = (
            (_CALLS, {"task_id": task_id})
            if step_id is None
            else (_STEP_CALLS, {"task_id": task_id, "step_id": step_id})
        )
        return await self._read(lambda conn: [rows.tool_call(r) for r in execute(conn, stmt, params).rows])

    async def execution_state(
        self, task_id: str
    ) -> tuple[TaskRecord, PlanVersionRecord | None, list[StepRecord], list[ToolCallRecord]]:
        """Everything a worker needs to start or resume execution, in one read."""

        def load(
            conn: Connection,
        ) -> tuple[TaskRecord, PlanVersionRecord | None, list[StepRecord], list[ToolCallRecord]]:
            task = _load_task(conn, task_id, False)
            version = task.approved_plan_version
            if version is None:
                return task, None, [], []
            params = {"task_id": task_id, "version": version}
            plan_row = execute(conn, _PLAN_VERSION, params).first()
            steps = execute(conn, _STEPS, params).rows
            calls = execute(conn, _CALLS, params).rows
            return (
                task,
                rows.plan_version(plan_row) if plan_row is not None else None,
                [rows.step(r) for r in steps],
                [rows.tool_call(r) for r in calls],
            )

        return await self._read(load)

    async def approvals(self, task_id: str) -> list[ApprovalRecord]:
        stmt = sa.select(t.approvals).where(t.approvals.c.task_id == task_id).order_by(t.approvals.c.id)
        return await self._read(lambda conn: [rows.approval(r) for r in conn.execute(stmt).mappings()])

    async def events_after(self, task_id: str, after: int, limit: int = 1000) -> list[Event]:
        params = {"task_id": task_id, "after": after, "limit": limit}
        return await self._read(lambda conn: [rows.event(r) for r in execute(conn, _EVENTS_AFTER, params).rows])

    async def count_by_status(self) -> dict[str, int]:
        stmt = sa.select(t.tasks.c.status, sa.func.count()).group_by(t.tasks.c.status)
        return await self._read(lambda conn: {status: int(n) for status, n in conn.execute(stmt).all()})

    # -- housekeeping ---------------------------------------------------------------------------

    async def try_housekeeping_lease(self, name: str, owner: str, seconds: float) -> bool:
        """Take or renew a named singleton lease (e.g. for retention sweeps)."""

        def take(conn: Connection) -> bool:
            now = rows.utcnow()
            expires = now + timedelta(seconds=seconds)
            row = conn.execute(sa.select(t.housekeeping).where(t.housekeeping.c.name == name)).mappings().first()
            if row is None:
                conn.execute(t.housekeeping.insert().values(name=name, owner=owner, expires_at=expires))
                return True
            current = rows.aware(row["expires_at"])
            if row["owner"] != owner and current is not None and current > now:
                return False
            conn.execute(
                t.housekeeping.update().where(t.housekeeping.c.name == name).values(owner=owner, expires_at=expires)
            )
            return True

        return await self._write(take)

    async def prune_finished(self, older_than: datetime) -> int:
        """Delete finished tasks (and their plans, steps, calls, approvals and events)."""

        def prune(conn: Connection) -> int:
            ids_q = sa.select(t.tasks.c.id).where(
                t.tasks.c.finished_at.is_not(None), t.tasks.c.finished_at < older_than
            )
            ids = [r[0] for r in conn.execute(ids_q).all()]
            if ids:
                for table in (t.events, t.tool_calls, t.steps, t.approvals, t.plan_versions):
                    conn.execute(table.delete().where(table.c.task_id.in_(ids)))
                conn.execute(t.tasks.delete().where(t.tasks.c.id.in_(ids)))
            return len(ids)

        return await self._write(prune, offload=True)


def _load_task(conn: Connection, task_id: str, for_update: bool) -> TaskRecord:
    row = execute(conn, _TASK_FOR_UPDATE if for_update else _TASK, {"id": task_id}).first()
    if row is None:
        raise NotFoundError(f"task {task_id} not found", details={"task_id": task_id})
    return rows.task(row)


def _check_lease(record: TaskRecord, lease: Lease | None) -> TaskRecord:
    if lease is not None and (record.lease_epoch != lease.epoch or record.lease_owner != lease.owner):
        raise LeaseLostError(
            f"task {record.id}: lease epoch {lease.epoch} was superseded by {record.lease_epoch}",
            details={"task_id": record.id, "epoch": lease.epoch, "current_epoch": record.lease_epoch},
        )
    return record


def _flush_or_raise(tx: TaskTx, conn: Connection, lease: Lease | None) -> list[Event]:
    events, ok = tx.flush(conn, lease)
    if not ok:
        raise _Fenced
    return events


def _owned(lease: Lease) -> dict[str, Any]:
    """Parameters naming the lease, for the statements ``_owned_update`` builds (``_RENEW``, ``_RELEASE``)."""
    return {"k_id": lease.task_id, "k_epoch": lease.epoch, "k_owner": lease.owner}


def _owned_update(**values: Any) -> sa.Update:
    return (
        t.tasks.update()
        .where(t.tasks.c.id == sa.bindparam("k_id"))
        .where(t.tasks.c.lease_epoch == sa.bindparam("k_epoch"))
        .where(t.tasks.c.lease_owner == sa.bindparam("k_owner"))
        .values(**values)
    )


@lru_cache(maxsize=16)
def _claim_statement(statuses: tuple[str, ...], postgres: bool) -> sa.Update:
    """Lease up to ``:room`` tasks in ``statuses`` that nobody holds (or whose lease expired)."""
    candidates = (
        sa.select(t.tasks.c.id)
        .where(sa.or_(*(t.tasks.c.status == status for status in statuses)))
        .where(sa.or_(t.tasks.c.lease_expires_at.is_(None), t.tasks.c.lease_expires_at < sa.bindparam("now")))
        .order_by(t.tasks.c.updated_at)
        .limit(sa.bindparam("room", type_=sa.Integer))
    )
    if postgres:
        candidates = candidates.with_for_update(skip_locked=True)
    return (
        t.tasks.update()
        .where(t.tasks.c.id.in_(candidates.scalar_subquery()))
        .values(
            lease_owner=sa.bindparam("owner"),
            lease_expires_at=sa.bindparam("expires"),
            lease_epoch=t.tasks.c.lease_epoch + 1,
        )
        .returning(*t.tasks.c)
    )


# Kept statements (see ``store.prepared``): built once, with named parameters.
_TASK = sa.select(t.tasks).where(t.tasks.c.id == sa.bindparam("id"))
_TASK_FOR_UPDATE = _TASK.with_for_update()
_TASK_INSERT = t.tasks.insert()
_RENEW = _owned_update(lease_expires_at=sa.bindparam("expires"))
_RELEASE = _owned_update(lease_owner=None, lease_expires_at=None)
_PLAN_VERSION = sa.select(t.plan_versions).where(
    t.plan_versions.c.task_id == sa.bindparam("task_id"), t.plan_versions.c.version == sa.bindparam("version")
)
_STEPS = (
    sa.select(t.steps)
    .where(t.steps.c.task_id == sa.bindparam("task_id"), t.steps.c.plan_version == sa.bindparam("version"))
    .order_by(t.steps.c.position)
)
_CALL_ORDER = (t.tool_calls.c.turn, t.tool_calls.c.call_index, t.tool_calls.c.started_at)
_CALLS = sa.select(t.tool_calls).where(t.tool_calls.c.task_id == sa.bindparam("task_id")).order_by(*_CALL_ORDER)
_STEP_CALLS = (
    sa.select(t.tool_calls)
    .where(t.tool_calls.c.task_id == sa.bindparam("task_id"), t.tool_calls.c.step_id == sa.bindparam("step_id"))
    .order_by(*_CALL_ORDER)
)
_EVENTS_AFTER = (
    sa.select(t.events)
    .where(t.events.c.task_id == sa.bindparam("task_id"), t.events.c.seq > sa.bindparam("after"))
    .order_by(t.events.c.seq)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
