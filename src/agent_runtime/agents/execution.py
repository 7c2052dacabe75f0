"""What the executor runs against and how a step stops: the tool and journal interfaces, the
policy's answer for a call, and the errors that pause the task or fail a step.

The services implement :class:`StepTools` (the task's MCP servers, allow-listed) and
:class:`ExecutionJournal` (``services.journal.StoreJournal``); the executor (``agents.executor``)
only sees these interfaces.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import anyio

from agent_runtime.domain.records import ToolCallRecord
from agent_runtime.errors import ErrorCode, ServiceError
from agent_runtime.llm.base import LLMResponse
from agent_runtime.tools.base import ToolResult

ProgressHandler = Callable[[float, float | None, str | None], Awaitable[None]]
SpanFactory = Callable[..., AbstractContextManager[object]]
"""``span(name, **attributes)``: tracing hook (a no-op context manager when tracing is off)."""


class StepTools(Protocol):
    """The task's tool servers (see ``tools.pool.TaskTools``)."""

    async def call(
        self,
        qualified_name: str,
        arguments: dict[str, Any],
        *,
        on_progress: ProgressHandler | None = None,
    ) -> ToolResult:
        """Each server's own call timeout applies (its registry entry, else ``tools.call_timeout_seconds``)."""

    def failed_servers(self) -> dict[str, str]: ...

    def new_step(self) -> None:
        """Reset per-step budgets (crashed-server restarts)."""


class ExecutionJournal(Protocol):
    """Durable record of execution, written under the task's lease."""

    async def step_started(self, step_id: str, *, resumed: bool) -> None: ...
    async def text_delta(self, step_id: str, text: str) -> None: ...
    async def call_started(
        self, step_id: str, turn: int, index: int, tool: str, arguments: dict[str, Any], *, retry_of: str | None
    ) -> str: ...
    async def call_completed(
        self, call_id: str, step_id: str, tool: str, result: ToolResult, seconds: float
    ) -> None: ...
    async def call_failed(self, call_id: str, step_id: str, tool: str, error: ServiceError, seconds: float) -> None: ...
    async def call_refused(
        self, step_id: str, turn: int, index: int, tool: str, arguments: dict[str, Any], reason: str
    ) -> None: ...
    async def progress(
        self, call_id: str, step_id: str, progress: float, total: float | None, message: str | None
    ) -> None: ...
    async def call_gated(
        self, step_id: str, turn: int, index: int, tool: str, arguments: dict[str, Any], check: CallCheck
    ) -> str: ...
    async def step_completed(self, step_id: str, output: str) -> None: ...
    async def step_failed(self, step_id: str, error: ServiceError) -> None: ...
    def call_cancelled(self, call_id: str, step_id: str, tool: str) -> None:
        """A call in flight was cancelled (a sibling step failed): recorded with the next commit."""

    def step_cancelled(self, step_id: str, reason: str) -> None:
        """A running step was cancelled (a sibling step failed): recorded with the next commit."""

    async def prior_calls(self, step_id: str) -> list[ToolCallRecord]: ...
    async def llm_used(self, step_id: str | None, response: LLMResponse) -> None:
        """Record one model call's usage (tokens, cost) against the task's budget."""

    def check_budget(self, before: Literal["llm", "tool"], *, calls: int = 0, step_id: str | None = None) -> None:
        """Raise :class:`BudgetExceededError` if the next model call, or the next ``calls`` tool
        calls, would overrun the budget. ``step_id``: the calls are reserved for that step until
        it makes them (parallel steps cannot pass the limit together)."""


