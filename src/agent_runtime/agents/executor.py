"""ExecutorAgent: runs an approved plan step by step with an LLM tool-calling loop.

Each step sees only the tools the approved plan version lists for it; a call to anything else is
refused and recorded. Everything that happens goes to an :class:`ExecutionJournal` *before and
after* it happens, so a worker that takes over after a crash can rebuild the step's conversation
from the database and never repeats a completed call.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import structlog

from agent_runtime.agents import prompts
from agent_runtime.domain.plan import Plan, PlanStep, execution_order
from agent_runtime.domain.records import ToolCallRecord
from agent_runtime.domain.states import StepStatus, ToolCallStatus
from agent_runtime.errors import ErrorCode, ServiceError, ToolNotAllowedError, ToolServerError, ToolTimeoutError
from agent_runtime.llm.base import LLMClient, LLMResponse, Message, ToolCallRequest, ToolSpec
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
    async def prior_calls(self, step_id: str) -> list[ToolCallRecord]: ...
    async def llm_used(self, step_id: str | None, response: LLMResponse) -> None:
        """Record one model call's usage (tokens, cost) against the task's budget."""

    def check_budget(self, before: Literal["llm", "tool"], *, calls: int = 0) -> None:
        """Raise :class:`BudgetExceededError` if the next model call, or the next ``calls`` tool
        calls, would overrun the budget."""


@dataclass(frozen=True, slots=True)
class CallCheck:
    """The approval policy's answer for one tool call, asked before it is sent."""

    action: Literal["allow", "deny", "gate"]
    rule: str | None = None
    reason: str | None = None
    roles: tuple[str, ...] = ()
    expire_after_seconds: float | None = None
    on_expiry: Literal["reject", "cancel"] = "reject"


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


