"""The runner's hold on running work: one heartbeat loop renews every running job's lease, a job
whose lease is lost on renewal is stopped, and a job whose task is cancelled is stopped at once,
through a watch on the event bus (or, when events may have been missed, by re-reading the task).

The runner and the store are the real ones, on SQLite and PostgreSQL; "another replica" is a
second ``TaskStore`` on the same database, whose commits this runner's bus does not see. The jobs
are test jobs that record their lease and run until they are stopped or released."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from agent_runtime.domain.events import PlanningStarted, TaskCancelled, TextDelta
from agent_runtime.domain.records import Lease
from agent_runtime.domain.states import TaskStatus
from agent_runtime.services.bus import EventBus
from agent_runtime.services.runner import Runner
from agent_runtime.settings import DatabaseSettings, RunnerSettings
from agent_runtime.store import migrate
from agent_runtime.store.engine import create_engine
from agent_runtime.store.store import TaskStore, open_store
from tests.support.databases import database_url

WAIT = 10.0


@dataclass
class Jobs:
    """Jobs that run until released; each records how it ended."""

    started: dict[str, Lease] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)
    release: anyio.Event = field(default_factory=anyio.Event)
    changed: anyio.Event = field(default_factory=anyio.Event)

    async def job(self, lease: Lease) -> None:
        self.started[lease.task_id] = lease
        self._changed()
        try:
            await self.release.wait()
            self.ended[lease.task_id] = "released"
        except anyio.get_cancelled_exc_class():
            self.ended[lease.task_id] = "stopped"
            raise
        finally:
            self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def until(self, what: str, task_id: str) -> None:
        book = self.started if what == "started" else self.ended
        with anyio.fail_after(WAIT):
            while task_id not in book:
                await self.changed.wait()


@dataclass
class Rig:
    store: TaskStore
    other: TaskStore
    """Another replica's store on the same database (its commits reach this bus only by polling)."""
    bus: EventBus
    runner: Runner
    jobs: Jobs
    renewed: list[str] = field(default_factory=list)
    renewal: anyio.Event = field(default_factory=anyio.Event)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def running(backend: str, tmp: Path, heartbeat_seconds: float = 3600) -> AsyncIterator[Rig]:
    async with database_url(backend, tmp) as url:
        bus = EventBus()
        engine = create_engine(DatabaseSettings(url=url))
        await migrate.upgrade(engine)
        store, other = open_store(engine, bus), open_store(create_engine(DatabaseSettings(url=url)))
        jobs = Jobs()
        # Leases far longer than the heartbeat: none expires (to be claimed again) on a loaded machine.
        settings = RunnerSettings(
            worker_id="local", lease_seconds=max(30, heartbeat_seconds * 2), heartbeat_seconds=heartbeat_seconds,
            safety_poll_seconds=3600,
        )  # fmt: skip
        runner = Runner(store, bus, settings, plan_job=jobs.job, execute_job=jobs.job)
        rig = Rig(store, other, bus, runner, jobs)
        renew = store.renew

        async def counted_renew(lease: Lease, lease_seconds: float) -> bool:  # the real renewal, observed
            ok = await renew(lease, lease_seconds)
            rig.renewed.append(lease.task_id)
            rig.renewal.set()
            rig.renewal = anyio.Event()
            return ok

        store.renew = counted_renew  # type: ignore[method-assign]
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(runner.run, tg)
                try:
                    yield rig
                finally:
                    jobs.release.set()
                    tg.cancel_scope.cancel()
        finally:
            await store.aclose()
            await other.aclose()


async def _started(rig: Rig) -> str:
    task = await rig.store.create_task("p", {})
    await rig.jobs.until("started", task.id)
    return task.id


async def _expiry(store: TaskStore, task_id: str) -> datetime:
    expires = (await store.get_task(task_id)).lease_expires_at
    assert expires is not None
    return expires


async def test_one_heartbeat_loop_renews_every_running_lease(backend: str, tmp_path: Path) -> None:
    async with running(backend, tmp_path, heartbeat_seconds=0.05) as rig:
        first, second = await _started(rig), await _started(rig)
        before = {t: await _expiry(rig.store, t) for t in (first, second)}
        with anyio.fail_after(WAIT):
            while not {first, second} <= set(rig.renewed):
                await rig.renewal.wait()
        for task_id in (first, second):
            assert await _expiry(rig.store, task_id) > before[task_id]
            assert (await rig.store.get_task(task_id)).lease_owner == "local"
        assert rig.jobs.ended == {}  # renewing never disturbs the jobs


