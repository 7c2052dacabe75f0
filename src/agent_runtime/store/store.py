"""The store's interface: what the services need (task transactions, claims and leases, queries,
retention), with one implementation per backend in its own module.

* :class:`~agent_runtime.store.sqlite.SqliteStore` (``store/sqlite.py``): pysqlite inline on the
  event loop, writes as kept statements.
* :class:`~agent_runtime.store.postgres.PostgresStore` (``store/postgres.py``): asyncpg through
  SQLAlchemy; every task transaction is one call of ``agent_runtime_apply_v2``.

:func:`open_store` picks one from the engine. What both share lives here: the read and write
operations are plain functions over a SQLAlchemy ``Connection`` (``queries``, ``leases``,
``retention``), and a backend only says how a read and a write transaction run (``_read``,
``_write``) and how a task transaction is written (``transaction``, ``_insert``).

After a commit the stored events go to the :class:`StoreListener` (the in-process event bus); on
PostgreSQL a ``NOTIFY`` in the same transaction tells the other replicas. The store does not
schedule: a command that leases its task to this process's runner (a hand-off) does so through
``TaskTx.lease_to`` in its own transaction (services/tasks.py).
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_runtime.domain.events import Event, TaskCreated
from agent_runtime.domain.records import (
    ApprovalRecord,
    Lease,
    PlanVersionRecord,
    StepRecord,
    StepUsage,
    TaskRecord,
    ToolCallRecord,
)
from agent_runtime.domain.states import TaskStatus
from agent_runtime.errors import NotFoundError
from agent_runtime.store import leases, queries, retention, rows
from agent_runtime.store.leases import ClaimRequest, HolderViews
from agent_runtime.store.queries import ExecutionState
from agent_runtime.store.tx import TaskTx

__all__ = ["NOTIFY_CHANNEL", "ClaimRequest", "StoreListener", "TaskStore", "open_store"]

NOTIFY_CHANNEL = "agent_runtime"
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


class TaskStore(ABC):
    is_postgres: bool

    def __init__(self, engine: AsyncEngine, listener: StoreListener | None = None) -> None:
        self.engine = engine
        self.listener: StoreListener = listener or _NoListener()
        self.origin = secrets.token_hex(6)
        """Tags this process's NOTIFY payloads, so its own listener can skip them."""
        self.views = HolderViews()

    # -- backend execution ----------------------------------------------------------------------

    @abstractmethod
    async def _read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` on a connection outside any write transaction."""

    @abstractmethod
    async def _write(self, fn: Callable[[Connection], T], *, offload: bool = False) -> T:
        """Run ``fn`` in one write transaction (``offload``: bulk work, keep it off the loop)."""

    @abstractmethod
    def transaction(self, task_id: str, lease: Lease | None = None) -> AbstractAsyncContextManager[TaskTx]:
        """A write transaction on one task. With ``lease``, it commits only if the lease still
        holds (same epoch and owner): else :class:`~agent_runtime.errors.LeaseLostError`.

        The body only buffers writes (see :class:`TaskTx`); they are written together at the end,
        and the events handed to the listener after the commit."""

    @abstractmethod
    async def _insert(self, tx: TaskTx) -> list[Event]:
        """Write a new task's transaction (``tx.new``); its stored events."""

    @abstractmethod
    def _released(self, conn: Connection, lease: Lease) -> None:
        """In the release's transaction: tell other replicas work is available (PostgreSQL)."""

    @abstractmethod
    async def settle(self) -> None:
        """Wait for background maintenance still running."""

    async def aclose(self) -> None:
        await self.settle()
        await self.engine.dispose()

    def _after_commit(self, tx: TaskTx, events: list[Event]) -> None:
        if tx.leased:  # handed off: the new holder's first write starts from this view
            self.views.remember(tx.task, held=True)
        if events:
            self.listener.events_committed(events)
        if tx.wakes_workers:
            self.listener.work_available()

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())

    # -- commands -------------------------------------------------------------------------------

    async def create_task(
        self,
        prompt: str,
        metadata: dict[str, Any],
        *,
        tenant: str = "default",
        submitted_by: str | None = None,
        submitter_roles: list[str] | None = None,
        lease_to: tuple[str, datetime] | None = None,
        profile: tuple[str, str, dict[str, Any]] | None = None,
        session_id: str | None = None,
    ) -> TaskRecord:
        """Store a new queued task of ``tenant`` and its ``task_created`` event. ``lease_to`` (owner,
        expiry): lease it to that owner in the same transaction (a hand-off) instead of waking workers.
        ``profile``: (name, hash, content) of the agent profile it runs under; ``session_id``: its session."""
        now = rows.utcnow()
        record = TaskRecord(
            id=rows.new_id("task"), status=TaskStatus.QUEUED, prompt=prompt, metadata=metadata, created_at=now,
            updated_at=now, current_plan_version=None, approved_plan_version=None, result=None, error=None,
            revision_feedback=None, lease_owner=None, lease_expires_at=None, lease_epoch=0, last_seq=0,
            tenant=tenant, submitted_by=submitted_by,
        )  # fmt: skip
        tx = TaskTx(record, now, new=True)
        if submitter_roles is not None:
            tx.update(submitter_roles=submitter_roles)
        if profile is not None:
            tx.update(profile=profile[0], profile_hash=profile[1], profile_content=profile[2])
        if session_id is not None:
            tx.update(session_id=session_id)
        tx.emit(TaskCreated(status=TaskStatus.QUEUED))
        tx.wakes_workers = True
        if lease_to is not None:
            tx.lease_to(*lease_to)
        events = await self._insert(tx)
        self._after_commit(tx, events)
        return tx.task

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
        [claimed] = await self.claim_batch(owner, [ClaimRequest(statuses, limit, global_limit)], lease_seconds)
        return claimed

    async def claim_batch(
        self, owner: str, requests: Sequence[ClaimRequest], lease_seconds: float
    ) -> list[list[Lease]]:
        """Several claims (e.g. planning and execution work) in one transaction."""
        if all(r.limit <= 0 for r in requests):
            return [[] for _ in requests]
        postgres = self.is_postgres

        def claim_all(conn: Connection) -> list[list[TaskRecord]]:
            return [leases.claim(conn, owner, r, lease_seconds, postgres) for r in requests]

        out: list[list[Lease]] = []
        for records in await self._write(claim_all):
            for record in records:
                self.views.remember(record, held=True)  # the holder's first write reads nothing
            out.append([Lease(r.id, owner, r.lease_epoch, r.status, r.last_seq) for r in records])
        return out

    async def renew(self, lease: Lease, lease_seconds: float) -> bool:
        """Extend the lease; False means it was lost (taken over, cancelled, or finished)."""
        renewed = await self._write(lambda conn: leases.renew(conn, lease, lease_seconds))
        if not renewed:
            self.views.forget(lease)
        return renewed

    async def release(self, lease: Lease) -> None:
        """Give the task back (e.g. at shutdown) so another worker may claim it at once."""

        def release(conn: Connection) -> bool:
            released = leases.release(conn, lease)
            if released:
                self._released(conn, lease)
            return released

        self.views.forget(lease)
        if await self._write(release):
            self.listener.work_available()

    # -- queries --------------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> TaskRecord:
        return await self._read(lambda conn: queries.task(conn, task_id))

    async def list_tasks(
        self,
        *,
        status: TaskStatus | Collection[TaskStatus] | None,
        limit: int,
        cursor: str | None,
        tenant: str | None = None,
        submitted_by: str | None = None,
        session_id: str | None = None,
    ) -> tuple[list[TaskRecord], str | None]:
        """Newest first. ``cursor`` is the last id of the previous page. ``tenant`` and
        ``submitted_by``, when given, keep only that tenant's (that subject's) tasks."""
        found = await self._read(
            lambda conn: queries.list_tasks(
                conn, status, limit + 1, cursor, tenant=tenant, submitted_by=submitted_by, session_id=session_id
            )
        )
        next_cursor = found[limit - 1].id if len(found) > limit else None
        return found[:limit], next_cursor

    async def plan_versions(self, task_id: str) -> list[PlanVersionRecord]:
        return await self._read(lambda conn: queries.plan_versions(conn, task_id))

    async def plan_version(self, task_id: str, version: int) -> PlanVersionRecord:
        found = await self._read(lambda conn: queries.plan_version(conn, task_id, version))
        if found is None:
            raise NotFoundError(f"task {task_id} has no plan version {version}", details={"task_id": task_id})
        return found

    async def steps(self, task_id: str, version: int) -> list[StepRecord]:
        return await self._read(lambda conn: queries.steps(conn, task_id, version))

    async def tool_calls(self, task_id: str, step_id: str | None = None) -> list[ToolCallRecord]:
        return await self._read(lambda conn: queries.tool_calls(conn, task_id, step_id))

    async def execution_state(self, task_id: str) -> ExecutionState:
        """Everything a worker needs to start or resume execution, in one read."""
        return await self._read(lambda conn: queries.execution_state(conn, task_id))

    async def approvals(self, task_id: str) -> list[ApprovalRecord]:
        return await self._read(lambda conn: queries.approvals(conn, task_id))

    async def events_after(self, task_id: str, after: int, limit: int = 1000) -> list[Event]:
        return await self._read(lambda conn: queries.events_after(conn, task_id, after, limit))

    async def step_history(self, tasks: int = 50) -> list[StepUsage]:
        """The completed steps of the most recently completed tasks, with what each spent."""
        return await self._read(lambda conn: queries.step_history(conn, tasks))

    async def gates_due(self, now: datetime, limit: int = 100) -> list[str]:
        """Tasks whose pending decision expired (``gate_expires_at`` <= ``now``)."""
        return await self._read(lambda conn: queries.gates_due(conn, now, limit))

    async def count_by_status(self) -> dict[str, int]:
        return await self._read(queries.count_by_status)

    # -- retention ------------------------------------------------------------------------------

    async def try_housekeeping_lease(self, name: str, owner: str, seconds: float) -> bool:
        """Take or renew a named singleton lease (e.g. for retention sweeps)."""
        return await self._write(lambda conn: retention.take_housekeeping_lease(conn, name, owner, seconds))

    async def prune_finished(self, older_than: datetime) -> int:
        """Delete finished tasks (and their plans, steps, calls, approvals and events)."""
        return await self._write(lambda conn: retention.prune_finished(conn, older_than), offload=True)


def open_store(engine: AsyncEngine, listener: StoreListener | None = None) -> TaskStore:
    """The store for ``engine``'s database (SQLite or PostgreSQL)."""
    if engine.dialect.name == "postgresql":
        from agent_runtime.store.postgres import PostgresStore

        return PostgresStore(engine, listener)
    from agent_runtime.store.sqlite import SqliteStore

    return SqliteStore(engine, listener)
