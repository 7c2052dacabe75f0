"""The executor's durable journal: every step and tool call recorded before and after it runs.

Records are **group-committed**: each one is a small function applied to a fenced
:class:`~agent_runtime.store.tx.TaskTx`, and the records that accumulate are written together in
one transaction. Only a write-ahead record waits for its commit:

* ``call_started`` is a *barrier*: the call is durable (with everything recorded before it) before
  the tool runs, so a worker that takes over sees it as in flight (in doubt), never as unknown.
* ``step_failed`` and :meth:`StoreJournal.commit` (the task's final transition) are barriers too.
* Everything else (step started, call results, refused calls, progress, text, step completed) is
  committed at the next barrier or after ``linger`` seconds, whichever comes first. A crash inside
  that window loses at most those records: a call whose result was not yet written is in doubt on
  takeover (re-run only if safe to repeat, else the task needs attention), and a step whose
  completion was not written is resumed from its recorded calls, so no tool call runs twice.

Records are committed in the order they were made, so events keep their order. All writes are
fenced by the worker's lease: a worker that lost the task cannot record anything.

Steps running in parallel share one journal. Each record is appended synchronously (no await
between making it and queueing it), and a flush takes the whole queue under one lock, so a barrier
returns only once its own record is durable, whoever's flush wrote it: a flush that fails marks the
journal failed, and every later barrier raises, so no step runs a tool after its write-ahead record
was lost with another step's commit. Streamed text is buffered per step and written as one event per
~256 characters or 50 ms of that step.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import anyio

from agent_runtime.agents.execution import CallCheck
from agent_runtime.domain.events import (
    ErrorBody,
    StepCompleted,
    StepFailed,
    StepStarted,
    TextDelta,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRefused,
    ToolCallStarted,
    ToolProgress,
)
from agent_runtime.domain.records import Lease, ToolCallRecord
from agent_runtime.domain.states import StepStatus, ToolCallStatus
from agent_runtime.errors import ServiceError
from agent_runtime.llm.base import LLMResponse
from agent_runtime.observability.metrics import Metrics
from agent_runtime.services.usage import Pricer, UsageMeter
from agent_runtime.store.rows import new_id
from agent_runtime.store.store import TaskStore
from agent_runtime.store.tx import TaskTx
from agent_runtime.tools.base import ToolResult, split_name

PREVIEW_CHARS = 2000
DELTA_CHARS = 256
DELTA_SECONDS = 0.05

Record = Callable[[TaskTx], None]


def _emit(event: TextDelta) -> Record:
    return lambda tx: tx.emit(event)


@dataclass
class _Delta:
    """A step's streamed text not yet written."""

    since: float
    parts: list[str] = field(default_factory=list)
    chars: int = 0


