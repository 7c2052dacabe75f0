"""The store contract: one suite, run against every backend (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from agent_runtime.domain.events import PlanningStarted, PlanProposed, TaskApproved, TaskCancelled, TextDelta
from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.domain.records import Lease
from agent_runtime.domain.states import TaskStatus
from agent_runtime.errors import InvalidStateError, LeaseLostError, NotFoundError
from agent_runtime.store import migrate
from agent_runtime.store.rows import utcnow
from agent_runtime.store.store import TaskStore

PLANNING = (TaskStatus.QUEUED, TaskStatus.PLANNING)


def _plan() -> Plan:
    return Plan(
        summary="s",
        steps=[PlanStep(id="a", title="A", instruction="do a", tools=["x.y"], depends_on=[])],
    )


async def _claim_one(store: TaskStore, owner: str = "w1", seconds: float = 30) -> Lease:
    leases = await store.claim(owner, PLANNING, limit=1, lease_seconds=seconds)
    assert len(leases) == 1
    return leases[0]


async def test_a_new_task_is_queued_with_its_created_event_as_sequence_one(store: TaskStore) -> None:
    task = await store.create_task("hello", {"k": "v"})
    assert task.status == TaskStatus.QUEUED and task.last_seq == 1
    fetched = await store.get_task(task.id)
    assert fetched.prompt == "hello" and fetched.metadata == {"k": "v"}
    assert fetched.created_at.tzinfo is not None
    events = await store.events_after(task.id, 0)
    assert [(e.seq, e.type) for e in events] == [(1, "task_created")]
    assert store.listener.events == events  # type: ignore[attr-defined]


async def test_a_task_keeps_its_profile_snapshot_and_session_and_lists_by_session(store: TaskStore) -> None:
    content = {"planner": {"system_prompt": "plan \u00e9"}, "executor": {}, "limits": {"max_turns_per_step": 3}}
    digest = "sha256:" + "a" * 64
    first = await store.create_task("one", {}, profile=("careful", digest, content), session_id="s:1")
    second = await store.create_task("two", {}, session_id="s:1")
    await store.create_task("three", {}, session_id="s:2")
    fetched = await store.get_task(first.id)
    assert (fetched.profile, fetched.profile_hash, fetched.profile_content) == ("careful", digest, content)
    assert fetched.session_id == "s:1" and first.profile == "careful"
    assert (await store.get_task(second.id)).profile is None  # no snapshot given: the built-in profile
    found, cursor = await store.list_tasks(status=None, limit=10, cursor=None, session_id="s:1")
    assert [t.id for t in found] == [second.id, first.id] and cursor is None
    older, _ = await store.list_tasks(status=None, limit=10, cursor=second.id, session_id="s:1")
    assert [t.id for t in older] == [first.id]


async def test_unknown_task_raises_not_found(store: TaskStore) -> None:
    with pytest.raises(NotFoundError):
        await store.get_task("task_missing")
    with pytest.raises(NotFoundError):
        async with store.transaction("task_missing"):
            pass


async def test_concurrent_writers_get_gap_free_unique_sequence_numbers(store: TaskStore) -> None:
    task = await store.create_task("p", {})

    async def write(i: int) -> None:
        async with store.transaction(task.id) as tx:
            tx.emit(TextDelta(step_id="s1", text=str(i)))
            tx.emit(TextDelta(step_id="s1", text=f"{i} second"))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(write, i)
    events = await store.events_after(task.id, 0)
    assert [e.seq for e in events] == list(range(1, 42))
    assert (await store.get_task(task.id)).last_seq == 41
    pairs = [(events[i].data["text"], events[i + 1].data) for i in range(1, 41, 2)]
    # a transaction's events stay together
    assert all(second == {"step_id": "s1", "text": f"{i} second"} for i, second in pairs)


async def test_an_illegal_transition_raises_and_writes_nothing(store: TaskStore) -> None:
    task = await store.create_task("p", {})
    with pytest.raises(InvalidStateError) as info:
        async with store.transaction(task.id) as tx:
            tx.emit(TaskApproved(plan_version=1, actor=None, content_hash="sha256:0", approvers=[]))
            tx.transition(TaskStatus.COMPLETED)
    assert info.value.details["current_status"] == "queued"
    assert (await store.get_task(task.id)).status == TaskStatus.QUEUED
    assert len(await store.events_after(task.id, 0)) == 1


async def test_a_failed_transaction_rolls_back_its_rows_and_events(store: TaskStore) -> None:
    task = await store.create_task("p", {})
    lease = await _claim_one(store)
    with pytest.raises(RuntimeError):
        async with store.transaction(task.id, lease) as tx:
            tx.transition(TaskStatus.PLANNING)
            tx.add_plan_version(_plan(), "test")
            tx.emit(
                PlanProposed(
                    plan_version=1,
                    content_hash=_plan().content_hash(),
                    author="test",
                    offline_test=False,
                    attempts=1,
                    plan=_plan(),
                )
            )
            raise RuntimeError("boom")
    assert (await store.get_task(task.id)).status == TaskStatus.QUEUED
    assert await store.plan_versions(task.id) == []
    assert [e.type for e in await store.events_after(task.id, 0)] == ["task_created"]


async def test_claim_leases_each_task_once_and_bumps_the_fencing_epoch(store: TaskStore) -> None:
    ids = {(await store.create_task(f"t{i}", {})).id for i in range(6)}
    got: list[Lease] = []

    async def claim(owner: str) -> None:
        got.extend(await store.claim(owner, PLANNING, limit=6, lease_seconds=30))

    async with anyio.create_task_group() as tg:
        for owner in ("a", "b", "c"):
            tg.start_soon(claim, owner)
    assert sorted(lease.task_id for lease in got) == sorted(ids)
    assert all(lease.epoch == 1 and lease.status == TaskStatus.QUEUED for lease in got)
    assert await store.claim("d", PLANNING, limit=6, lease_seconds=30) == []


async def test_an_expired_lease_is_taken_over_and_the_old_owner_is_fenced_off(store: TaskStore) -> None:
    task = await store.create_task("p", {})
    old = await _claim_one(store, "old", seconds=-1)  # already expired
    new = await _claim_one(store, "new")
    assert new.epoch == old.epoch + 1
    with pytest.raises(LeaseLostError):
        async with store.transaction(task.id, old) as tx:
            tx.transition(TaskStatus.PLANNING)
            tx.emit(PlanningStarted(revision=False))
    assert await store.renew(old, 30) is False
    async with store.transaction(task.id, new) as tx:
        tx.transition(TaskStatus.PLANNING)
        tx.emit(PlanningStarted(revision=False))
    assert [e.type for e in await store.events_after(task.id, 0)] == ["task_created", "planning_started"]
    assert await store.renew(new, 30) is True


async def test_a_lease_superseded_mid_transaction_cannot_commit(store: TaskStore) -> None:
    task = await store.create_task("p", {})
    lease = await _claim_one(store)
    if store.is_postgres:  # a holder holds no row lock while its body runs: supersede it right there
        with pytest.raises(LeaseLostError):
            async with store.transaction(task.id, lease) as tx:
                tx.emit(TextDelta(step_id="s1", text=""))
                async with store.transaction(task.id) as other:
                    other.update(lease_epoch=lease.epoch + 1)
        assert (await store.get_task(task.id)).last_seq == 1
        return
    # SQLite: one writer at a time, so supersede between two of this worker's transactions instead
    async with store.transaction(task.id) as tx:
        tx.update(lease_epoch=lease.epoch + 1)
    with pytest.raises(LeaseLostError):
        async with store.transaction(task.id, lease) as tx:
            tx.emit(TextDelta(step_id="s1", text=""))


async def test_release_hands_the_task_back_at_once(store: TaskStore) -> None:
    await store.create_task("p", {})
    lease = await _claim_one(store, "a")
    assert await store.claim("b", PLANNING, limit=1, lease_seconds=30) == []
    await store.release(lease)
    again = await _claim_one(store, "b")
    assert again.epoch == lease.epoch + 1


async def test_waiting_for_approval_holds_no_lease(store: TaskStore) -> None:
    task = await store.create_task("p", {})
    lease = await _claim_one(store)
    async with store.transaction(task.id, lease) as tx:
        tx.transition(TaskStatus.PLANNING)
        version = tx.add_plan_version(_plan(), "planner:test")
        tx.transition(TaskStatus.AWAITING_APPROVAL)
    waiting = await store.get_task(task.id)
    assert version == 1 and waiting.current_plan_version == 1
    assert waiting.lease_owner is None and waiting.lease_expires_at is None
    assert await store.claim("x", (TaskStatus.AWAITING_APPROVAL, *PLANNING), limit=5, lease_seconds=30) == []
    steps = await store.steps(task.id, 1)
    assert [(s.step_id, s.status.value) for s in steps] == [("a", "pending")]


async def test_global_limit_caps_live_leases_across_owners(store: TaskStore) -> None:
    for i in range(5):
        await store.create_task(f"t{i}", {})
    first = await store.claim("a", PLANNING, limit=5, lease_seconds=30, global_limit=2)
    second = await store.claim("b", PLANNING, limit=5, lease_seconds=30, global_limit=2)
    assert len(first) == 2 and second == []


async def test_list_paginates_newest_first_and_filters_by_status(store: TaskStore) -> None:
    ids = [(await store.create_task(f"t{i}", {})).id for i in range(5)]
    page, cursor = await store.list_tasks(status=None, limit=3, cursor=None)
    rest, end = await store.list_tasks(status=None, limit=3, cursor=cursor)
    assert [t.id for t in page + rest] == list(reversed(ids)) and end is None
    none, _ = await store.list_tasks(status=TaskStatus.COMPLETED, limit=3, cursor=None)
    assert none == []


async def test_prune_removes_finished_tasks_with_everything_they_own(store: TaskStore) -> None:
    keep = await store.create_task("keep", {})
    gone = await store.create_task("gone", {})
    async with store.transaction(gone.id) as tx:
        tx.transition(TaskStatus.CANCELLED)
        tx.emit(TaskCancelled(reason=None, previous_status=TaskStatus.QUEUED))
    assert await store.prune_finished(utcnow() - timedelta(days=1)) == 0
    assert await store.prune_finished(utcnow() + timedelta(seconds=1)) == 1
    with pytest.raises(NotFoundError):
        await store.get_task(gone.id)
    assert await store.events_after(gone.id, 0) == []
    assert (await store.get_task(keep.id)).status == TaskStatus.QUEUED


async def test_the_housekeeping_lease_has_one_holder_at_a_time(store: TaskStore) -> None:
    assert await store.try_housekeeping_lease("retention", "a", 30) is True
    assert await store.try_housekeeping_lease("retention", "b", 30) is False
    assert await store.try_housekeeping_lease("retention", "a", 30) is True
    assert await store.try_housekeeping_lease("retention", "a", -1) is True  # expire it
    assert await store.try_housekeeping_lease("retention", "b", 30) is True


async def test_migrations_are_at_head_and_idempotent(store: TaskStore) -> None:
    assert await migrate.pending(store.engine) is False
    assert await migrate.upgrade(store.engine) == migrate.head_revision()


async def test_a_lease_holder_never_overwrites_a_change_it_did_not_see(store: TaskStore) -> None:
    """Only a new epoch or another owner invalidates a lease: another writer's events and columns
    do not refuse the holder's write, and the holder overwrites none of them (its events are
    numbered after theirs by the database)."""
    task = await store.create_task("p", {})
    lease = await _claim_one(store)
    async with store.transaction(task.id, lease) as tx:
        tx.transition(TaskStatus.PLANNING)
        tx.emit(PlanningStarted(revision=False))
    async with store.transaction(task.id) as tx:  # someone else writes without bumping the epoch
        tx.update(revision_feedback="elsewhere")
        tx.emit(TextDelta(step_id="s1", text="elsewhere"))
    async with store.transaction(task.id, lease) as tx:  # the holder starts from its last view
        tx.emit(TextDelta(step_id="s1", text="holder"))
    assert tx.task.last_seq == 4 and tx.task.revision_feedback == "elsewhere"  # its view, refreshed
    async with store.transaction(task.id, lease) as tx:
        tx.emit(TextDelta(step_id="s1", text="holder again"))
    events = await store.events_after(task.id, 0)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [e.data["text"] for e in events[2:]] == ["elsewhere", "holder", "holder again"]
    stored = await store.get_task(task.id)
    assert (stored.last_seq, stored.revision_feedback, stored.status) == (5, "elsewhere", TaskStatus.PLANNING)