@dataclass(frozen=True, slots=True)
class CallCheck:
    """The approval policy's answer for one tool call, asked before it is sent."""

    action: Literal["allow", "deny", "gate"]
    rule: str | None = None
    reason: str | None = None
    roles: tuple[str, ...] = ()
    expire_after_seconds: float | None = None
    on_expiry: Literal["reject", "cancel"] = "reject"

    def gate_record(self) -> dict[str, Any]:
        """What a gated call's record keeps of this check, so that the gate can be opened again
        as it was (a parallel step's call waits while a sibling's gate is decided)."""
        return {"rule": self.rule, "roles": list(self.roles), "expire_after_seconds": self.expire_after_seconds,
                "on_expiry": self.on_expiry}  # fmt: skip

    @classmethod
    def from_gate_record(cls, gate: dict[str, Any]) -> CallCheck:
        seconds = gate.get("expire_after_seconds")
        on_expiry: Literal["reject", "cancel"] = "cancel" if gate.get("on_expiry") == "cancel" else "reject"
        return cls(
            "gate",
            rule=gate.get("rule"),
            roles=tuple(gate.get("roles") or ()),
            expire_after_seconds=float(seconds) if seconds is not None else None,
            on_expiry=on_expiry,
        )


ALLOW = CallCheck("allow")
CallPolicy = Callable[[str, dict[str, Any]], CallCheck]
"""``check(tool, arguments)``: never raises (an error inside the policy is a ``deny``)."""


class CallGatedError(ServiceError):
    """A policy gate stopped a tool call before it was sent: the task pauses for a decision."""

    def __init__(self, call_id: str, step_id: str, tool: str, arguments: dict[str, Any], check: CallCheck) -> None:
        super().__init__(
            f"tool call {call_id} to {tool} waits for approval (policy rule {check.rule})",
            details={"tool_call_id": call_id, "tool": tool, "step_id": step_id, "rule": check.rule},
        )
        self.call_id = call_id
        self.step_id = step_id
        self.tool = tool
        self.arguments = arguments
        self.check = check


class BudgetExceededError(ServiceError):
    """The task's budget would be overrun by the next model or tool call: it pauses."""

    def __init__(self, limit: str, spent: dict[str, float], budget: dict[str, float]) -> None:
        super().__init__(
            f"the task's {limit} budget is spent ({spent.get(limit)} of {budget.get(limit)})",
            details={"limit": limit, "spent": spent, "budget": budget},
        )
        self.limit = limit
        self.spent = spent
        self.budget = budget


class InDoubtError(ServiceError):
    """A call that may have had side effects has no recorded result; an operator must decide."""

    def __init__(self, call: ToolCallRecord) -> None:
        super().__init__(
            f"tool call {call.id} to {call.tool_name} was in flight when its worker died and the tool "
            "is not declared safe to repeat",
            details={"tool_call_id": call.id, "tool": call.tool_name, "step_id": call.step_id},
        )
        self.call = call


class StepFailedError(ServiceError):
    """A step ran out of turns or tool calls."""

    code = ErrorCode.STEP_LIMIT_EXCEEDED


@dataclass(frozen=True, slots=True)
class ExecutorLimits:
    max_turns: int
    max_tool_calls: int
    max_parallel_steps: int = 1
    """Steps run at once (those whose dependencies are complete); 1: one after another."""


PAUSES = (InDoubtError, CallGatedError, BudgetExceededError)
"""Errors that pause the task (for a person) rather than fail it."""


class StepStopped(Exception):
    """A step stopped at a safe point because a sibling paused the task (internal)."""


@dataclass
class StopSignal:
    """Asks running steps to stop at their next safe point: before a model call, before a tool
    call. A model call in flight is abandoned (cancelled), as is a retry's backoff (the wait is
    recorded: it goes on when the task resumes); a tool call in flight finishes."""

    requested: bool = False
    _model_calls: set[anyio.CancelScope] = field(default_factory=set)

    def request(self) -> None:
        self.requested = True
        for scope in self._model_calls:
            scope.cancel()

    def check(self) -> None:
        if self.requested:
            raise StepStopped

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a retry's backoff), or raise :class:`StepStopped` once a stop is requested."""
        with self.model_call():
            await anyio.sleep(seconds)

    @contextmanager
    def model_call(self) -> Iterator[None]:
        """Around a model call (or a wait): abandoned (as :class:`StepStopped`) when a stop is requested."""
        self.check()
        with anyio.CancelScope() as scope:
            self._model_calls.add(scope)
            try:
                yield
            finally:
                self._model_calls.discard(scope)
        if scope.cancelled_caught:
            raise StepStopped
