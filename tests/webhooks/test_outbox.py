"""The outbox in the database (SQLite and PostgreSQL): the trigger writes an outbox row with each
notifiable event in the same transaction, fan-out and claims never hand one delivery to two
replicas, a lost claim records nothing, and retention removes it all with the task."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy import Connection

from agent_runtime.domain.events import TaskCancelled
from agent_runtime.domain.notifications import NOTIFIABLE_EVENTS, Delivery
from agent_runtime.domain.states import TaskStatus
from agent_runtime.errors import NotFoundError
from agent_runtime.store import outbox
from agent_runtime.store import schema as t
from agent_runtime.store.outbox import Outbox
from agent_runtime.store.rows import utcnow
from agent_runtime.store.store import TaskStore
from tests.support.databases import migrated_store

SUBSCRIBERS = {"task_cancelled": ["a", "b"], "task_completed": ["a"]}


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    async with migrated_store(request.param, tmp_path) as store:
        yield store


def test_the_trigger_copies_exactly_the_notifiable_event_types() -> None:
    [path] = (Path(t.__file__).parent / "migrations" / "versions").glob("*_webhooks.py")
    migration = importlib.import_module(f"agent_runtime.store.migrations.versions.{path.stem}")
    assert tuple(migration.TYPES) == NOTIFIABLE_EVENTS


async def _cancel(store: TaskStore, tenant: str = "default") -> str:
    task = await store.create_task("p", {}, tenant=tenant)
    async with store.transaction(task.id) as tx:
        tx.transition(TaskStatus.CANCELLED)
        tx.emit(TaskCancelled(reason="r", previous_status=TaskStatus.QUEUED, actor="me"))
    return task.id


def _outbox_rows(conn: Connection) -> list[tuple[str, int, str]]:
    stmt = sa.select(t.webhook_outbox.c.task_id, t.webhook_outbox.c.seq, t.webhook_outbox.c.type)
    return [(r[0], r[1], r[2]) for r in conn.execute(stmt.order_by(t.webhook_outbox.c.id))]


async def test_a_notifiable_event_gets_its_outbox_row_in_its_own_transaction(store: TaskStore) -> None:
    task_id = await _cancel(store)  # task_created (not notifiable), then task_cancelled
    assert await store._read(_outbox_rows) == [(task_id, 2, "task_cancelled")]

    other = await store.create_task("p", {})

    def insert_then_fail(conn: Connection) -> None:
        conn.execute(
            t.events.insert().values(
                task_id=other.id, seq=2, type="task_completed", data={"summary": "x"}, created_at=utcnow()
            )
        )
        assert len(_outbox_rows(conn)) == 2  # the trigger ran inside this transaction...
        raise RuntimeError("the transaction fails after the event was written")

    with pytest.raises(RuntimeError):
        await store._write(insert_then_fail)
    assert await store._read(_outbox_rows) == [(task_id, 2, "task_cancelled")]  # ...and rolled back with it


async def test_fan_out_makes_one_delivery_per_subscribed_endpoint_and_claims_are_exclusive(store: TaskStore) -> None:
    box = Outbox(store)
    cancelled = [await _cancel(store) for _ in range(3)]
    dispatched, first = await box.dispatch_and_claim(SUBSCRIBERS, "one", 60, limit=4)
    assert dispatched == 3
    _, second = await box.dispatch_and_claim(SUBSCRIBERS, "two", 60, limit=10)
    _, third = await box.dispatch_and_claim(SUBSCRIBERS, "three", 60, limit=10)
    assert (len(first), len(second), third) == (4, 2, [])
    pairs = [(c.delivery.task_id, c.delivery.endpoint_id) for c in first + second]
    assert sorted(pairs) == sorted((task_id, e) for task_id in cancelled for e in ("a", "b"))
    claimed = first[0]
    assert claimed.payload == {"reason": "r", "previous_status": "queued", "actor": "me"}
    assert (claimed.tenant, claimed.delivery.type, claimed.delivery.seq) == ("default", "task_cancelled", 2)


async def test_concurrent_replicas_never_claim_the_same_delivery(store: TaskStore) -> None:
    box = Outbox(store)
    for _ in range(10):
        await _cancel(store)
    got: dict[str, list[int]] = {}

    async def replica(owner: str) -> None:
        mine = got.setdefault(owner, [])
        for _ in range(10):
            _, claimed = await box.dispatch_and_claim(SUBSCRIBERS, owner, 60, limit=3)
            mine.extend(c.delivery.id for c in claimed)

    async with anyio.create_task_group() as tg:
        for owner in ("r1", "r2", "r3"):
            tg.start_soon(replica, owner)
    every = [i for ids in got.values() for i in ids]
    assert len(every) == len(set(every)) == 20


async def test_an_expired_claim_is_taken_over_and_the_old_owner_records_nothing(store: TaskStore) -> None:
    box = Outbox(store)
    await _cancel(store)
    _, dead = await box.dispatch_and_claim(SUBSCRIBERS, "dead", 0, limit=2)  # its claims end at once
    _, taken = await box.dispatch_and_claim(SUBSCRIBERS, "alive", 60, limit=2)
    assert {c.delivery.id for c in taken} == {c.delivery.id for c in dead}
    stale = dead[0]
    assert not await box.finish(stale.delivery.id, "dead", status="delivered", attempts=1)
    assert await box.finish(stale.delivery.id, "alive", status="delivered", attempts=1)
    [row] = [d for d in await box.page(tenant="default") if d.id == stale.delivery.id]
    assert (row.status, row.attempts) == ("delivered", 1)


async def test_retention_removes_outbox_rows_and_deliveries_with_their_task(store: TaskStore) -> None:
    box = Outbox(store)
    kept = await _cancel(store)
    pruned = await store.create_task("p", {})
    async with store.transaction(pruned.id) as tx:
        tx.transition(TaskStatus.CANCELLED)
        tx.emit(TaskCancelled(reason=None, previous_status=TaskStatus.QUEUED))
    async with store.transaction(kept) as tx:  # keep one task young: only the other is pruned
        tx.update(finished_at=utcnow() + timedelta(days=1))
    await box.dispatch_and_claim(SUBSCRIBERS, "one", 60, limit=10)
    assert len(await box.page(tenant="default")) == 4

    assert await store.prune_finished(utcnow() + timedelta(hours=1)) == 1
    assert {d.task_id for d in await box.page(tenant="default")} == {kept}
    assert [r[0] for r in await store._read(_outbox_rows)] == [kept]


async def test_other_tenants_do_not_see_deliveries(store: TaskStore) -> None:
    box = Outbox(store)
    await _cancel(store, tenant="acme")
    await box.dispatch_and_claim(SUBSCRIBERS, "one", 60, limit=10)
    mine, _ = await box.page(tenant="acme")
    assert await box.page(tenant="globex") == []
    assert (await outbox_get(store, mine.id, "acme")).id == mine.id
    with pytest.raises(NotFoundError, match="no webhook delivery"):
        await outbox_get(store, mine.id, "globex")


async def outbox_get(store: TaskStore, delivery_id: int, tenant: str) -> Delivery:
    return await store._read(lambda conn: outbox.get(conn, delivery_id, tenant))
