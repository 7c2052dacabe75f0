"""Task commands from frontends and operators: submit, approve, reject, revise, edit, cancel, resolve.

Each command is one store transaction that checks the state table and writes its events. Nothing
here waits for planning or execution.

**Hand-off.** A command that makes a task claimable (submit, approve, revise, resolve) offers it to
this process's runner first: if the runner has a free slot, the service reserves it, leases the
task to the runner *in the command's own transaction* (a new epoch), and after the commit hands
the lease to the runner, which starts the job at once (no claim transaction, no trip through the
claim loop). If the write fails the slot is freed; with no free slot the task waits for a claim by
any replica, as before.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from agent_runtime.domain.events import Event, EventType
from agent_runtime.domain.plan import Plan, check_plan
from agent_runtime.domain.records import Lease, PlanVersionRecord, StepRecord, TaskRecord, ToolCallRecord
from agent_runtime.domain.states import CLAIMABLE, StepStatus, TaskStatus, ToolCallStatus, is_terminal
from agent_runtime.errors import (
    InputValidationError,
    InvalidStateError,
    NotFoundError,
    PayloadTooLargeError,
    StalePlanVersionError,
)
from agent_runtime.settings import LimitSettings
from agent_runtime.store.store import TaskStore
from agent_runtime.store.tx import TaskTx

Resolution = Literal["retry", "skip", "fail"]


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task with its current plan version and that version's step statuses."""

    task: TaskRecord
    plan: PlanVersionRecord | None
    steps: list[StepRecord]
    attention: list[ToolCallRecord]


class HandOff(Protocol):
    """This process's runner, as the commands see it (``services.runner.Runner`` implements it)."""

    def reserve(self, status: TaskStatus) -> tuple[str, float] | None:
        """Hold a free slot for a task about to become claimable in ``status``: (owner, lease
        seconds), or None to leave the task to the claims (no room, draining, global limits)."""
        ...

    def adopt(self, lease: Lease) -> None:
        """The lease was committed: run the task in the reserved slot."""
        ...

    def unreserve(self, status: TaskStatus) -> None:
        """The write failed: free the reserved slot."""
        ...


