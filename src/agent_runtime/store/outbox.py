"""The webhook outbox and its deliveries (tables from the ``*_webhooks.py`` migration).

Events reach ``webhook_outbox`` by a database trigger, in the transaction that stores them; this
module never writes events. What it does, as plain functions over a ``Connection`` run through the
store's own read and write paths (so SQLite's single writer and PostgreSQL's pool are shared):

* :func:`dispatch`: turn outbox rows not yet fanned out into one ``pending`` delivery per endpoint
  subscribed to their type, and mark them dispatched;
* :func:`claim`: take due deliveries for this replica (a claim owner and expiry; on PostgreSQL
  ``FOR UPDATE SKIP LOCKED``, so replicas never wait on each other's rows), with each event's
  payload and task tenant;
* :func:`finish`: record an attempt, fenced by the claim (a replica whose claim expired and was
  taken over writes nothing);
* reads for the API (:func:`page`), and :func:`retry` to send a delivery again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from agent_runtime.domain.notifications import Delivery, DeliveryStatus
from agent_runtime.errors import InvalidStateError, NotFoundError
from agent_runtime.store import rows
from agent_runtime.store import schema as t
from agent_runtime.store.store import TaskStore

D = t.webhook_deliveries
OUT = t.webhook_outbox


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this replica may send now, with what it sends."""

    delivery: Delivery
    tenant: str
    payload: dict[str, Any]
    event_created_at: datetime


