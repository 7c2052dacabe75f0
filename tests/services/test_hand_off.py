"""Hand-off: a command that makes a task claimable leases it, in its own transaction, to this
process's runner when that has a free slot; otherwise the task waits for a claim as before.

The runner here is the real one over a real store; its jobs are small test jobs that record the
lease they were given and wait until the test lets them finish."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.domain.records import Lease
from agent_runtime.domain.states import TaskStatus
from agent_runtime.services.bus import EventBus
from agent_runtime.services.runner import Runner
from agent_runtime.settings import RunnerSettings
from agent_runtime.store.store import TaskStore
from tests.support.databases import migrated_store

WAIT = 10.0


@dataclass
class Jobs:
    started: list[Lease] = field(default_factory=list)
    release: anyio.Event = field(default_factory=anyio.Event)
    arrived: anyio.Event = field(default_factory=anyio.Event)

    async def job(self, lease: Lease) -> None:
        self.started.append(lease)
        self.arrived.set()
        await self.release.wait()

    async def next_start(self) -> Lease:
        with anyio.fail_after(WAIT):
            await self.arrived.wait()
        self.arrived = anyio.Event()
        return self.started[-1]


@dataclass
class Rig:
    store: TaskStore
    runner: Runner
    jobs: Jobs


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def running(backend: str, tmp: Path) -> AsyncIterator[Rig]:
    """A real runner (one planning slot) over a freshly migrated store, handing off enabled."""
    bus = EventBus()
    async with migrated_store(backend, tmp, bus) as store:
        jobs = Jobs()
        settings = RunnerSettings(
            worker_id="local", lease_seconds=30, heartbeat_seconds=10, safety_poll_seconds=3600,
            max_concurrent_planning=1,
        )  # fmt: skip
        runner = Runner(store, bus, settings, plan_job=jobs.job, execute_job=jobs.job)
        store.dispatcher = runner
        async with anyio.create_task_group() as tg:
            await tg.start(_run, runner)
            try:
                yield Rig(store, runner, jobs)
            finally:
                jobs.release.set()
                tg.cancel_scope.cancel()


async def _run(runner: Runner, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    async with anyio.create_task_group() as workers:
        workers.start_soon(runner.run, workers)
        while runner.reserve(TaskStatus.QUEUED) is None:  # until the claim loop has started
            await anyio.lowlevel.checkpoint()
        runner.unreserve(TaskStatus.QUEUED)
        task_status.started()


async def _awaiting_approval(rig: Rig) -> tuple[str, int]:
    """A task planned under its handed-off lease (the test plays the planning job)."""
    task = await rig.store.create_task("p", {})
    lease = await rig.jobs.next_start()
    async with rig.store.transaction(task.id, lease) as tx:
        tx.transition(TaskStatus.PLANNING)
        plan = Plan(summary="s", steps=[PlanStep(id="a", title="A", instruction="i", tools=["x.y"], depends_on=[])])
        version = tx.add_plan_version(plan, "test")
        tx.transition(TaskStatus.AWAITING_APPROVAL)
    return task.id, version


async def test_a_new_task_is_leased_to_the_local_runner_in_its_creating_transaction(
    backend: str, tmp_path: Path
) -> None:
    async with running(backend, tmp_path) as rig:
        task = await rig.store.create_task("p", {})
        # Leased by the commit itself, before the runner could have run anything.
        assert (task.lease_owner, task.lease_epoch) == ("local", 1)
        stored = await rig.store.get_task(task.id)
        assert (stored.status, stored.lease_owner, stored.lease_epoch) == (TaskStatus.QUEUED, "local", 1)
        assert stored.lease_expires_at is not None
        lease = await rig.jobs.next_start()
        assert (lease.task_id, lease.epoch, lease.status, lease.last_seq) == (task.id, 1, TaskStatus.QUEUED, 1)
        # The job writes under the lease it was handed.
        async with rig.store.transaction(task.id, lease) as tx:
            tx.transition(TaskStatus.PLANNING)
        assert (await rig.store.get_task(task.id)).status == TaskStatus.PLANNING


async def test_with_no_free_slot_the_task_waits_for_a_claim(backend: str, tmp_path: Path) -> None:
    async with running(backend, tmp_path) as rig:
        first = await rig.store.create_task("one", {})
        await rig.jobs.next_start()  # the only planning slot is busy
        second = await rig.store.create_task("two", {})
        stored = await rig.store.get_task(second.id)
        assert (stored.lease_owner, stored.lease_epoch) == (None, 0)
        assert rig.runner.reserve(TaskStatus.QUEUED) is None
        rig.jobs.release.set()  # the first job ends; the freed slot makes the runner claim again
        lease = await rig.jobs.next_start()
        assert (lease.task_id, lease.epoch) == (second.id, 1)
        assert first.id != second.id


async def test_approval_hands_the_task_to_the_local_runner(backend: str, tmp_path: Path) -> None:
    async with running(backend, tmp_path) as rig:
        task_id, version = await _awaiting_approval(rig)
        async with rig.store.transaction(task_id) as tx:
            tx.transition(TaskStatus.APPROVED, approved_plan_version=version)
        lease = await rig.jobs.next_start()
        assert (lease.task_id, lease.epoch, lease.status) == (task_id, 2, TaskStatus.APPROVED)
        stored = await rig.store.get_task(task_id)
        assert (stored.status, stored.lease_owner, stored.lease_epoch) == (TaskStatus.APPROVED, "local", 2)
        async with rig.store.transaction(task_id, lease) as tx:
            tx.transition(TaskStatus.EXECUTING)


async def test_nothing_is_handed_off_while_draining(backend: str, tmp_path: Path) -> None:
    async with running(backend, tmp_path) as rig:
        rig.runner.begin_drain()
        task = await rig.store.create_task("p", {})
        stored = await rig.store.get_task(task.id)
        assert (stored.lease_owner, stored.lease_epoch) == (None, 0)
        assert rig.jobs.started == []


async def test_a_failed_write_frees_the_reserved_slot(backend: str, tmp_path: Path) -> None:
    async with running(backend, tmp_path) as rig:
        with pytest.raises(Exception, match="not JSON serializable"):
            await rig.store.create_task("p", {"not json": object()})
        assert rig.runner._reserved == {k: 0 for k in rig.runner._reserved}
        # The slot is still there for the next task.
        task = await rig.store.create_task("p", {})
        assert (await rig.jobs.next_start()).task_id == task.id