async def test_a_lease_lost_on_renewal_stops_its_job_only(backend: str, tmp_path: Path) -> None:
    async with running(backend, tmp_path, heartbeat_seconds=0.05) as rig:
        kept, taken = await _started(rig), await _started(rig)
        # Another replica takes one task over (its claim bumped the epoch): the next renewal fails.
        async with rig.other.transaction(taken) as tx:
            tx.update(lease_owner="elsewhere", lease_epoch=tx.task.lease_epoch + 1)
        await rig.jobs.until("ended", taken)
        assert rig.jobs.ended == {taken: "stopped"}
        stored = await rig.store.get_task(taken)
        assert (stored.lease_owner, stored.lease_epoch) == ("elsewhere", rig.jobs.started[taken].epoch + 1)
        renewals = len(rig.renewed)
        with anyio.fail_after(WAIT):  # the other job is still renewed, and still running
            while rig.renewed[renewals:].count(kept) < 2:
                await rig.renewal.wait()
        assert kept not in rig.jobs.ended


async def test_a_job_that_ended_its_own_lease_is_left_to_finish_up(backend: str, tmp_path: Path) -> None:
    # The job commits its task's end (the lease ends with it: same epoch, no owner), then finishes
    # up, as an execution stops the task's servers after committing task_completed. Renewals fail
    # meanwhile; that is not a lost lease: the job is neither stopped nor reported.
    async with running(backend, tmp_path, heartbeat_seconds=0.05) as rig:
        task_id, clock = await _started(rig), await _started(rig)
        async with rig.store.transaction(task_id, rig.jobs.started[task_id]) as tx:
            tx.transition(TaskStatus.FAILED, error={"code": "internal_error", "message": "ended by its job"})
        with capture_logs() as logs:
            renewals = len(rig.renewed)
            with anyio.fail_after(WAIT):  # a round renews every lease before the next round starts
                while rig.renewed[renewals:].count(task_id) < 1 or rig.renewed[renewals:].count(clock) < 3:
                    await rig.renewal.wait()
        assert rig.jobs.ended == {}
        assert [e for e in logs if e["event"] == "lease_lost_on_renew"] == []
        rig.jobs.release.set()
        await rig.jobs.until("ended", task_id)
        assert rig.jobs.ended[task_id] == "released"


async def test_a_cancel_committed_here_stops_the_job_through_the_bus(backend: str, tmp_path: Path) -> None:
    async with running(backend, tmp_path) as rig:
        task_id = await _started(rig)
        async with rig.store.transaction(task_id) as tx:
            tx.transition(TaskStatus.CANCELLED, lease_epoch=tx.task.lease_epoch + 1)
            tx.emit(TaskCancelled(reason="test", previous_status=TaskStatus.QUEUED))
        await rig.jobs.until("ended", task_id)
        assert rig.jobs.ended == {task_id: "stopped"}
        assert rig.renewed == []  # no heartbeat was involved (it is an hour)


async def test_other_events_of_the_task_leave_the_job_running(backend: str, tmp_path: Path) -> None:
    async with running(backend, tmp_path) as rig:
        task_id = await _started(rig)
        lease = rig.jobs.started[task_id]
        async with rig.store.transaction(task_id, lease) as tx:
            tx.transition(TaskStatus.PLANNING)
            tx.emit(PlanningStarted(revision=False))
        async with rig.store.transaction(task_id) as tx:
            tx.emit(TextDelta(step_id="s1", text="x"))
        rig.jobs.release.set()
        await rig.jobs.until("ended", task_id)
        assert rig.jobs.ended == {task_id: "released"}


async def test_when_events_may_have_been_missed_the_runner_rereads_the_task(backend: str, tmp_path: Path) -> None:
    async with running(backend, tmp_path) as rig:
        cancelled, running_on = await _started(rig), await _started(rig)
        # Cancelled by another replica: this bus never saw the event (as if NOTIFY was lost).
        async with rig.other.transaction(cancelled) as tx:
            tx.transition(TaskStatus.CANCELLED, lease_epoch=tx.task.lease_epoch + 1)
            tx.emit(TaskCancelled(reason="elsewhere", previous_status=TaskStatus.QUEUED))
        assert rig.jobs.ended == {}
        rig.bus.resync_all()  # what the PostgreSQL listener does after reconnecting
        await rig.jobs.until("ended", cancelled)
        assert rig.jobs.ended == {cancelled: "stopped"}
        rig.jobs.release.set()
        await rig.jobs.until("ended", running_on)
        assert rig.jobs.ended[running_on] == "released"


async def test_a_failed_reread_leaves_the_runner_running(backend: str, tmp_path: Path) -> None:
    async with running(backend, tmp_path) as rig:
        gone = await _started(rig)
        # Cancelled and then pruned by another replica: re-reading it fails (not found).
        async with rig.other.transaction(gone) as tx:
            tx.transition(TaskStatus.CANCELLED, lease_epoch=tx.task.lease_epoch + 1)
        assert await rig.other.prune_finished(datetime.now(UTC) + timedelta(days=1)) == 1
        rig.bus.resync_all()
        # The runner (and its task group) carries on: it still claims and runs new work.
        later = await _started(rig)
        assert later in rig.jobs.started and gone not in rig.jobs.ended
