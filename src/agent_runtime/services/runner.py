"""The runner: claims work under leases, keeps them alive, runs the planner and executor.

Work is picked up when the event bus says work is available (a commit in this process, or a
PostgreSQL NOTIFY from another replica); a slow safety poll catches expired leases. Each claimed
task runs in its own cancel scope, stopped at once when the task is cancelled (a watch on the event
bus) or its lease is lost; one heartbeat loop renews the leases of all running tasks. On shutdown
the runner stops claiming, lets in-flight work finish for a grace period, then cancels it and
releases the leases so another replica resumes.
"""

from __future__ import annotations

import contextvars
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import anyio
import structlog
from anyio.abc import TaskGroup

from agent_runtime.domain.events import Event, EventType
from agent_runtime.domain.records import Lease
from agent_runtime.domain.states import TaskStatus
from agent_runtime.errors import LeaseLostError
from agent_runtime.observability.metrics import Metrics
from agent_runtime.services.bus import EventBus, Watch
from agent_runtime.settings import RunnerSettings
from agent_runtime.store.store import ClaimRequest, TaskStore

log = structlog.get_logger(__name__)

PLANNING_STATES = (TaskStatus.QUEUED, TaskStatus.PLANNING)
EXECUTION_STATES = (TaskStatus.APPROVED, TaskStatus.EXECUTING)

Job = Callable[[Lease], Awaitable[None]]
CrashHandler = Callable[[Lease, BaseException], Awaitable[None]]


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class _Slot:
    lease: Lease
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    lost: bool = False
    watch: Watch | None = None