def _delivery(row: Mapping[Any, Any]) -> Delivery:
    return Delivery(
        id=row["id"],
        task_id=row["task_id"],
        seq=row["seq"],
        type=row["type"],
        endpoint_id=row["endpoint_id"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=_req(row["next_attempt_at"]),
        last_attempt_at=rows.aware(row["last_attempt_at"]),
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        delivered_at=rows.aware(row["delivered_at"]),
        created_at=_req(row["created_at"]),
    )


def _req(value: datetime | None) -> datetime:
    out = rows.aware(value)
    assert out is not None
    return out


# -- the deliverer's statements -----------------------------------------------------------------


def dispatch(
    conn: Connection, subscribers: Mapping[str, Sequence[str]], now: datetime, *, postgres: bool, limit: int = 500
) -> int:
    """Fan out up to ``limit`` undispatched outbox rows: a delivery per endpoint in
    ``subscribers[type]`` (none when nobody subscribes). Returns the rows dispatched."""
    pick = (
        sa.select(OUT.c.id, OUT.c.task_id, OUT.c.seq, OUT.c.type)
        .where(OUT.c.dispatched_at.is_(None))
        .order_by(OUT.c.id)
    )
    pick = pick.limit(limit)
    if postgres:
        pick = pick.with_for_update(skip_locked=True)
    found = conn.execute(pick).mappings().all()
    if not found:
        return 0
    new = [
        {
            "outbox_id": r["id"],
            "task_id": r["task_id"],
            "seq": r["seq"],
            "type": r["type"],
            "endpoint_id": endpoint,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for r in found
        for endpoint in subscribers.get(r["type"], ())
    ]
    if new:
        conn.execute(D.insert(), new)
    conn.execute(OUT.update().where(OUT.c.id.in_([r["id"] for r in found])).values(dispatched_at=now))
    return len(found)


def claim(
    conn: Connection,
    owner: str,
    endpoints: Sequence[str],
    now: datetime,
    claim_seconds: float,
    limit: int,
    *,
    postgres: bool,
) -> list[Claimed]:
    """Claim up to ``limit`` pending deliveries to ``endpoints`` that are due and unclaimed (or
    whose claim expired), oldest due first."""
    if limit <= 0 or not endpoints:
        return []
    pick = (
        sa.select(D.c.id)
        .where(D.c.status == "pending", D.c.next_attempt_at <= now, D.c.endpoint_id.in_(list(endpoints)))
        .where(sa.or_(D.c.claim_expires_at.is_(None), D.c.claim_expires_at <= now))
        .order_by(D.c.next_attempt_at, D.c.id)
        .limit(limit)
    )
    if postgres:
        pick = pick.with_for_update(skip_locked=True)
    ids = list(conn.execute(pick).scalars())
    if not ids:
        return []
    conn.execute(
        D.update()
        .where(D.c.id.in_(ids))
        .values(claim_owner=owner, claim_expires_at=now + timedelta(seconds=claim_seconds))
    )
    E = t.events
    read = (
        sa.select(D, E.c.data, E.c.created_at.label("event_created_at"), t.tasks.c.tenant)
        .join(E, sa.and_(E.c.task_id == D.c.task_id, E.c.seq == D.c.seq))
        .join(t.tasks, t.tasks.c.id == D.c.task_id)
        .where(D.c.id.in_(ids))
        .order_by(D.c.next_attempt_at, D.c.id)
    )
    return [
        Claimed(
            delivery=_delivery(r),
            tenant=r["tenant"],
            payload=dict(r["data"] or {}),
            event_created_at=_req(r["event_created_at"]),
        )
        for r in conn.execute(read).mappings()
    ]


def finish(conn: Connection, delivery_id: int, owner: str, **fields: Any) -> bool:
    """Record an attempt's outcome (``fields``) and drop the claim; False if the claim was lost."""
    stmt = (
        D.update()
        .where(D.c.id == delivery_id, D.c.claim_owner == owner, D.c.status == "pending")
        .values(claim_owner=None, claim_expires_at=None, **fields)
    )
    return bool(conn.execute(stmt).rowcount)


def release(conn: Connection, delivery_ids: Sequence[int], owner: str) -> None:
    """Give back claims not sent (shutdown), so any replica may send them at once."""
    if delivery_ids:
        conn.execute(
            D.update()
            .where(D.c.id.in_(list(delivery_ids)), D.c.claim_owner == owner)
            .values(claim_owner=None, claim_expires_at=None)
        )


def next_due(conn: Connection, endpoints: Sequence[str]) -> datetime | None:
    """When the earliest pending delivery (to ``endpoints``) comes due; a claimed one, when its claim ends."""
    if not endpoints:
        return None
    due = sa.case(
        (sa.and_(D.c.claim_expires_at.is_not(None), D.c.claim_expires_at > D.c.next_attempt_at), D.c.claim_expires_at),
        else_=D.c.next_attempt_at,
    )
    stmt = sa.select(sa.func.min(due)).where(D.c.status == "pending", D.c.endpoint_id.in_(list(endpoints)))
    value = conn.execute(stmt).scalar()
    if isinstance(value, str):  # SQLite returns an expression's value untyped
        value = datetime.fromisoformat(value)
    return rows.aware(value)


# -- the API's reads and commands ---------------------------------------------------------------


def page(
    conn: Connection,
    *,
    tenant: str,
    task_id: str | None,
    status: DeliveryStatus | None,
    endpoint_id: str | None,
    limit: int,
    before: int | None,
) -> list[Delivery]:
    """Deliveries of ``tenant``'s tasks, newest first; ``before``: ids below this one (the cursor)."""
    stmt = sa.select(D).join(t.tasks, t.tasks.c.id == D.c.task_id).where(t.tasks.c.tenant == tenant)
    if task_id is not None:
        stmt = stmt.where(D.c.task_id == task_id)
    if status is not None:
        stmt = stmt.where(D.c.status == status)
    if endpoint_id is not None:
        stmt = stmt.where(D.c.endpoint_id == endpoint_id)
    if before is not None:
        stmt = stmt.where(D.c.id < before)
    stmt = stmt.order_by(D.c.id.desc()).limit(limit)
    return [_delivery(r) for r in conn.execute(stmt).mappings()]


def get(conn: Connection, delivery_id: int, tenant: str) -> Delivery:
    stmt = sa.select(D).join(t.tasks, t.tasks.c.id == D.c.task_id)
    row = conn.execute(stmt.where(D.c.id == delivery_id, t.tasks.c.tenant == tenant)).mappings().first()
    if row is None:
        raise NotFoundError(f"no webhook delivery {delivery_id}", details={"delivery_id": delivery_id})
    return _delivery(row)


def retry(conn: Connection, delivery_id: int, tenant: str, now: datetime) -> Delivery:
    """Send a ``failed`` (or already ``delivered``) delivery again from its first attempt."""
    current = get(conn, delivery_id, tenant)
    if current.status == "pending":
        raise InvalidStateError(
            f"webhook delivery {delivery_id} is still pending (attempt {current.attempts + 1} due "
            f"{current.next_attempt_at.isoformat()})",
            details={"delivery_id": delivery_id, "status": current.status},
        )
    conn.execute(
        D.update()
        .where(D.c.id == delivery_id)
        .values(status="pending", attempts=0, next_attempt_at=now, claim_owner=None, claim_expires_at=None)
    )
    return get(conn, delivery_id, tenant)


class Outbox:
    """The statements above on the store's read and write paths."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self.postgres = store.is_postgres

    async def dispatch_and_claim(
        self,
        subscribers: Mapping[str, Sequence[str]],
        owner: str,
        claim_seconds: float,
        limit: int,
    ) -> tuple[int, list[Claimed]]:
        """One write transaction: fan out new outbox rows, then claim due deliveries."""
        endpoints = sorted({e for ids in subscribers.values() for e in ids})

        def run(conn: Connection) -> tuple[int, list[Claimed]]:
            now = rows.utcnow()
            dispatched = dispatch(conn, subscribers, now, postgres=self.postgres)
            return dispatched, claim(conn, owner, endpoints, now, claim_seconds, limit, postgres=self.postgres)

        return await self.store._write(run)

    async def finish(self, delivery_id: int, owner: str, **fields: Any) -> bool:
        return await self.store._write(lambda conn: finish(conn, delivery_id, owner, **fields))

    async def release(self, delivery_ids: Sequence[int], owner: str) -> None:
        await self.store._write(lambda conn: release(conn, delivery_ids, owner))

    async def next_due(self, endpoints: Sequence[str]) -> datetime | None:
        return await self.store._read(lambda conn: next_due(conn, endpoints))

    async def page(
        self,
        *,
        tenant: str,
        task_id: str | None = None,
        status: DeliveryStatus | None = None,
        endpoint_id: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[Delivery]:
        return await self.store._read(
            lambda conn: page(
                conn, tenant=tenant, task_id=task_id, status=status, endpoint_id=endpoint_id, limit=limit, before=before
            )
        )

    async def retry(self, delivery_id: int, tenant: str) -> Delivery:
        return await self.store._write(lambda conn: retry(conn, delivery_id, tenant, rows.utcnow()))
