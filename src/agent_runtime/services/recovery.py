"""Failure policies in the service: their durable records, and the way back to the planner.

* :class:`FailureRecords` writes what ``agents/failure.py`` decides through the task's journal,
  each as a write-ahead record (committed before the step waits, is skipped past, or is replanned).
* :func:`prior_attempts_of` reads a resumed task's attempts back from its events.
* :func:`requeue` sends a task whose step asked for a replan back to ``queued`` (bounded by
  ``limits.max_replans``); :func:`replan_context` and :func:`keep_completed` let the planning job
  write the new version with the completed steps carried over.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from agent_runtime.agents.failure import PriorAttempts, ReplanRequested, Verifier, prior_attempts
from agent_runtime.agents.replan import ReplanContext
from agent_runtime.agents.verify import verify
from agent_runtime.domain.events import (
    ErrorBody,
    Event,
    StepRetrying,
    StepSkipped,
    VerificationCompleted,
)
from agent_runtime.domain.events import ReplanRequested as ReplanEvent
from agent_runtime.domain.plan import Plan
from agent_runtime.domain.records import StepRecord, TaskRecord
from agent_runtime.domain.states import StepStatus, TaskStatus
from agent_runtime.errors import ServiceError
from agent_runtime.llm.base import LLMClient
from agent_runtime.services.journal import StoreJournal
from agent_runtime.store.store import TaskStore
from agent_runtime.store.tx import TaskTx


def _body(error: ServiceError, **extra: Any) -> dict[str, Any]:
    return {"code": error.code.value, "message": error.message, **extra}


class FailureRecords:
    """``agents.failure.FailureJournal`` over a :class:`StoreJournal`."""

    def __init__(self, journal: StoreJournal) -> None:
        self.journal = journal

    async def step_retrying(
        self, step_id: str, error: ServiceError, attempt: int, attempts: int, retry_at: datetime
    ) -> None:
        version = self.journal.plan_version
        # Pending again, the attempt and the next start on the row (the API shows them).
        body = _body(error, attempt=attempt, attempts=attempts, retry_at=retry_at.isoformat())

        def record(tx: TaskTx) -> None:
            tx.update_step(version, step_id, status=StepStatus.PENDING, error=body)
            tx.emit(
                StepRetrying(
                    step_id=step_id,
                    attempt=attempt,
                    attempts=attempts,
                    error=ErrorBody(code=body["code"], message=body["message"]),
                    retry_at=retry_at,
                )
            )

        await self.journal.commit(record)

    async def step_skipped(self, step_id: str, error: ServiceError, attempts: int) -> None:
        version = self.journal.plan_version
        body = _body(error, attempts=attempts)

        def record(tx: TaskTx) -> None:
            tx.update_step(version, step_id, status=StepStatus.SKIPPED, error=body, finished_at=tx.now)
            tx.emit(StepSkipped(step_id=step_id, error=ErrorBody(code=body["code"], message=body["message"]),
                                attempts=attempts))  # fmt: skip

        await self.journal.commit(record)


async def _events(store: TaskStore, task_id: str) -> list[Event]:
    found: list[Event] = []
    while True:
        page = await store.events_after(task_id, found[-1].seq if found else 0, 1000)
        found += page
        if len(page) < 1000:
            return found


async def prior_attempts_of(store: TaskStore, task_id: str, steps: list[StepRecord]) -> dict[str, PriorAttempts]:
    """A resumed task's attempts per step (read from its events: only on takeover)."""
    failed = {s.step_id: s.error or {} for s in steps if s.status == StepStatus.FAILED}
    return prior_attempts(await _events(store, task_id), failed)


async def replans_so_far(store: TaskStore, task_id: str) -> int:
    return sum(1 for e in await _events(store, task_id) if e.type == "replan_requested")


def requeue(exc: ReplanRequested, version: int, replan: int, max_replans: int) -> Callable[[TaskTx], None]:
    """The record that sends the task back to the planner: the failed step recorded failed (its
    error was perhaps not yet), the task ``queued`` (no lease; any worker plans it)."""
    body = _body(exc.error, attempts=exc.attempts)

    def record(tx: TaskTx) -> None:
        tx.update_step(version, exc.step_id, status=StepStatus.FAILED, error=body, finished_at=tx.now)
        tx.transition(TaskStatus.QUEUED, action="replan")
        tx.emit(
            ReplanEvent(
                step_id=exc.step_id,
                error=ErrorBody(code=body["code"], message=body["message"]),
                attempts=exc.attempts,
                replan=replan,
                max_replans=max_replans,
            )
        )

    return record


async def replan_context(store: TaskStore, task: TaskRecord) -> tuple[ReplanContext, list[StepRecord]] | None:
    """For a task sent back to the planner after a failure (it has an approved version that ran),
    what the planner needs, and that version's steps; None for a first plan or an early revision."""
    if task.approved_plan_version is None:
        return None
    record = await store.plan_version(task.id, task.approved_plan_version)
    steps = await store.steps(task.id, task.approved_plan_version)
    outputs = {s.step_id: s.output or "" for s in steps if s.status == StepStatus.COMPLETED}
    failed = {
        s.step_id: str((s.error or {}).get("message", s.status.value))
        for s in steps
        if s.status in (StepStatus.FAILED, StepStatus.CANCELLED)
    }
    return ReplanContext(record.plan, outputs, failed), steps


def keep_completed(tx: TaskTx, version: int, steps: list[StepRecord], context: ReplanContext, plan: Plan) -> None:
    """Copy the completed steps that ``plan`` (the new version) has unchanged into it, output and
    times: they do not run again. (A replan keeps them all; an operator's edit may change one.)"""
    same = {s.id for s in plan.steps} & {s.id for s in context.kept() if s in plan.steps}
    for step in steps:
        if step.step_id in same:
            tx.update_step(version, step.step_id, status=StepStatus.COMPLETED, output=step.output,
                           started_at=step.started_at, finished_at=step.finished_at)  # fmt: skip


def verifier(llm: LLMClient, journal: StoreJournal, verdict: dict[str, Any]) -> Verifier:
    """The executor's ``verify``: one model call (budgeted and counted like the others), its verdict
    recorded as ``verification_completed`` and kept in ``verdict`` for the task's result."""

    async def check(prompt: str, outputs: dict[str, str]) -> None:
        journal.check_budget("llm")
        found, response = await verify(llm, prompt, outputs)
        await journal.llm_used(None, response)
        verdict.update(met=found.met, reason=found.reason)
        journal.stage(lambda tx: tx.emit(VerificationCompleted(met=found.met, reason=found.reason)))

    return check