class Runner:
    def __init__(
        self,
        store: TaskStore,
        bus: EventBus,
        settings: RunnerSettings,
        *,
        plan_job: Job,
        execute_job: Job,
        on_crash: CrashHandler | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.settings = settings
        self.owner = settings.worker_id or default_worker_id()
        self._plan_job = plan_job
        self._execute_job = execute_job
        self._on_crash = on_crash
        self.metrics = metrics
        self._planning: dict[str, _Slot] = {}
        self._executing: dict[str, _Slot] = {}
        self._draining = False
        self._saturated = False
        self._claiming = False
        self._beating = False
        self._stopped = anyio.Event()
        self._stopped.set()  # not running until run() starts
        self._idle = anyio.Event()
        self._idle.set()
        self._tg: TaskGroup | None = None
        self._reserved: dict[tuple[TaskStatus, ...], int] = {PLANNING_STATES: 0, EXECUTION_STATES: 0}
        """Slots held for tasks this process's own commits are leasing to this runner (``adopt``)."""

    @property
    def draining(self) -> bool:
        return self._draining

    def active(self) -> int:
        return len(self._planning) + len(self._executing)

    async def run(self, tg: TaskGroup) -> None:
        """Claim loop; workers are started in ``tg``. Returns when :meth:`drain` is called."""
        log.info("runner_started", owner=self.owner)
        self._stopped = anyio.Event()
        self._tg = tg
        try:
            while not self._draining:
                await self._claim(tg)
                await self.bus.wait_for_work(self.settings.safety_poll_seconds)
        finally:
            self._tg = None
            self._stopped.set()

    # -- hand-off: work this process's own commands lease to it (services.handoff.HandOff) ---------

    def _kind(self, status: TaskStatus) -> tuple[tuple[TaskStatus, ...], dict[str, _Slot], int, Job]:
        if status in PLANNING_STATES:
            return PLANNING_STATES, self._planning, self.settings.max_concurrent_planning, self._plan_job
        return EXECUTION_STATES, self._executing, self.settings.max_concurrent_execution, self._execute_job

    def reserve(self, status: TaskStatus) -> tuple[str, float] | None:
        """A slot for a task a local command is making claimable, if one is free. Not under global
        limits (those are counted across replicas by the claim) and not while draining."""
        if self._tg is None or self._draining or status not in (*PLANNING_STATES, *EXECUTION_STATES):
            return None
        kind, slots, limit, _ = self._kind(status)
        glob = self.settings.global_max_planning if kind is PLANNING_STATES else self.settings.global_max_execution
        if glob is not None or len(slots) + self._reserved[kind] >= limit:
            return None
        self._reserved[kind] += 1
        return self.owner, self.settings.lease_seconds

    def unreserve(self, status: TaskStatus) -> None:
        self._reserved[self._kind(status)[0]] -= 1

    def adopt(self, lease: Lease) -> None:
        """Run a task leased to this runner by a local commit, in the slot reserved for it."""
        kind, slots, _, job = self._kind(lease.status)
        self._reserved[kind] -= 1
        if self._tg is None:  # stopped in between: the lease expires and the task is claimed again
            log.warning("handoff_after_stop", task_id=lease.task_id)
            return
        self._start(self._tg, lease, slots, job)

    async def _claim(self, tg: TaskGroup) -> None:
        """Claim planning and execution work in one transaction, up to the free slots of each."""
        kinds = (
            (PLANNING_STATES, self._planning, self.settings.max_concurrent_planning,
             self.settings.global_max_planning, self._plan_job),
            (EXECUTION_STATES, self._executing, self.settings.max_concurrent_execution,
             self.settings.global_max_execution, self._execute_job),
        )  # fmt: skip
        requests = [
            ClaimRequest(states, limit - len(slots) - self._reserved[states], glob)
            for states, slots, limit, glob, _ in kinds
        ]
        self._claiming = True
        try:
            claimed = await self.store.claim_batch(self.owner, requests, self.settings.lease_seconds)
        except Exception as exc:  # the database may be briefly unreachable (or not migrated yet)
            log.warning("claim_failed", error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        finally:
            self._claiming = False
        # Saturated: no free slot, or every free slot was filled: more work may be waiting when a
        # slot frees up (so a job that ends wakes the claim loop).
        self._saturated = any(r.limit <= 0 or len(got) == r.limit for r, got in zip(requests, claimed, strict=True))
        for (_, slots, _, _, job), leases in zip(kinds, claimed, strict=True):
            for lease in leases:
                if lease.status in (TaskStatus.PLANNING, TaskStatus.EXECUTING) and self.metrics is not None:
                    self.metrics.lease_takeover()
                self._start(tg, lease, slots, job)

    def _start(self, tg: TaskGroup, lease: Lease, slots: dict[str, _Slot], job: Job) -> None:
        if lease.task_id in slots:
            return
        slot = _Slot(lease)
        slots[lease.task_id] = slot
        # Stop the worker the moment the task is cancelled (by any replica): every event of the task
        # passes this watch as it is delivered; no task of its own.
        on_stale = partial(tg.start_soon, self._recheck, slot)
        slot.watch = self.bus.watch(lease.task_id, partial(self._on_event, slot), on_stale, after=lease.last_seq)
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        # In a clean context: a job handed off by a command (``adopt``) is started from the
        # request's task and must not inherit its context variables (its request_id, log binds).
        contextvars.Context().run(tg.start_soon, self._work, slot, slots, job)
        if not self._beating:
            self._beating = True
            contextvars.Context().run(tg.start_soon, self._heartbeats)

    async def _work(self, slot: _Slot, slots: dict[str, _Slot], job: Job) -> None:
        lease = slot.lease
        bound = structlog.contextvars.bound_contextvars(task_id=lease.task_id, epoch=lease.epoch)
        with bound:
            try:
                with slot.scope:
                    await job(lease)
            except* LeaseLostError:
                log.warning("lease_lost", owner=self.owner)
            except* Exception as group:  # top of a worker task: record it, keep the service up
                log.error("worker_crashed", exc_info=group)
                if self._on_crash is not None:
                    with anyio.CancelScope(shield=True):
                        await self._on_crash(lease, group)
            finally:
                if slot.watch is not None:
                    self.bus.unsubscribe(slot.watch)
                slots.pop(lease.task_id, None)
                if self._draining and not slot.lost:
                    with anyio.CancelScope(shield=True):
                        await self._release(lease)
                if not self._planning and not self._executing:
                    self._idle.set()
                if self._saturated or self._claiming:
                    # A slot freed up and work may be waiting for it (a claim in flight counted
                    # this slot as busy, so it gets another round).
                    self.bus.work_available()

    def _running(self, slot: _Slot) -> bool:
        slots = self._planning if slot.lease.status in PLANNING_STATES else self._executing
        return slots.get(slot.lease.task_id) is slot

    def _stop(self, slot: _Slot) -> None:
        slot.lost = True
        slot.scope.cancel()

    async def _heartbeats(self) -> None:
        """Renew the lease of every running job each ``heartbeat_seconds``, while any job runs
        (one loop for all jobs rather than a task per job; each renewal is independent)."""
        try:
            while self._planning or self._executing:
                await anyio.sleep(self.settings.heartbeat_seconds)
                async with anyio.create_task_group() as tg:
                    for slot in (*self._planning.values(), *self._executing.values()):
                        tg.start_soon(self._renew, slot)
        finally:
            self._beating = False

    async def _renew(self, slot: _Slot) -> None:
        try:
            ok = await self.store.renew(slot.lease, self.settings.lease_seconds)
        except Exception:
            log.exception("lease_renew_failed", task_id=slot.lease.task_id)
            return
        if not ok and self._running(slot) and not await self._ended_by_its_job(slot):
            log.warning("lease_lost_on_renew", task_id=slot.lease.task_id)
            self._stop(slot)

    async def _ended_by_its_job(self, slot: _Slot) -> bool:
        """Whether the job's own commit ended its lease: the task left the leased states (it
        finished, or waits for a person) at the job's epoch, with no owner. The job is finishing up
        (an execution stops the task's servers after committing ``task_completed``): not a lost
        lease, so it is not stopped. A takeover, a cancel or a hand-off moves the epoch on."""
        try:
            task = await self.store.get_task(slot.lease.task_id)
        except Exception as exc:  # unknown: treat it as lost, as before
            log.warning("lease_check_failed", task_id=slot.lease.task_id, error=f"{type(exc).__name__}: {exc}")
            return False
        return task.lease_epoch == slot.lease.epoch and task.lease_owner is None

    def _on_event(self, slot: _Slot, event: Event) -> None:
        if event.type == EventType.TASK_CANCELLED:
            self._stop(slot)

    async def _recheck(self, slot: _Slot) -> None:
        """Events may have been missed (the PostgreSQL listener reconnected): read the status.
        Runs in the runner's task group, so it must not raise: if the read fails, the worker's next
        fenced write or renewal still fails on a cancelled task's bumped epoch."""
        if not self._running(slot):
            return
        try:
            status = (await self.store.get_task(slot.lease.task_id)).status
        except Exception as exc:
            log.warning("cancel_recheck_failed", task_id=slot.lease.task_id, error=f"{type(exc).__name__}: {exc}")
            return
        if status == TaskStatus.CANCELLED and self._running(slot):
            self._stop(slot)

    async def _release(self, lease: Lease) -> None:
        try:
            await self.store.release(lease)
        except Exception:
            log.exception("lease_release_failed")

    def begin_drain(self) -> None:
        """Stop claiming new work (readiness reports this at once)."""
        self._draining = True
        self.bus.work_available()

    async def drain(self, grace_seconds: float) -> None:
        """Stop claiming; let in-flight work finish for ``grace_seconds``; then hand it back."""
        self.begin_drain()
        started = time.monotonic()
        with anyio.move_on_after(grace_seconds):
            await self._idle.wait()
        leftover = list(self._planning.values()) + list(self._executing.values())
        for slot in leftover:
            slot.scope.cancel()
        with anyio.move_on_after(5):  # the claim loop and the cancelled workers (releasing leases)
            await self._stopped.wait()
            await self._idle.wait()
        log.info("runner_drained", handed_back=len(leftover), seconds=round(time.monotonic() - started, 3))
