"""Hand-off: a command that makes a task claimable leases it, in its own transaction, to this
process's runner when that has a free slot; otherwise the task waits for a claim as before.

The service and runner here are the real ones over a real store; the runner's jobs are small test
jobs that record the lease they were given (and the context they run in) and wait until the test
lets them finish."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import sqlalchemy as sa
import structlog

from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.domain.records import Lease
from agent_runtime.domain.states import TaskStatus
from agent_runtime.services.bus import EventBus
from agent_runtime.services.runner import Runner
from agent_runtime.services.tasks import TaskService
from agent_runtime.settings import LimitSettings, RunnerSettings
from agent_runtime.store.store import TaskStore
from tests.support.databases import migrated_store

WAIT = 10.0


@dataclass
class Jobs:
    started: list[Lease] = field(default_factory=list)
    context: list[dict[str, Any]] = field(default_factory=list)
    """The structlog context variables each job started with."""
    release: anyio.Event = field(default_factory=anyio.Event)
    arrived: anyio.Event = field(default_factory=anyio.Event)

    async def job(self, lease: Lease) -> None:
        self.started.append(lease)
        self.context.append(structlog.contextvars.get_contextvars())
        structlog.get_logger("test_job").info("job_started")
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
    tasks: TaskService


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
            max_concurrent_planning=1, max_concurrent_execution=1,
        )  # fmt: skip
        runner = Runner(store, bus, settings, plan_job=jobs.job, execute_job=jobs.job)
        tasks = TaskService(store, LimitSettings(), lambda: ["x.y"], hand_off=runner)
        async with anyio.create_task_group() as tg:
            await tg.start(_run, runner)
            try:
                yield Rig(store, runner, jobs, tasks)
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
    task = await rig.tasks.submit("p", {})
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
        task = await rig.tasks.submit("p", {})
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
        first = await rig.tasks.submit("one", {})
        await rig.jobs.next_start()  # the only planning slot is busy
        second = await rig.tasks.submit("two", {})
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
        await rig.tasks.approve(task_id, version, "alice")
        lease = await rig.jobs.next_start()
        assert (lease.task_id, lease.epoch, lease.status) == (task_id, 2, TaskStatus.APPROVED)
        stored = await rig.store.get_task(task_id)
        assert (stored.status, stored.lease_owner, stored.lease_epoch) == (TaskStatus.APPROVED, "local", 2)
        async with rig.store.transaction(task_id, lease) as tx:
            tx.transition(TaskStatus.EXECUTING)


async def test_nothing_is_handed_off_while_draining(backend: str, tmp_path: Path) -> None:
    async with running(backend, tmp_path) as rig:
        rig.runner.begin_drain()
        task = await rig.tasks.submit("p", {})
        stored = await rig.store.get_task(task.id)
        assert (stored.lease_owner, stored.lease_epoch) == (None, 0)
        assert rig.jobs.started == []


async def test_a_failed_write_frees_the_reserved_slot(backend: str, tmp_path: Path) -> None:
    async with running(backend, tmp_path) as rig:
        task_id, version = await _awaiting_approval(rig)
        async with rig.store.engine.begin() as conn:  # the approval's write will fail in the database
            await conn.execute(sa.text("DROP TABLE approvals"))
        with pytest.raises((sa.exc.DBAPIError, sqlite3.Error)):  # SQLite's kept statements run on pysqlite
            await rig.tasks.approve(task_id, version, "alice")
        assert (await rig.store.get_task(task_id)).status == TaskStatus.AWAITING_APPROVAL
        # The one execution slot was given back: it can be reserved again.
        assert rig.runner.reserve(TaskStatus.APPROVED) is not None
        rig.runner.unreserve(TaskStatus.APPROVED)


async def test_a_handed_off_job_does_not_inherit_the_requests_context(backend: str, tmp_path: Path) -> None:
    async with running(backend, tmp_path) as rig:
        with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            with structlog.contextvars.bound_contextvars(request_id="req-approve-1"):
                task = await rig.tasks.submit("p", {})
            lease = await rig.jobs.next_start()
        assert lease.task_id == task.id and lease.epoch == 1  # handed off, not claimed
        assert "request_id" not in rig.jobs.context[-1]
        [line] = [entry for entry in logs if entry["event"] == "job_started"]
        assert "request_id" not in line and line["task_id"] == task.id