class TaskService:
    def __init__(
        self,
        store: TaskStore,
        limits: LimitSettings,
        known_tools: Callable[[], Iterable[str]],
        hand_off: HandOff | None = None,
    ) -> None:
        self.store = store
        self.limits = limits
        self._known_tools = known_tools
        self._hand_off = hand_off
        """None: commands only wake workers (``runner.hand_off: false``, or no local runner)."""

    # -- queries --------------------------------------------------------------------------------

    async def get(self, task_id: str) -> TaskRecord:
        return await self.store.get_task(task_id)

    async def list_tasks(
        self, *, status: TaskStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[TaskRecord], str | None]:
        """A page of tasks, newest first; ``cursor`` is the previous page's (None: no more)."""
        return await self.store.list_tasks(status=status, limit=limit, cursor=cursor)

    async def plan_versions(self, task_id: str) -> list[PlanVersionRecord]:
        """Every plan version of the task, oldest first (:class:`NotFoundError` for no such task)."""
        await self.store.get_task(task_id)
        return await self.store.plan_versions(task_id)

    async def events_after(self, task_id: str, after: int, limit: int) -> list[Event]:
        """Up to ``limit`` stored events of the task with a sequence number above ``after``."""
        return await self.store.events_after(task_id, after, limit)

    async def count_by_status(self) -> dict[str, int]:
        return await self.store.count_by_status()

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        await self.store.ping()

    async def view(self, task_id: str) -> TaskView:
        return await self.view_of(await self.store.get_task(task_id))

    async def view_of(self, task: TaskRecord) -> TaskView:
        """``task`` (as read, or as a command's transaction returned it) with its current plan
        version, that version's step statuses and, when it needs attention, its in-doubt calls."""
        task_id = task.id
        plan = None
        steps: list[StepRecord] = []
        version = task.approved_plan_version or task.current_plan_version
        if version is not None:
            plan = await self.store.plan_version(task_id, version)
            steps = await self.store.steps(task_id, version)
        attention: list[ToolCallRecord] = []
        if task.status == TaskStatus.NEEDS_ATTENTION:
            attention = [c for c in await self.store.tool_calls(task_id) if c.status == ToolCallStatus.IN_DOUBT]
        return TaskView(task=task, plan=plan, steps=steps, attention=attention)

    # -- commands -------------------------------------------------------------------------------

    async def submit(self, prompt: str, metadata: dict[str, Any] | None) -> TaskRecord:
        if not prompt.strip():
            raise InputValidationError("prompt must not be empty", details={"field": "prompt"})
        if len(prompt) > self.limits.max_prompt_chars:
            raise PayloadTooLargeError(
                f"prompt has {len(prompt)} characters; the limit is {self.limits.max_prompt_chars}",
                details={"field": "prompt", "limit": self.limits.max_prompt_chars},
            )
        meta = metadata or {}
        if len(json.dumps(meta)) > self.limits.max_metadata_bytes:
            raise PayloadTooLargeError(
                f"metadata is larger than {self.limits.max_metadata_bytes} bytes",
                details={"field": "metadata", "limit": self.limits.max_metadata_bytes},
            )
        reserved = self._hand_off.reserve(TaskStatus.QUEUED) if self._hand_off is not None else None
        if reserved is None:
            return await self.store.create_task(prompt, meta)
        owner, seconds = reserved
        try:
            task = await self.store.create_task(prompt, meta, lease_to=(owner, _now() + timedelta(seconds=seconds)))
        except BaseException:
            self._give_back(TaskStatus.QUEUED)
            raise
        self._adopt(task, TaskStatus.QUEUED)
        return task

    async def approve(self, task_id: str, plan_version: int, actor: str | None) -> tuple[TaskRecord, bool]:
        """Approve ``plan_version``. Returns (task, created): a repeat of the same approval is a no-op."""
        async with self._command(task_id) as tx:
            task = tx.task
            if task.approved_plan_version == plan_version and task.status in (
                TaskStatus.APPROVED,
                TaskStatus.EXECUTING,
                TaskStatus.NEEDS_ATTENTION,
                TaskStatus.COMPLETED,
            ):
                return task, False
            self._require(task, TaskStatus.AWAITING_APPROVAL, "approve")
            self._require_current(task, plan_version)
            tx.transition(TaskStatus.APPROVED, approved_plan_version=plan_version)
            tx.add_approval(plan_version, "approved", actor, None)
            tx.emit(EventType.TASK_APPROVED, {"plan_version": plan_version, "actor": actor})
        return tx.task, True

    async def reject(self, task_id: str, reason: str | None, actor: str | None) -> TaskRecord:
        async with self._command(task_id) as tx:
            self._require(tx.task, TaskStatus.AWAITING_APPROVAL, "reject")
            version = tx.task.current_plan_version or 0
            tx.transition(TaskStatus.REJECTED, error={"code": "rejected", "message": reason or "rejected"})
            tx.add_approval(version, "rejected", actor, reason)
            tx.emit(EventType.TASK_REJECTED, {"plan_version": version, "reason": reason, "actor": actor})
        return tx.task

    async def request_revision(self, task_id: str, feedback: str, actor: str | None) -> TaskRecord:
        if not feedback.strip():
            raise InputValidationError("feedback must not be empty", details={"field": "feedback"})
        async with self._command(task_id) as tx:
            self._require(tx.task, TaskStatus.AWAITING_APPROVAL, "request a revision")
            version = tx.task.current_plan_version or 0
            tx.transition(TaskStatus.QUEUED, revision_feedback=feedback)
            tx.add_approval(version, "revision_requested", actor, feedback)
            tx.emit(EventType.REVISION_REQUESTED, {"plan_version": version, "feedback": feedback, "actor": actor})
        return tx.task

    async def edit_plan(self, task_id: str, base_version: int, plan: Plan, actor: str | None) -> TaskRecord:
        problems = check_plan(plan, known_tools=self._known_tools(), max_steps=self.limits.max_steps_per_plan)
        if problems:
            raise InputValidationError(
                "the edited plan is invalid: " + "; ".join(problems), details={"field": "plan", "problems": problems}
            )
        async with self._command(task_id) as tx:
            self._require(tx.task, TaskStatus.AWAITING_APPROVAL, "edit the plan")
            self._require_current(tx.task, base_version)
            version = tx.add_plan_version(plan, f"operator:{actor or 'unknown'}")
            tx.transition(TaskStatus.AWAITING_APPROVAL)
            tx.add_approval(base_version, "edited", actor, None)
            tx.emit(
                EventType.PLAN_EDITED,
                {
                    "plan_version": version,
                    "based_on": base_version,
                    "content_hash": plan.content_hash(),
                    "actor": actor,
                },
            )
            tx.emit(EventType.APPROVAL_REQUIRED, {"plan_version": version})
        return tx.task

    async def cancel(self, task_id: str, reason: str | None = None) -> TaskRecord:
        """Cancel at once. Bumping the lease epoch fences off the worker; the runner also stops it."""
        async with self._command(task_id) as tx:
            task = tx.task
            if is_terminal(task.status):
                raise InvalidStateError(
                    f"cannot cancel: task is already {task.status.value}",
                    details={"current_status": task.status.value},
                )
            tx.transition(
                TaskStatus.CANCELLED,
                lease_epoch=task.lease_epoch + 1,
                error={"code": "cancelled", "message": reason or "cancelled by request"},
            )
            version = task.approved_plan_version
            if version is not None:
                tx.update_steps_where(version, {StepStatus.RUNNING}, status=StepStatus.CANCELLED, finished_at=tx.now)
                tx.update_steps_where(version, {StepStatus.PENDING}, status=StepStatus.SKIPPED)
            tx.update_tool_calls_where(
                {ToolCallStatus.STARTED, ToolCallStatus.IN_DOUBT}, status=ToolCallStatus.CANCELLED, finished_at=tx.now
            )
            tx.emit(EventType.TASK_CANCELLED, {"reason": reason, "previous_status": task.status.value})
        return tx.task

    async def resolve_attention(
        self, task_id: str, tool_call_id: str, action: Resolution, result: str | None, actor: str | None
    ) -> TaskRecord:
        """Decide an in-doubt tool call: ``retry`` it, ``skip`` it with a stated result, or ``fail`` the task."""
        calls = {c.id: c for c in await self.store.tool_calls(task_id)}
        call = calls.get(tool_call_id)
        if call is None:
            raise NotFoundError(f"task {task_id} has no tool call {tool_call_id}", details={"field": "tool_call_id"})
        if action == "skip" and result is None:
            raise InputValidationError("skip needs a stated result", details={"field": "result"})
        async with self._command(task_id) as tx:
            self._require(tx.task, TaskStatus.NEEDS_ATTENTION, "resolve a tool call")
            if call.status != ToolCallStatus.IN_DOUBT:
                raise InvalidStateError(
                    f"tool call {tool_call_id} is {call.status.value}, not in_doubt",
                    details={"current_status": tx.task.status.value, "tool_call_status": call.status.value},
                )
            payload = {"tool_call_id": tool_call_id, "action": action, "actor": actor}
            if action == "fail":
                tx.update_tool_call(tool_call_id, status=ToolCallStatus.FAILED, finished_at=tx.now)
                error = {"code": "in_doubt_failed", "message": f"operator failed in-doubt call to {call.tool_name}"}
                tx.transition(TaskStatus.FAILED, error=error)
                tx.emit(EventType.ATTENTION_RESOLVED, payload)
                tx.emit(EventType.TASK_FAILED, {"error": error})
            else:
                if action == "skip":
                    tx.update_tool_call(
                        tool_call_id,
                        status=ToolCallStatus.SKIPPED,
                        result={"text": result, "stated_by_operator": True},
                        finished_at=tx.now,
                    )
                else:
                    tx.update_tool_call(tool_call_id, result={"operator_retry": True})
                tx.transition(TaskStatus.APPROVED)
                tx.emit(EventType.ATTENTION_RESOLVED, payload)
        return tx.task

    # -- hand-off ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def _command(self, task_id: str) -> AsyncIterator[TaskTx]:
        """A command's transaction; if it makes the task claimable, hand it off (module docstring)."""
        offered: TaskStatus | None = None
        try:
            async with self.store.transaction(task_id) as tx:
                yield tx
                offered = self._offer(tx)
        except BaseException:
            if offered is not None:
                self._give_back(offered)
            raise
        if offered is not None:
            self._adopt(tx.task, offered)

    def _offer(self, tx: TaskTx) -> TaskStatus | None:
        """Lease the task to the local runner in ``tx`` if it has a free slot; the status offered.

        Only when the task starts from a status no claim can take (e.g. awaiting approval): then no
        other worker can have leased it since it was read, and the new epoch is the read one + 1."""
        if self._hand_off is None or not tx.wakes_workers or tx.started_from.status in CLAIMABLE:
            return None
        status = tx.task.status
        reserved = self._hand_off.reserve(status)
        if reserved is None:
            return None
        owner, seconds = reserved
        tx.lease_to(owner, tx.now + timedelta(seconds=seconds))
        return status

    def _adopt(self, task: TaskRecord, offered: TaskStatus) -> None:
        assert self._hand_off is not None and task.lease_owner is not None
        self._hand_off.adopt(Lease(task.id, task.lease_owner, task.lease_epoch, offered, task.last_seq))

    def _give_back(self, offered: TaskStatus) -> None:
        assert self._hand_off is not None
        self._hand_off.unreserve(offered)

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _require(task: TaskRecord, status: TaskStatus, action: str) -> None:
        if task.status != status:
            raise InvalidStateError(
                f"cannot {action}: task is {task.status.value}, not {status.value}",
                details={"current_status": task.status.value, "current_plan_version": task.current_plan_version},
            )

    @staticmethod
    def _require_current(task: TaskRecord, plan_version: int) -> None:
        if task.current_plan_version != plan_version:
            raise StalePlanVersionError(
                f"plan version {plan_version} is not the current version ({task.current_plan_version})",
                details={"current_status": task.status.value, "current_plan_version": task.current_plan_version},
            )


def _now() -> datetime:
    return datetime.now(UTC)
