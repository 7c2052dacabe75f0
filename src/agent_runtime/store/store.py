"""``TaskStore``: the one storage implementation, on SQLite or PostgreSQL through SQLAlchemy Core.

Writes happen in :meth:`TaskStore.transaction` (one task, row locked, events in the same commit,
fenced by lease epoch) or in the claim/renew/release lease operations. After a commit the stored
events are handed to the :class:`StoreListener` (the in-process event bus); on PostgreSQL a
``NOTIFY`` in the same transaction tells the other replicas.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Protocol

import anyio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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
from agent_runtime.store.tx import TaskTx

NOTIFY_CHANNEL = "agent_runtime"


class StoreListener(Protocol):
    """Told about commits, in process. The event bus implements it."""

    def events_committed(self, events: Sequence[Event]) -> None: ...

    def work_available(self) -> None: ...


class _NoListener:
    def events_committed(self, events: Sequence[Event]) -> None:
        pass

    def work_available(self) -> None:
        pass


class TaskStore:
    def __init__(self, engine: AsyncEngine, listener: StoreListener | None = None) -> None:
        self.engine = engine
        self.listener: StoreListener = listener or _NoListener()
        self.is_postgres = engine.dialect.name == "postgresql"
        # SQLite has one writer at a time; queueing writers here beats spinning on busy_timeout.
        self._write_lock = anyio.Lock() if not self.is_postgres else None

    # -- connections ------------------------------------------------------------------------------

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.connect() as conn:
            conn = await conn.execution_options(sqlite_begin="IMMEDIATE")
            async with conn.begin():
                yield conn

    async def _notify(self, conn: AsyncConnection, payload: str) -> None:
        if self.is_postgres:
            await conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, payload)))

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    # -- commands -------------------------------------------------------------------------------

    async def create_task(self, prompt: str, metadata: dict[str, Any]) -> TaskRecord:
        now = rows.utcnow()
        task_id = rows.new_id("task")
        async with self._write() as conn:
            await conn.execute(
                t.tasks.insert().values(
                    id=task_id,
                    status=TaskStatus.QUEUED,
                    prompt=prompt,
                    metadata=metadata,
                    created_at=now,
                    updated_at=now,
                    lease_epoch=0,
                    last_seq=0,
                )
            )
            record = await self._lock_task(conn, task_id)
            tx = TaskTx(conn, record, now)
            tx.emit(EventType.TASK_CREATED, {"status": TaskStatus.QUEUED.value})
            tx.wakes_workers = True
            events, _ = await tx.flush(None)
            await self._notify(conn, _payload(tx, events))
        self._after_commit(tx, events)
        return tx.task

    @asynccontextmanager
    async def transaction(self, task_id: str, lease: Lease | None = None) -> AsyncIterator[TaskTx]:
        """Open a write transaction on one task. With ``lease``, it commits only if the lease holds."""
        now = rows.utcnow()
        async with self._write() as conn:
            record = await self._lock_task(conn, task_id)
            if lease is not None and (record.lease_epoch != lease.epoch or record.lease_owner != lease.owner):
                raise LeaseLostError(
                    f"task {task_id}: lease epoch {lease.epoch} was superseded by {record.lease_epoch}",
                    details={"task_id": task_id, "epoch": lease.epoch, "current_epoch": record.lease_epoch},
                )
            tx = TaskTx(conn, record, now)
            yield tx
            events, ok = await tx.flush(lease.epoch if lease else None)
            if not ok:
                raise LeaseLostError(f"task {task_id}: lease lost before commit", details={"task_id": task_id})
            if events or tx.wakes_workers:
                await self._notify(conn, _payload(tx, events))
        self._after_commit(tx, events)

    def _after_commit(self, tx: TaskTx, events: list[Event]) -> None:
        if events:
            self.listener.events_committed(events)
        if tx.wakes_workers:
            self.listener.work_available()

    async def _lock_task(self, conn: AsyncConnection, task_id: str) -> TaskRecord:
        stmt = sa.select(t.tasks).where(t.tasks.c.id == task_id)
        if self.is_postgres:
            stmt = stmt.with_for_update()
        row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            raise NotFoundError(f"task {task_id} not found", details={"task_id": task_id})
        return rows.task(row)

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
        statuses = [s for s in statuses if s in CLAIMABLE]  # a task awaiting approval is never leased
        if limit <= 0 or not statuses:
            return []
        now = rows.utcnow()
        async with self._write() as conn:
            if global_limit is not None:
                limit = min(limit, await self._global_room(conn, statuses, global_limit, now))
                if limit <= 0:
                    return []
            candidates = (
                sa.select(t.tasks.c.id)
                .where(t.tasks.c.status.in_([str(s) for s in statuses]))
                .where(sa.or_(t.tasks.c.lease_expires_at.is_(None), t.tasks.c.lease_expires_at < now))
                .order_by(t.tasks.c.updated_at)
                .limit(limit)
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
                .returning(t.tasks.c.id, t.tasks.c.lease_epoch, t.tasks.c.status)
            )
            result = (await conn.execute(stmt)).all()
        return [Lease(task_id=r[0], owner=owner, epoch=r[1], status=TaskStatus(r[2])) for r in result]

    async def _global_room(
        self, conn: AsyncConnection, statuses: Sequence[TaskStatus], global_limit: int, now: datetime
    ) -> int:
        if self.is_postgres:
            # Serialise global-limit claims across replicas for the rest of this transaction.
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(0x61677274)))
        active = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(t.tasks)
            .where(t.tasks.c.status.in_([str(s) for s in statuses]))
            .where(t.tasks.c.lease_expires_at >= now)
        )
        return global_limit - int(active or 0)

    async def renew(self, lease: Lease, lease_seconds: float) -> bool:
        """Extend the lease; False means it was lost (taken over, cancelled, or finished)."""
        now = rows.utcnow()
        async with self._write() as conn:
            result = await conn.execute(
                t.tasks.update()
                .where(t.tasks.c.id == lease.task_id)
                .where(t.tasks.c.lease_epoch == lease.epoch)
                .where(t.tasks.c.lease_owner == lease.owner)
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
            )
        return result.rowcount == 1

    async def release(self, lease: Lease) -> None:
        """Give the task back (e.g. at shutdown) so another worker may claim it at once."""
        async with self._write() as conn:
            result = await conn.execute(
                t.tasks.update()
                .where(t.tasks.c.id == lease.task_id)
                .where(t.tasks.c.lease_epoch == lease.epoch)
                .where(t.tasks.c.lease_owner == lease.owner)
                .values(lease_owner=None, lease_expires_at=None)
            )
            if result.rowcount:
                await self._notify(conn, f"work:{lease.task_id}")
        if result.rowcount:
            self.listener.work_available()

    # -- queries --------------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> TaskRecord:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(t.tasks).where(t.tasks.c.id == task_id))).mappings().first()
        if row is None:
            raise NotFoundError(f"task {task_id} not found", details={"task_id": task_id})
        return rows.task(row)

    async def list_tasks(
        self, *, status: TaskStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[TaskRecord], str | None]:
        """Newest first. ``cursor`` is the last id of the previous page."""
        stmt = sa.select(t.tasks).order_by(t.tasks.c.id.desc()).limit(limit + 1)
        if status is not None:
            stmt = stmt.where(t.tasks.c.status == status)
        if cursor:
            stmt = stmt.where(t.tasks.c.id < cursor)
        async with self.engine.connect() as conn:
            found = [rows.task(r) for r in (await conn.execute(stmt)).mappings()]
        next_cursor = found[limit - 1].id if len(found) > limit else None
        return found[:limit], next_cursor

    async def plan_versions(self, task_id: str) -> list[PlanVersionRecord]:
        stmt = (
            sa.select(t.plan_versions).where(t.plan_versions.c.task_id == task_id).order_by(t.plan_versions.c.version)
        )
        async with self.engine.connect() as conn:
            return [rows.plan_version(r) for r in (await conn.execute(stmt)).mappings()]

    async def plan_version(self, task_id: str, version: int) -> PlanVersionRecord:
        stmt = sa.select(t.plan_versions).where(
            t.plan_versions.c.task_id == task_id, t.plan_versions.c.version == version
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            raise NotFoundError(f"task {task_id} has no plan version {version}", details={"task_id": task_id})
        return rows.plan_version(row)

    async def steps(self, task_id: str, version: int) -> list[StepRecord]:
        stmt = (
            sa.select(t.steps)
            .where(t.steps.c.task_id == task_id, t.steps.c.plan_version == version)
            .order_by(t.steps.c.position)
        )
        async with self.engine.connect() as conn:
            return [rows.step(r) for r in (await conn.execute(stmt)).mappings()]

    async def tool_calls(self, task_id: str, step_id: str | None = None) -> list[ToolCallRecord]:
        stmt = sa.select(t.tool_calls).where(t.tool_calls.c.task_id == task_id)
        if step_id is not None:
            stmt = stmt.where(t.tool_calls.c.step_id == step_id)
        stmt = stmt.order_by(t.tool_calls.c.turn, t.tool_calls.c.call_index, t.tool_calls.c.started_at)
        async with self.engine.connect() as conn:
            return [rows.tool_call(r) for r in (await conn.execute(stmt)).mappings()]

    async def approvals(self, task_id: str) -> list[ApprovalRecord]:
        stmt = sa.select(t.approvals).where(t.approvals.c.task_id == task_id).order_by(t.approvals.c.id)
        async with self.engine.connect() as conn:
            return [rows.approval(r) for r in (await conn.execute(stmt)).mappings()]

    async def events_after(self, task_id: str, after: int, limit: int = 1000) -> list[Event]:
        stmt = (
            sa.select(t.events)
            .where(t.events.c.task_id == task_id, t.events.c.seq > after)
            .order_by(t.events.c.seq)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [rows.event(r) for r in (await conn.execute(stmt)).mappings()]

    async def count_by_status(self) -> dict[str, int]:
        stmt = sa.select(t.tasks.c.status, sa.func.count()).group_by(t.tasks.c.status)
        async with self.engine.connect() as conn:
            return {status: int(n) for status, n in (await conn.execute(stmt)).all()}

    async def count_live_leases(self) -> int:
        stmt = (
            sa.select(sa.func.count())
            .select_from(t.tasks)
            .where(t.tasks.c.status.in_([str(s) for s in LEASED]), t.tasks.c.lease_owner.is_not(None))
        )
        async with self.engine.connect() as conn:
            return int(await conn.scalar(stmt) or 0)

    # -- housekeeping ---------------------------------------------------------------------------

    async def try_housekeeping_lease(self, name: str, owner: str, seconds: float) -> bool:
        """Take or renew a named singleton lease (e.g. for retention sweeps)."""
        now = rows.utcnow()
        expires = now + timedelta(seconds=seconds)
        async with self._write() as conn:
            row = (
                (await conn.execute(sa.select(t.housekeeping).where(t.housekeeping.c.name == name))).mappings().first()
            )
            if row is None:
                await conn.execute(t.housekeeping.insert().values(name=name, owner=owner, expires_at=expires))
                return True
            current = rows.aware(row["expires_at"])
            if row["owner"] != owner and current is not None and current > now:
                return False
            await conn.execute(
                t.housekeeping.update().where(t.housekeeping.c.name == name).values(owner=owner, expires_at=expires)
            )
            return True

    async def prune_finished(self, older_than: datetime) -> int:
        """Delete finished tasks (and, by cascade, their plans, steps, calls and events)."""
        ids_q = sa.select(t.tasks.c.id).where(t.tasks.c.finished_at.is_not(None), t.tasks.c.finished_at < older_than)
        async with self._write() as conn:
            ids = [r[0] for r in (await conn.execute(ids_q)).all()]
            if not ids:
                return 0
            for table in (t.events, t.tool_calls, t.steps, t.approvals, t.plan_versions):
                await conn.execute(table.delete().where(table.c.task_id.in_(ids)))
            await conn.execute(t.tasks.delete().where(t.tasks.c.id.in_(ids)))
        return len(ids)


def _payload(tx: TaskTx, events: list[Event]) -> str:
    """NOTIFY payload: which task, which sequence numbers, whether workers should wake."""
    return json.dumps(
        {"task": tx.task.id, "last": tx.task.last_seq, "n": len(events), "work": tx.wakes_workers},
        separators=(",", ":"),
    )
