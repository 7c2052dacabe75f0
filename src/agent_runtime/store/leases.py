"""Leases: claiming claimable tasks, renewing and releasing a lease, and lease holders' views.

**What invalidates a lease** (docs/architecture.md, "Leases and fencing"): only a new epoch (a
claim after expiry, a hand-off, a cancel) or another owner. A lease holder's writes are fenced on
exactly those two columns; a write by someone else to other columns, or events they emit, never
refuse the holder's write (event sequence numbers are allocated by the database).

The statements are plain functions over a SQLAlchemy ``Connection``, shared by both backends
(``postgres`` adds ``FOR UPDATE SKIP LOCKED`` and an advisory lock for global limits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy import Connection

from agent_runtime.domain.records import Lease, TaskRecord
from agent_runtime.domain.states import CLAIMABLE, LEASED, TaskStatus
from agent_runtime.errors import LeaseLostError
from agent_runtime.store import rows
from agent_runtime.store import schema as t
from agent_runtime.store.prepared import execute

MAX_VIEWS = 10_000
GLOBAL_LIMIT_LOCK = 0x61677274


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    statuses: Sequence[TaskStatus]
    limit: int
    global_limit: int | None = None


def claim(
    conn: Connection, owner: str, request: ClaimRequest, lease_seconds: float, postgres: bool
) -> list[TaskRecord]:
    """Lease up to ``request.limit`` tasks in its statuses nobody holds (or whose lease expired)."""
    wanted = [str(s) for s in request.statuses if s in CLAIMABLE]  # awaiting approval is never leased
    if request.limit <= 0 or not wanted:
        return []
    now = rows.utcnow()
    room = request.limit
    if request.global_limit is not None:
        room = min(room, _global_room(conn, wanted, request.global_limit, now, postgres))
        if room <= 0:
            return []
    params = {"owner": owner, "now": now, "room": room, "expires": now + timedelta(seconds=lease_seconds)}
    return [rows.task(r) for r in execute(conn, _claim_statement(tuple(wanted), postgres), params).rows]


def _global_room(conn: Connection, statuses: list[str], global_limit: int, now: datetime, postgres: bool) -> int:
    if postgres:  # serialise global-limit claims across replicas for the rest of this transaction
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(GLOBAL_LIMIT_LOCK)))
    active = conn.scalar(
        sa.select(sa.func.count())
        .select_from(t.tasks)
        .where(t.tasks.c.status.in_(statuses))
        .where(t.tasks.c.lease_expires_at >= now)
    )
    return global_limit - int(active or 0)


def renew(conn: Connection, lease: Lease, lease_seconds: float) -> bool:
    expires = rows.utcnow() + timedelta(seconds=lease_seconds)
    return execute(conn, _RENEW, {**_owned(lease), "expires": expires}).rowcount == 1


def release(conn: Connection, lease: Lease) -> bool:
    return execute(conn, _RELEASE, _owned(lease)).rowcount == 1


def check(record: TaskRecord, lease: Lease | None) -> TaskRecord:
    """``record`` if ``lease`` (if any) still holds on it, else :class:`LeaseLostError`."""
    if lease is not None and (record.lease_epoch != lease.epoch or record.lease_owner != lease.owner):
        raise LeaseLostError(
            f"task {record.id}: lease epoch {lease.epoch} was superseded by {record.lease_epoch}",
            details={"task_id": record.id, "epoch": lease.epoch, "current_epoch": record.lease_epoch},
        )
    return record


def lost(task_id: str) -> LeaseLostError:
    return LeaseLostError(f"task {task_id}: lease lost before commit", details={"task_id": task_id})


class HolderViews:
    """Each lease holder's last committed view of its task, by (task, epoch), so its next
    transaction starts without reading the row; and (PostgreSQL) a lock per lease that serialises
    one holder's transactions on its task in this process.

    A view is kept while the task is leased and dropped when the lease ends, is refused, or a
    write of the holder fails; after ``MAX_VIEWS`` (abandoned leases) they are all dropped."""

    def __init__(self) -> None:
        self._views: dict[tuple[str, int], TaskRecord] = {}
        self._locks: dict[tuple[str, int], anyio.Lock] = {}

    def get(self, lease: Lease) -> TaskRecord | None:
        return self._views.get((lease.task_id, lease.epoch))

    def lock(self, lease: Lease) -> anyio.Lock:
        return self._locks.setdefault((lease.task_id, lease.epoch), anyio.Lock(fast_acquire=True))

    def remember(self, task: TaskRecord, *, held: bool = False) -> None:
        """Keep ``task`` as the view of its current lease (``held``: just leased, still queued or
        approved); forget it once the task is no longer leased."""
        key = (task.id, task.lease_epoch)
        if task.lease_owner is not None and (held or task.status in LEASED):
            if len(self._views) > MAX_VIEWS:
                self._views.clear()
                self._locks = {k: lock for k, lock in self._locks.items() if lock.locked()}
            self._views[key] = task
        else:
            self.forget_key(key)

    def forget(self, lease: Lease) -> None:
        self.forget_key((lease.task_id, lease.epoch))

    def forget_key(self, key: tuple[str, int]) -> None:
        self._views.pop(key, None)
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]

    def drop_idle_lock(self, lease: Lease, lock: anyio.Lock) -> None:
        """After a holder's transaction: drop its lock once the lease has no view (it ended, or
        was lost) and nobody waits on it."""
        key = (lease.task_id, lease.epoch)
        if key not in self._views and not lock.locked() and self._locks.get(key) is lock:
            del self._locks[key]

    def holds(self, lease: Lease) -> bool:
        """Whether a view or a lock is kept for ``lease`` (for tests and diagnostics)."""
        key = (lease.task_id, lease.epoch)
        return key in self._views or key in self._locks


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


_RENEW = _owned_update(lease_expires_at=sa.bindparam("expires"))
_RELEASE = _owned_update(lease_owner=None, lease_expires_at=None)
