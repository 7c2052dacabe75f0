"""The executor's durable journal: every step and tool call recorded before and after it runs.

All writes are fenced by the worker's lease, so a worker that lost the task cannot record anything.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from agent_runtime.domain.events import EventType
from agent_runtime.domain.records import Lease, ToolCallRecord
from agent_runtime.domain.states import StepStatus, ToolCallStatus
from agent_runtime.errors import ServiceError
from agent_runtime.observability.metrics import Metrics
from agent_runtime.store.store import TaskStore
from agent_runtime.tools.base import ToolResult, split_name

PREVIEW_CHARS = 2000
DELTA_CHARS = 256
DELTA_SECONDS = 0.05


class StoreJournal:
    """Implements ``agents.executor.ExecutionJournal`` over the task store."""

    def __init__(self, store: TaskStore, lease: Lease, plan_version: int, metrics: Metrics | None = None) -> None:
        self.store = store
        self.lease = lease
        self.plan_version = plan_version
        self.metrics = metrics
        self._step_started: dict[str, float] = {}
        # The MCP client runs each progress callback as its own task: order them against the call's
        # completion, and drop any that arrive after it.
        self._call_lock = anyio.Lock()
        self._finished_calls: set[str] = set()
        self._delta: list[str] = []
        self._delta_chars = 0
        self._delta_since = 0.0
        self._delta_step: str | None = None

    async def step_started(self, step_id: str, *, resumed: bool) -> None:
        self._step_started[step_id] = time.perf_counter()
        async with self.store.transaction(self.lease.task_id, self.lease) as tx:
            fields: dict[str, Any] = {"status": StepStatus.RUNNING}
            if not resumed:
                fields["started_at"] = tx.now
            tx.update_step(self.plan_version, step_id, **fields)
            tx.emit(EventType.STEP_STARTED, {"step_id": step_id, "resumed": resumed})

    async def text_delta(self, step_id: str, text: str) -> None:
        """Buffer streamed text; write it as one event per ~256 characters or 50 ms, and always
        before any other record, so the stream stays live without a transaction per token."""
        if self._delta_step not in (None, step_id):
            await self.flush_text()
        if not self._delta:
            self._delta_since = time.monotonic()
        self._delta_step = step_id
        self._delta.append(text)
        self._delta_chars += len(text)
        if self._delta_chars >= DELTA_CHARS or time.monotonic() - self._delta_since >= DELTA_SECONDS:
            await self.flush_text()

    async def flush_text(self) -> None:
        if not self._delta or self._delta_step is None:
            return
        text, step_id = "".join(self._delta), self._delta_step
        self._delta, self._delta_chars, self._delta_step = [], 0, None
        async with self.store.transaction(self.lease.task_id, self.lease) as tx:
            tx.emit(EventType.TEXT_DELTA, {"step_id": step_id, "text": text})

    async def call_started(
        self, step_id: str, turn: int, index: int, tool: str, arguments: dict[str, Any], *, retry_of: str | None
    ) -> str:
        await self.flush_text()
        async with self.store.transaction(self.lease.task_id, self.lease) as tx:
            if retry_of is not None:
                call_id = retry_of
                tx.update_tool_call(
                    call_id, status=ToolCallStatus.STARTED, result=None, lease_epoch=self.lease.epoch, started_at=tx.now
                )
            else:
                call_id = tx.add_tool_call(
                    step_id=step_id, turn=turn, call_index=index, tool_name=tool, arguments=arguments
                )
            tx.emit(
                EventType.TOOL_CALL_STARTED,
                {
                    "call_id": call_id,
                    "step_id": step_id,
                    "tool": tool,
                    "arguments": arguments,
                    "retry": retry_of is not None,
                },
            )
        return call_id

    async def call_completed(self, call_id: str, step_id: str, tool: str, result: ToolResult, seconds: float) -> None:
        async with self._call_lock, self.store.transaction(self.lease.task_id, self.lease) as tx:
            self._finished_calls.add(call_id)
            tx.update_tool_call(
                call_id,
                status=ToolCallStatus.COMPLETED,
                result={"text": result.text, "structured": result.structured},
                is_error=result.is_error,
                finished_at=tx.now,
            )
            tx.emit(
                EventType.TOOL_CALL_COMPLETED,
                {
                    "call_id": call_id,
                    "step_id": step_id,
                    "tool": tool,
                    "is_error": result.is_error,
                    "result": result.text[:PREVIEW_CHARS],
                    "truncated": len(result.text) > PREVIEW_CHARS,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )
        self._observe(tool, "tool_error" if result.is_error else "ok", seconds)

    async def call_failed(self, call_id: str, step_id: str, tool: str, error: ServiceError, seconds: float) -> None:
        async with self._call_lock, self.store.transaction(self.lease.task_id, self.lease) as tx:
            self._finished_calls.add(call_id)
            tx.update_tool_call(
                call_id,
                status=ToolCallStatus.FAILED,
                result={"error": error.message, "code": error.code.value},
                finished_at=tx.now,
            )
            tx.emit(
                EventType.TOOL_CALL_FAILED,
                {
                    "call_id": call_id,
                    "step_id": step_id,
                    "tool": tool,
                    "code": error.code.value,
                    "error": error.message,
                },
            )
        self._observe(tool, error.code.value, seconds)

    async def call_refused(
        self, step_id: str, turn: int, index: int, tool: str, arguments: dict[str, Any], reason: str
    ) -> None:
        await self.flush_text()
        async with self.store.transaction(self.lease.task_id, self.lease) as tx:
            call_id = tx.add_tool_call(
                step_id=step_id,
                turn=turn,
                call_index=index,
                tool_name=tool,
                arguments=arguments,
                status=ToolCallStatus.REFUSED,
                result={"reason": reason},
            )
            tx.emit(
                EventType.TOOL_CALL_REFUSED, {"call_id": call_id, "step_id": step_id, "tool": tool, "reason": reason}
            )
        self._observe(tool, "refused", 0.0)

    async def progress(
        self, call_id: str, step_id: str, progress: float, total: float | None, message: str | None
    ) -> None:
        async with self._call_lock:
            if call_id in self._finished_calls:
                return  # arrived after the call's result: no longer news
            await self._write_progress(call_id, step_id, progress, total, message)

    async def _write_progress(
        self, call_id: str, step_id: str, progress: float, total: float | None, message: str | None
    ) -> None:
        async with self.store.transaction(self.lease.task_id, self.lease) as tx:
            tx.emit(
                EventType.TOOL_PROGRESS,
                {"call_id": call_id, "step_id": step_id, "progress": progress, "total": total, "message": message},
            )

    async def step_completed(self, step_id: str, output: str) -> None:
        await self.flush_text()
        async with self.store.transaction(self.lease.task_id, self.lease) as tx:
            tx.update_step(self.plan_version, step_id, status=StepStatus.COMPLETED, output=output, finished_at=tx.now)
            tx.emit(EventType.STEP_COMPLETED, {"step_id": step_id, "output": output})
        self._observe_step(step_id, "completed")

    async def step_failed(self, step_id: str, error: ServiceError) -> None:
        await self.flush_text()
        async with self.store.transaction(self.lease.task_id, self.lease) as tx:
            body = {"code": error.code.value, "message": error.message}
            tx.update_step(self.plan_version, step_id, status=StepStatus.FAILED, error=body, finished_at=tx.now)
            tx.emit(EventType.STEP_FAILED, {"step_id": step_id, "error": body})
        self._observe_step(step_id, "failed")

    async def prior_calls(self, step_id: str) -> list[ToolCallRecord]:
        calls = await self.store.tool_calls(self.lease.task_id, step_id)
        return [c for c in calls if c.plan_version == self.plan_version]

    def _observe_step(self, step_id: str, outcome: str) -> None:
        started = self._step_started.pop(step_id, None)
        if self.metrics is not None and started is not None:
            self.metrics.observe_step(time.perf_counter() - started, outcome)

    def _observe(self, tool: str, outcome: str, seconds: float) -> None:
        if self.metrics is None:
            return
        try:
            server, name = split_name(tool)
        except ValueError:
            server, name = "unknown", tool
        self.metrics.tool_call(server, name, outcome, seconds)
