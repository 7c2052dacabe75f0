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
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import anyio
import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_runtime.domain.events import Event, EventType
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
from agent_runtime.store.tx import TaskTx

NOTIFY_CHANNEL = "agent_runtime"
CHECKPOINT_EVERY = 1000
CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
T = TypeVar("T")


class StoreListener(Protocol):
    """Told about commits, in process. The event bus implements it."""

    def events_committed(self, events: Sequence[Event]) -> None: ...

    def work_available(self) -> None: ...


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
        self.origin = secrets.token_hex(6)
        """Tags this process's NOTIFY payloads, so its own listener can skip them."""
        self._write_lock = anyio.Lock()  # used for SQLite only: one writer at a time, queued here
        self._commits = self._checkpointed = 0
        self._checkpointing = False
        self._snapshots: dict[tuple[str, int | None], TaskRecord] = {}
        """SQLite: each lease holder's last committed view of its task (see ``transaction``)."""

    async def aclose(self) -> None:
        if self._sync is not None:
            await anyio.to_thread.run_sync(self._sync.dispose)
        await self.engine.dispose()

    # -- running operations -------------------------------------------------------------------

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        if self._sync is None:
            async with self.engine.connect() as conn:
                return await conn.run_sync(fn)
        return self._sqlite_read(fn)

    def _sqlite_read(self, fn: Callable[[Connection], T]) -> T:
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
                result = await anyio.to_thread.run_sync(self._sqlite_write, fn)
            else:
                result = self._sqlite_write(fn)
        await self._maybe_checkpoint()
        return result

    def _sqlite_write(self, fn: Callable[[Connection], T]) -> T:
        assert self._sync is not None
        with self._sync.connect() as conn, conn.execution_options(sqlite_begin="IMMEDIATE").begin():
            result = fn(conn)
        self._commits += 1
        return result

    async def _maybe_checkpoint(self) -> None:
        """SQLite: copy the WAL into the database on a worker thread (it may fsync), now and then."""
        if self._commits - self._checkpointed < CHECKPOINT_EVERY or self._checkpointing:
            return
        self._checkpointing, self._checkpointed = True, self._commits
        try:
            await anyio.to_thread.run_sync(self._sqlite_read, lambda c: c.exec_driver_sql(CHECKPOINT).all())
        finally:
            self._checkpointing = False

    def _notify(self, conn: Connection, payload: str) -> None:
        if self.is_postgres:
            conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, payload)))

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())

    # -- commands -------------------------------------------------------------------------------

    async def create_task(self, prompt: str, metadata: dict[str, Any]) -> TaskRecord:
        now = rows.utcnow()
        task_id = rows.new_id("task")
        record = TaskRecord(
            id=task_id, status=TaskStatus.QUEUED, prompt=prompt, metadata=metadata, created_at=now,
            updated_at=now, current_plan_version=None, approved_plan_version=None, result=None, error=None,
            revision_feedback=None, lease_owner=None, lease_expires_at=None, lease_epoch=0, last_seq=0,
        )  # fmt: skip
        tx = TaskTx(record, now)
        tx.emit(EventType.TASK_CREATED, {"status": TaskStatus.QUEUED.value})
        tx.wakes_workers = True

        def write(conn: Connection) -> list[Event]:
            conn.execute(
                t.tasks.insert().values(
                    id=task_id,
                    status=TaskStatus.QUEUED,
                    prompt=prompt,
                    metadata=metadata,
                    created_at=now,
                    updated_at=now,
                    lease_epoch=0,
                    last_seq=0,
                )  # fmt: skip
            )
            events, _ = tx.flush(conn, None)
            self._notify(conn, _payload(tx, events, self.origin))
            return events

        events = await self._write(write)
        self._after_commit(tx, events)
        return tx.task

    @asynccontextmanager
    async def transaction(self, task_id: str, lease: Lease | None = None) -> AsyncIterator[TaskTx]:
        """A write transaction on one task. With ``lease``, it commits only if the lease still holds.

        The body only buffers writes (see :class:`TaskTx`); they are written together at the end.
        """
        fence = lease.epoch if lease else None
        if self._sync is None:
            async with self.engine.begin() as conn:
                record = await conn.run_sync(_load_task, task_id, True)
                tx = TaskTx(_check_lease(record, lease), rows.utcnow())
                yield tx
                events, ok = await conn.run_sync(tx.flush, lease)
                if not ok:
                    raise LeaseLostError(f"task {task_id}: lease lost before commit", details={"task_id": task_id})
                if events or tx.wakes_workers:
                    await conn.run_sync(self._notify, _payload(tx, events, self.origin))
        else:
            async with self._write_lock:
                # Under a lease only its holder writes the task (cancel also bumps the epoch), so the
                # holder's last committed view is current; the fenced update checks it anyway.
                snapshot = self._snapshots.get((task_id, fence)) if lease is not None else None
                if snapshot is None:
                    snapshot = self._sqlite_read(lambda c: _load_task(c, task_id, False))
                tx = TaskTx(_check_lease(snapshot, lease), rows.utcnow())
                yield tx
                try:
                    events = self._sqlite_write(lambda c: _flush_or_raise(tx, c, lease))
                except _Fenced:
                    self._snapshots.pop((task_id, fence), None)
                    raise LeaseLostError(
                        f"task {task_id}: lease lost before commit", details={"task_id": task_id}
                    ) from None
                if lease is not None:
                    if tx.task.status in LEASED:
                        if len(self._snapshots) > 10_000:  # abandoned leases (cancelled workers): start over
                            self._snapshots.clear()
                        self._snapshots[(task_id, fence)] = tx.task
                    else:
                        self._snapshots.pop((task_id, fence), None)
        self._after_commit(tx, events)
        if self._sync is not None:
            await self._maybe_checkpoint()

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

        def claim_all(conn: Connection) -> list[list[Lease]]:
            return [self._claim(conn, owner, r, lease_seconds) for r in requests]

        return await self._write(claim_all)

    def _claim(self, conn: Connection, owner: str, request: ClaimRequest, lease_seconds: float) -> list[Lease]:
        wanted = [str(s) for s in request.statuses if s in CLAIMABLE]  # awaiting approval is never leased
        if request.limit <= 0 or not wanted:
            return []
        now = rows.utcnow()
        room = request.limit
        if request.global_limit is not None:
            room = min(room, self._global_room(conn, wanted, request.global_limit, now))
            if room <= 0:
                return []
        candidates = (
            sa.select(t.tasks.c.id)
            .where(t.tasks.c.status.in_(wanted))
            .where(sa.or_(t.tasks.c.lease_expires_at.is_(None), t.tasks.c.lease_expires_at < now))
            .order_by(t.tasks.c.updated_at)
            .limit(room)
        )
        if self.is_postgres:
            candidates = candidates.with_for_update(skip_locked=True)
        stmt = (
            t.tasks.update()
            .where(t.tasks.c.id.in_(candidates.scalar_subquery()))
            .values(
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                lease_epoch=t.tasks.c.lease_epoch + 1,
            )
            .returning(t.tasks.c.id, t.tasks.c.lease_epoch, t.tasks.c.status, t.tasks.c.last_seq)
        )
        return [
            Lease(task_id=r[0], owner=owner, epoch=r[1], status=TaskStatus(r[2]), last_seq=r[3])
            for r in conn.execute(stmt).all()
        ]

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
            return conn.execute(_owned(lease).values(lease_expires_at=expires)).rowcount == 1

        renewed = await self._write(renew)
        if not renewed:
            self._snapshots.pop((lease.task_id, lease.epoch), None)
        return renewed

    async def release(self, lease: Lease) -> None:
        """Give the task back (e.g. at shutdown) so another worker may claim it at once."""

        def release(conn: Connection) -> bool:
            released = conn.execute(_owned(lease).values(lease_owner=None, lease_expires_at=None)).rowcount == 1
            if released:
                self._notify(conn, json.dumps({"task": lease.task_id, "last": 0, "work": True}))
            return released

        self._snapshots.pop((lease.task_id, lease.epoch), None)
        if await self._write(release):
            self.listener.work_available()

    # -- queries --------------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> TaskRecord:
        return await self._read(lambda conn: _load_task(conn, task_id, False))

    async def list_tasks(
        self, *, status: TaskStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[TaskRecord], str | None]:
        """Newest first. ``cursor`` is the last id of the previous page."""
        stmt = sa.select(t.tasks).order_by(t.tasks.c.id.desc()).limit(limit + 1)
        if status is not None:
            stmt = stmt.where(t.tasks.c.status == status)
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
        stmt = sa.select(t.plan_versions).where(
            t.plan_versions.c.task_id == task_id, t.plan_versions.c.version == version
        )
        row = await self._read(lambda conn: conn.execute(stmt).mappings().first())
        if row is None:
            raise NotFoundError(f"task {task_id} has no plan version {version}", details={"task_id": task_id})
        return rows.plan_version(row)

    async def steps(self, task_id: str, version: int) -> list[StepRecord]:
        stmt = (
            sa.select(t.steps)
            .where(t.steps.c.task_id == task_id, t.steps.c.plan_version == version)
            .order_by(t.steps.c.position)
        )
        return await self._read(lambda conn: [rows.step(r) for r in conn.execute(stmt).mappings()])

    async def tool_calls(self, task_id: str, step_id: str | None = None) -> list[ToolCallRecord]:
        stmt = sa.select(t.tool_calls).where(t.tool_calls.c.task_id == task_id)
        if step_id is not None:
            stmt = stmt.where(t.tool_calls.c.step_id == step_id)
        stmt = stmt.order_by(t.tool_calls.c.turn, t.tool_calls.c.call_index, t.tool_calls.c.started_at)
        return await self._read(lambda conn: [rows.tool_call(r) for r in conn.execute(stmt).mappings()])

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
            plan_row = (
                conn.execute(
                    sa.select(t.plan_versions).where(
                        t.plan_versions.c.task_id == task_id, t.plan_versions.c.version == version
                    )
                )
                .mappings()
                .first()
            )
            steps = conn.execute(
                sa.select(t.steps)
                .where(t.steps.c.task_id == task_id, t.steps.c.plan_version == version)
                .order_by(t.steps.c.position)
            ).mappings()
            calls = conn.execute(
                sa.select(t.tool_calls)
                .where(t.tool_calls.c.task_id == task_id)
                .order_by(t.tool_calls.c.turn, t.tool_calls.c.call_index, t.tool_calls.c.started_at)
            ).mappings()
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
        stmt = (
            sa.select(t.events)
            .where(t.events.c.task_id == task_id, t.events.c.seq > after)
            .order_by(t.events.c.seq)
            .limit(limit)
        )
        return await self._read(lambda conn: [rows.event(r) for r in conn.execute(stmt).mappings()])

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
    stmt = sa.select(t.tasks).where(t.tasks.c.id == task_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).mappings().first()
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


def _owned(lease: Lease) -> sa.Update:
    return (
        t.tasks.update()
        .where(t.tasks.c.id == lease.task_id)
        .where(t.tasks.c.lease_epoch == lease.epoch)
        .where(t.tasks.c.lease_owner == lease.owner)
    )


def _payload(tx: TaskTx, events: list[Event], origin: str) -> str:
    """NOTIFY payload: which task, its last sequence number, whether workers should wake, and who sent it."""
    return json.dumps(
        {"task": tx.task.id, "last": tx.task.last_seq, "n": len(events), "work": tx.wakes_workers, "o": origin},
        separators=(",", ":"),
    )