class StoreJournal:
    """Implements ``agents.executor.ExecutionJournal`` over the task store.

    Use :meth:`running` around the work: it runs the background committer for lingering records
    and commits whatever is left when the work ends normally.
    """

    def __init__(
        self,
        store: TaskStore,
        lease: Lease,
        plan_version: int,
        metrics: Metrics | None = None,
        *,
        linger: float = 0.002,
        usage: dict[str, float] | None = None,
        budget: dict[str, float] | None = None,
        price: Pricer | None = None,
        model: str = "",
        attempts: dict[str, datetime | None] | None = None,
    ) -> None:
        self.store = store
        self._attempts = dict(attempts or {})
        """step id -> when its current attempt started (a retried step's earlier calls are older)."""
        self.lease = lease
        self.plan_version = plan_version
        self.metrics = metrics
        self.linger = linger
        self.meter = UsageMeter(usage, budget, price)
        """What the task has spent, this run included (written with each usage record)."""
        self._model = model
        self.commits = 0
        """Transactions written so far (for diagnostics and benchmarks)."""
        self._step_started: dict[str, float] = {}
        self._pending: list[Record] = []
        self._has_pending = anyio.Event()
        self._commit_lock = anyio.Lock(fast_acquire=True)
        self._failure: BaseException | None = None
        # Progress notifications arrive as their own tasks: drop any that come after the call's result.
        self._finished_calls: set[str] = set()
        self._delta: dict[str, _Delta] = {}

    # -- group commit -----------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[StoreJournal]:
        """Run the background committer; on a normal exit, commit what is still pending.

        An error in the body is raised as itself, not wrapped in an exception group."""
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._committer)
            try:
                yield self
                await self.flush()
            except Exception as exc:
                failure = exc
            finally:
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _committer(self) -> None:
        while True:
            await self._has_pending.wait()
            if self.linger > 0:
                await anyio.sleep(self.linger)
            try:
                await self.flush()
            except Exception as exc:  # raised again at the worker's next barrier
                self._failure = exc
                return

    def stage(self, record: Record) -> None:
        """Add a record to the next commit (made at the next barrier, or after ``linger``)."""
        self._take_text()
        self._append(record)

    def _append(self, record: Record) -> None:
        self._pending.append(record)
        self._has_pending.set()

    async def flush(self) -> None:
        """Commit every pending record in one transaction (in order); return when it is durable."""
        async with self._commit_lock:
            if self._failure is not None:
                raise self._failure
            self._take_text()
            if not self._pending:
                return
            records, self._pending = self._pending, []
            self._has_pending = anyio.Event()
            try:
                # A commit that began finishes even if the step that started it is cancelled: it
                # carries other steps' records too.
                with anyio.CancelScope(shield=True):
                    async with self.store.transaction(self.lease.task_id, self.lease) as tx:
                        for record in records:
                            record(tx)
            except Exception as exc:
                # The records are lost: a barrier whose record was among them must not pass.
                self._failure = exc
                raise
            self.commits += 1

    async def commit(self, record: Record) -> None:
        """Commit ``record`` together with everything pending (e.g. the task's final transition)."""
        self.stage(record)
        await self.flush()

    # -- the journal ------------------------------------------------------------------------------

    async def step_started(self, step_id: str, *, resumed: bool) -> None:
        self._step_started[step_id] = time.perf_counter()

        def record(tx: TaskTx) -> None:
            fields: dict[str, Any] = {"status": StepStatus.RUNNING}
            if not resumed:
                fields["started_at"] = tx.now
            tx.update_step(self.plan_version, step_id, **fields)
            tx.emit(StepStarted(step_id=step_id, resumed=resumed))

        self.stage(record)

    async def text_delta(self, step_id: str, text: str) -> None:
        """Buffer streamed text; it becomes one event per ~256 characters or 50 ms of a step, and
        always before any other record, so the stream stays live without an event per token."""
        buffer = self._delta.get(step_id)
        if buffer is None:
            buffer = self._delta[step_id] = _Delta(since=time.monotonic())
        buffer.parts.append(text)
        buffer.chars += len(text)
        if buffer.chars >= DELTA_CHARS or time.monotonic() - buffer.since >= DELTA_SECONDS:
            self._take_text()

    def _take_text(self) -> None:
        for step_id, buffer in self._delta.items():
            self._append(_emit(TextDelta(step_id=step_id, text="".join(buffer.parts))))
        self._delta.clear()

    async def call_started(
        self, step_id: str, turn: int, index: int, tool: str, arguments: dict[str, Any], *, retry_of: str | None
    ) -> str:
        call_id = retry_of if retry_of is not None else new_id("call")
        if retry_of is None:
            self.meter.tool_call(step_id)
        usage = self.meter.tick()

        def record(tx: TaskTx) -> None:
            tx.update(usage=usage)
            if retry_of is not None:
                # An in-doubt retry, or a gated call as decided (an edit may change tool and arguments).
                tx.update_tool_call(
                    call_id,
                    status=ToolCallStatus.STARTED,
                    result=None,
                    tool_name=tool,
                    arguments=arguments,
                    lease_epoch=self.lease.epoch,
                    started_at=tx.now,
                )
            else:
                tx.add_tool_call(
                    call_id=call_id, step_id=step_id, turn=turn, call_index=index, tool_name=tool, arguments=arguments
                )
            tx.emit(
                ToolCallStarted(
                    call_id=call_id,
                    step_id=step_id,
                    tool=tool,
                    arguments=arguments,
                    retry=retry_of is not None,
                )
            )

        await self.commit(record)  # write-ahead: durable before the tool runs
        return call_id

    async def call_completed(self, call_id: str, step_id: str, tool: str, result: ToolResult, seconds: float) -> None:
        self._finished_calls.add(call_id)

        def record(tx: TaskTx) -> None:
            tx.update_tool_call(
                call_id,
                status=ToolCallStatus.COMPLETED,
                result={"text": result.text, "structured": result.structured},
                is_error=result.is_error,
                finished_at=tx.now,
            )
            tx.emit(
                ToolCallCompleted(
                    call_id=call_id,
                    step_id=step_id,
                    tool=tool,
                    is_error=result.is_error,
                    result=result.text[:PREVIEW_CHARS],
                    truncated=len(result.text) > PREVIEW_CHARS,
                    duration_ms=round(seconds * 1000, 3),
                )
            )

        self.stage(record)
        self._observe(tool, "tool_error" if result.is_error else "ok", seconds)

    async def call_failed(self, call_id: str, step_id: str, tool: str, error: ServiceError, seconds: float) -> None:
        self._finished_calls.add(call_id)

        def record(tx: TaskTx) -> None:
            tx.update_tool_call(
                call_id,
                status=ToolCallStatus.FAILED,
                result={"error": error.message, "code": error.code.value},
                finished_at=tx.now,
            )
            tx.emit(
                ToolCallFailed(
                    call_id=call_id,
                    step_id=step_id,
                    tool=tool,
                    code=error.code.value,
                    error=error.message,
                )
            )

        self.stage(record)
        self._observe(tool, error.code.value, seconds)

    async def call_refused(
        self, step_id: str, turn: int, index: int, tool: str, arguments: dict[str, Any], reason: str
    ) -> None:
        call_id = new_id("call")
        add = _unsent_call(call_id, step_id, turn, index, tool, arguments, ToolCallStatus.REFUSED, {"reason": reason})

        def record(tx: TaskTx) -> None:
            add(tx)
            tx.emit(ToolCallRefused(call_id=call_id, step_id=step_id, tool=tool, reason=reason))

        self.stage(record)
        self._observe(tool, "refused", 0.0)

    async def call_gated(
        self, step_id: str, turn: int, index: int, tool: str, arguments: dict[str, Any], check: CallCheck
    ) -> str:
        """Record a call a policy gate stopped before it was sent; the caller pauses the task (see
        ``services.jobs``), committing this record with the pause."""
        call_id = new_id("call")
        status = ToolCallStatus.AWAITING_DECISION
        self.stage(_unsent_call(call_id, step_id, turn, index, tool, arguments, status, {"gate": check.gate_record()}))
        return call_id

    async def llm_used(self, step_id: str | None, response: LLMResponse) -> None:
        u = response.usage
        model = u.model or self._model  # the model that answered (a fallback's, when the primary was out)
        event = self.meter.model_call("executor", model, u.input_tokens, u.output_tokens, step_id)
        usage = self.meter.tick()

        def record(tx: TaskTx) -> None:
            tx.update(usage=usage)
            tx.emit(event)

        self.stage(record)

    @property
    def usage(self) -> dict[str, float]:
        """What the task has spent, this run included."""
        return self.meter.usage

    def check_budget(self, before: Literal["llm", "tool"], *, calls: int = 0, step_id: str | None = None) -> None:
        """See :meth:`UsageMeter.check`."""
        self.meter.check(before, calls=calls, step_id=step_id)

    async def progress(
        self, call_id: str, step_id: str, progress: float, total: float | None, message: str | None
    ) -> None:
        if call_id in self._finished_calls:
            return  # arrived after the call's result: no longer news
        event = ToolProgress(call_id=call_id, step_id=step_id, progress=progress, total=total, message=message)
        self.stage(lambda tx: tx.emit(event))

    async def step_completed(self, step_id: str, output: str) -> None:
        self.meter.release(step_id)

        def record(tx: TaskTx) -> None:
            tx.update_step(self.plan_version, step_id, status=StepStatus.COMPLETED, output=output, finished_at=tx.now)
            tx.emit(StepCompleted(step_id=step_id, output=output))

        self.stage(record)
        self._observe_step(step_id, "completed")

    async def step_failed(self, step_id: str, error: ServiceError) -> None:
        self.meter.release(step_id)
        body = {"code": error.code.value, "message": error.message}

        def record(tx: TaskTx) -> None:
            tx.update_step(self.plan_version, step_id, status=StepStatus.FAILED, error=body, finished_at=tx.now)
            tx.emit(StepFailed(step_id=step_id, error=ErrorBody.model_validate(body)))

        await self.commit(record)
        self._observe_step(step_id, "failed")

    def call_cancelled(self, call_id: str, step_id: str, tool: str) -> None:
        self._finished_calls.add(call_id)

        def record(tx: TaskTx) -> None:
            tx.update_tool_call(
                call_id, status=ToolCallStatus.CANCELLED, result={"error": "cancelled"}, finished_at=tx.now
            )
            tx.emit(
                ToolCallFailed(
                    call_id=call_id,
                    step_id=step_id,
                    tool=tool,
                    code="cancelled",
                    error="cancelled in flight: another step of the task failed (it may have partly run)",
                )
            )

        self.stage(record)
        self._observe(tool, "cancelled", 0.0)

    def step_cancelled(self, step_id: str, reason: str) -> None:
        self.meter.release(step_id)
        body = {"code": "cancelled", "message": reason}

        def record(tx: TaskTx) -> None:
            tx.update_step(self.plan_version, step_id, status=StepStatus.CANCELLED, error=body, finished_at=tx.now)
            tx.emit(StepFailed(step_id=step_id, error=ErrorBody.model_validate(body)))

        self.stage(record)
        self._observe_step(step_id, "cancelled")

    async def prior_calls(self, step_id: str) -> list[ToolCallRecord]:
        await self.flush()  # read our own writes: calls marked in doubt at the start of this run
        calls = await self.store.tool_calls(self.lease.task_id, step_id)
        since = self._attempts.get(step_id)
        return [c for c in calls if c.plan_version == self.plan_version and (since is None or c.started_at >= since)]

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


def _unsent_call(
    call_id: str,
    step_id: str,
    turn: int,
    index: int,
    tool: str,
    arguments: dict[str, Any],
    status: ToolCallStatus,
    result: dict[str, Any],
) -> Record:
    """The record of a call that was not sent (refused, or stopped at a policy gate)."""

    def record(tx: TaskTx) -> None:
        tx.add_tool_call(
            call_id=call_id,
            step_id=step_id,
            turn=turn,
            call_index=index,
            tool_name=tool,
            arguments=arguments,
            status=status,
            result=result,
        )

    return record