class ExecutorAgent:
    def __init__(
        self,
        llm: LLMClient,
        *,
        specs: Callable[[list[str]], list[ToolSpec]],
        safe_to_repeat: Callable[[str], bool],
        limits: ExecutorLimits,
        span: SpanFactory | None = None,
        check_call: CallPolicy | None = None,
    ) -> None:
        self.llm = llm
        self._specs = specs
        self._safe = safe_to_repeat
        self._check: CallPolicy = check_call or (lambda _tool, _args: ALLOW)
        self.limits = limits
        self._span: SpanFactory = span or (lambda _name, **_attrs: nullcontext())

    async def run(
        self,
        *,
        prompt: str,
        plan: Plan,
        step_status: dict[str, StepStatus],
        outputs: dict[str, str],
        tools: StepTools,
        journal: ExecutionJournal,
    ) -> str:
        """Run every step not yet completed, in dependency order; return the final summary."""
        for step in execution_order(plan):
            if step_status.get(step.id) == StepStatus.COMPLETED:
                continue
            resumed = step_status.get(step.id) == StepStatus.RUNNING
            deps = {d: outputs.get(d, "") for d in step.depends_on}
            with (
                self._span("agent_runtime.step", step_id=step.id, resumed=resumed),
                structlog.contextvars.bound_contextvars(step_id=step.id),
            ):
                outputs[step.id] = await self.run_step(
                    prompt=prompt, plan=plan, step=step, deps=deps, tools=tools, journal=journal, resumed=resumed
                )
        journal.check_budget("llm")
        response = await self.llm.generate(
            system=prompts.SUMMARY_SYSTEM,
            messages=[Message(role="user", content=prompts.summary_request(prompt, outputs))],
            tools=[],
        )
        await journal.llm_used(None, response)
        return response.text

    async def run_step(
        self,
        *,
        prompt: str,
        plan: Plan,
        step: PlanStep,
        deps: dict[str, str],
        tools: StepTools,
        journal: ExecutionJournal,
        resumed: bool,
    ) -> str:
        await journal.step_started(step.id, resumed=resumed)
        tools.new_step()
        failed = {s: err for s, err in tools.failed_servers().items() if any(t.startswith(s + ".") for t in step.tools)}
        if failed:
            error = ToolServerError(
                "; ".join(f"tool server {s!r} failed to start: {err}" for s, err in failed.items()),
                details={"servers": sorted(failed), "step_id": step.id},
            )
            await journal.step_failed(step.id, error)
            raise error
        messages = [Message(role="user", content=prompts.step_request(prompt, plan, step, deps))]
        turn, calls_made = 0, 0
        if resumed:
            turn, calls_made = await self._replay(step, messages, tools, journal)
        specs = self._specs(step.tools)
        allowed = set(step.tools)

        async def on_delta(text: str) -> None:
            await journal.text_delta(step.id, text)

        while True:
            turn += 1
            if turn > self.limits.max_turns:
                return await self._fail(
                    step, journal, f"step {step.id} did not finish within {self.limits.max_turns} turns"
                )
            journal.check_budget("llm")
            response = await self.llm.generate(
                system=prompts.EXECUTOR_SYSTEM, messages=messages, tools=specs, on_text_delta=on_delta
            )
            await journal.llm_used(step.id, response)
            if not response.tool_calls:
                await journal.step_completed(step.id, response.text)
                return response.text
            # The whole turn fits the budget, or none of it runs: paused here, the step resumes by
            # asking the model again, so no call of the turn is lost.
            journal.check_budget("tool", calls=sum(1 for r in response.tool_calls if r.name in allowed))
            messages.append(Message(role="assistant", content=response.text, tool_calls=response.tool_calls))
            for index, request in enumerate(response.tool_calls):
                if request.name in allowed:
                    calls_made += 1
                    if calls_made > self.limits.max_tool_calls:
                        return await self._fail(
                            step, journal, f"step {step.id} exceeded {self.limits.max_tool_calls} tool calls"
                        )
                messages.append(await self._call(step, turn, index, request, allowed, tools, journal))

    async def _call(
        self,
        step: PlanStep,
        turn: int,
        index: int,
        request: ToolCallRequest,
        allowed: set[str],
        tools: StepTools,
        journal: ExecutionJournal,
        retry_of: str | None = None,
    ) -> Message:
        """Make one call. ``retry_of``: the recorded call this one settles (an in-doubt retry, or a
        gated call as an approver decided it): the policy already judged it."""
        if request.name not in allowed:
            reason = f"tool {request.name!r} is not allowed in step {step.id}; allowed: {sorted(allowed)}"
            await journal.call_refused(step.id, turn, index, request.name, request.arguments, reason)
            return Message(role="tool", content=reason, tool_call_id=request.id, tool_name=request.name, is_error=True)
        if retry_of is None:
            check = self._check(request.name, request.arguments)
            if check.action == "deny":
                reason = f"refused by approval policy rule {check.rule!r}: {check.reason or 'denied'}"
                await journal.call_refused(step.id, turn, index, request.name, request.arguments, reason)
                return Message(
                    role="tool", content=reason, tool_call_id=request.id, tool_name=request.name, is_error=True
                )
            if check.action == "gate":
                call_id = await journal.call_gated(step.id, turn, index, request.name, request.arguments, check)
                raise CallGatedError(call_id, step.id, request.name, request.arguments, check)
        call_id = await journal.call_started(step.id, turn, index, request.name, request.arguments, retry_of=retry_of)

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            await journal.progress(call_id, step.id, progress, total, message)

        started = time.perf_counter()
        try:
            with self._span("agent_runtime.tool_call", tool=request.name, step_id=step.id, call_id=call_id):
                result = await tools.call(request.name, request.arguments, on_progress=on_progress)
        except (ToolServerError, ToolTimeoutError, ToolNotAllowedError) as exc:
            await journal.call_failed(call_id, step.id, request.name, exc, time.perf_counter() - started)
            if exc.details.get("restart_budget_exhausted"):
                # The server keeps crashing: the step fails rather than letting the model work around it.
                await journal.step_failed(step.id, exc)
                raise
            return Message(
                role="tool",
                content=f"error: {exc.message}",
                tool_call_id=request.id,
                tool_name=request.name,
                is_error=True,
            )
        await journal.call_completed(call_id, step.id, request.name, result, time.perf_counter() - started)
        return Message(
            role="tool", content=result.text, tool_call_id=request.id, tool_name=request.name, is_error=result.is_error
        )

    async def _replay(
        self, step: PlanStep, messages: list[Message], tools: StepTools, journal: ExecutionJournal
    ) -> tuple[int, int]:
        """Rebuild a resumed step's conversation from its recorded calls; settle in-doubt calls."""
        prior = await journal.prior_calls(step.id)
        by_turn: dict[int, list[ToolCallRecord]] = {}
        for call in prior:
            by_turn.setdefault(call.turn, []).append(call)
        last_turn = 0
        for turn, calls in sorted(by_turn.items()):
            last_turn = turn
            requests = tuple(ToolCallRequest(id=c.id, name=c.tool_name, arguments=c.arguments) for c in calls)
            messages.append(Message(role="assistant", tool_calls=requests))
            for call, request in zip(calls, requests, strict=True):
                if call.status == ToolCallStatus.AWAITING_DECISION:
                    messages.append(await self._decided(step, turn, call, request, tools, journal))
                elif call.status == ToolCallStatus.IN_DOUBT:
                    retry = bool(call.result and call.result.get("operator_retry"))
                    if not (retry or self._safe(call.tool_name)):
                        raise InDoubtError(call)
                    messages.append(
                        await self._call(
                            step, turn, call.call_index, request, set(step.tools), tools, journal, retry_of=call.id
                        )
                    )
                else:
                    messages.append(_recorded_result(call, request))
        made = sum(1 for c in prior if c.status != ToolCallStatus.REFUSED)
        return last_turn, made

    async def _decided(
        self,
        step: PlanStep,
        turn: int,
        call: ToolCallRecord,
        request: ToolCallRequest,
        tools: StepTools,
        journal: ExecutionJournal,
    ) -> Message:
        """A gated call: make it as an approver decided (approved, or edited into ``tool`` with
        ``arguments``), or, with no decision yet, pause again. A denial is recorded as refused."""
        decision = (call.result or {}).get("decision")
        if not isinstance(decision, dict):
            gate = (call.result or {}).get("gate") or {}
            check = CallCheck("gate", rule=gate.get("rule"), roles=tuple(gate.get("roles") or ()))
            raise CallGatedError(call.id, step.id, call.tool_name, call.arguments, check)
        tool = str(decision.get("tool", call.tool_name))
        arguments = decision.get("arguments", call.arguments)
        made = ToolCallRequest(id=request.id, name=tool, arguments=dict(arguments))
        message = await self._call(
            step, turn, call.call_index, made, set(step.tools), tools, journal, retry_of=call.id
        )
        if decision.get("decision") == "edit":
            note = f"[an approver changed this call to {tool} with arguments {arguments}] "
            message = Message(
                role="tool",
                content=note + (message.content or ""),
                tool_call_id=request.id,
                tool_name=request.name,
                is_error=message.is_error,
            )
        return message

    async def _fail(self, step: PlanStep, journal: ExecutionJournal, message: str) -> str:
        error = StepFailedError(message, details={"step_id": step.id})
        await journal.step_failed(step.id, error)
        raise error


def _recorded_result(call: ToolCallRecord, request: ToolCallRequest) -> Message:
    result = call.result or {}
    if call.status == ToolCallStatus.REFUSED:
        text = str(result.get("reason", "refused"))
    elif call.status in (ToolCallStatus.FAILED, ToolCallStatus.CANCELLED):
        text = "error: " + str(result.get("error", call.status.value))
    else:
        text = str(result.get("text", ""))
    is_error = call.is_error or call.status != ToolCallStatus.COMPLETED and call.status != ToolCallStatus.SKIPPED
    return Message(role="tool", content=text, tool_call_id=request.id, tool_name=call.tool_name, is_error=is_error)
