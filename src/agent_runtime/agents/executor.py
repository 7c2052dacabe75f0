"""ExecutorAgent: runs an approved plan's steps with an LLM tool-calling loop each.

Steps whose dependencies are complete run concurrently, up to ``max_parallel_steps`` at once
(``1``: one at a time, in the plan's dependency order). When one step pauses the task (a call in
doubt, a call at a policy gate, the budget spent), its siblings *stop cleanly*: a tool call already
sent finishes and its result is recorded, a model call in flight is abandoned (it has no side
effects; its usage is not recorded), and no new call starts; the paused steps resume later from
their recorded calls. When one step fails, its siblings are cancelled at once: a tool call in flight
is cancelled and recorded ``cancelled`` (it may have partly run), the step is recorded
``cancelled``.

Each step sees only the tools the approved plan version lists for it; a call to anything else is
refused and recorded. Everything that happens goes to an :class:`ExecutionJournal` *before and
after* it happens, so a worker that takes over after a crash can rebuild the step's conversation
from the database and never repeats a completed call.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING

import anyio
import structlog
from anyio.abc import TaskGroup

from agent_runtime.agents import prompts
from agent_runtime.agents.execution import (
    ALLOW,
    PAUSES,
    CallCheck,
    CallGatedError,
    CallPolicy,
    ExecutionJournal,
    ExecutorLimits,
    InDoubtError,
    SpanFactory,
    StepFailedError,
    StepStopped,
    StepTools,
    StopSignal,
)
from agent_runtime.domain.plan import Plan, PlanStep, execution_order
from agent_runtime.domain.records import ToolCallRecord
from agent_runtime.domain.states import StepStatus, ToolCallStatus
from agent_runtime.errors import ServiceError, ToolNotAllowedError, ToolServerError, ToolTimeoutError
from agent_runtime.llm.base import LLMClient, Message, ToolCallRequest, ToolSpec

if TYPE_CHECKING:
    from agent_runtime.agents.failure import StepRunner, Verifier


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
        system: str | None = None,
        history: str | None = None,
    ) -> None:
        """``system``: a profile's executor prompt instead of the built-in one; ``history``: the
        summary of the session's earlier tasks, shown to every step."""
        self.system = system or prompts.EXECUTOR_SYSTEM
        self.history = history
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
        failures: StepRunner | None = None,
        verify: Verifier | None = None,
    ) -> str:
        """Run every step not yet completed (nor skipped), each once its dependencies are, under
        ``failures`` (``agents/failure.py``; none: a failure fails the task); then ``verify``, if
        given; return the final summary."""
        await self._run_steps(prompt, plan, step_status, outputs, tools, journal, failures)
        if verify is not None:
            await verify(prompt, outputs)
        journal.check_budget("llm")
        response = await self.llm.generate(
            system=prompts.SUMMARY_SYSTEM,
            messages=[Message(role="user", content=prompts.summary_request(prompt, outputs))],
            tools=[],
        )
        await journal.llm_used(None, response)
        return response.text

    async def _run_steps(
        self,
        prompt: str,
        plan: Plan,
        step_status: dict[str, StepStatus],
        outputs: dict[str, str],
        tools: StepTools,
        journal: ExecutionJournal,
        failures: StepRunner | None,
    ) -> None:
        """The scheduler: start every waiting step whose dependencies are complete (in dependency
        order, at most ``max_parallel_steps`` at once); on a pause, stop the others cleanly and
        raise the first pause once all have stopped; on a failure, cancel the others and raise it."""
        done = {s for s, st in step_status.items() if st in (StepStatus.COMPLETED, StepStatus.SKIPPED)}
        waiting = [s for s in execution_order(plan) if s.id not in done]
        if not waiting:
            return
        limit = max(1, self.limits.max_parallel_steps)
        running: set[str] = set()
        stop = StopSignal()
        pause: ServiceError | None = None
        failure: Exception | None = None
        send, receive = anyio.create_memory_object_stream[tuple[str, Exception | None]](len(waiting))

        async def one(step: PlanStep) -> None:
            resumed = step_status.get(step.id) == StepStatus.RUNNING
            deps = {d: outputs.get(d, "") for d in step.depends_on}
            error: Exception | None = None
            with (
                self._span("agent_runtime.step", step_id=step.id, resumed=resumed),
                structlog.contextvars.bound_contextvars(step_id=step.id),
            ):

                def attempt(again: bool) -> Awaitable[str]:
                    return self.run_step(prompt=prompt, plan=plan, step=step, deps=deps, tools=tools,
                                         journal=journal, resumed=again, stop=stop)  # fmt: skip

                try:
                    run = failures.run(step, attempt, resumed=resumed, stop=stop) if failures else attempt(resumed)
                    outputs[step.id] = await run
                except anyio.get_cancelled_exc_class():
                    journal.step_cancelled(step.id, "cancelled: another step of the task failed")
                    raise
                except Exception as exc:
                    error = exc
            send.send_nowait((step.id, error))

        def launch(tg: TaskGroup) -> None:
            for step in list(waiting):
                if len(running) >= limit:
                    return
                if set(step.depends_on) <= done:
                    waiting.remove(step)
                    running.add(step.id)
                    tg.start_soon(one, step, name=f"step {step.id}")

        async with send, receive, anyio.create_task_group() as tg:
            launch(tg)
            while running:
                step_id, error = await receive.receive()
                running.discard(step_id)
                if error is None:
                    done.add(step_id)
                    if not stop.requested:
                        launch(tg)
                elif isinstance(error, StepStopped):
                    continue
                elif isinstance(error, PAUSES):
                    pause = pause or error
                    stop.request()
                else:
                    failure = error
                    tg.cancel_scope.cancel()
                    break
        if failure is not None:
            raise failure
        if pause is not None:
            raise pause

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
        stop: StopSignal | None = None,
    ) -> str:
        """Run one step to its output. ``stop``: raise :class:`StepStopped` at the next safe point
        once a sibling asks (see :class:`StopSignal`)."""
        stop = stop or StopSignal()
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
        messages = [Message(role="user", content=prompts.step_request(prompt, plan, step, deps, self.history))]
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
            with stop.model_call():
                response = await self.llm.generate(
                    system=self.system, messages=messages, tools=specs, on_text_delta=on_delta
                )
            await journal.llm_used(step.id, response)
            if not response.tool_calls:
                await journal.step_completed(step.id, response.text)
                return response.text
            # The whole turn fits the budget, or none of it runs: paused here, the step resumes by
            # asking the model again, so no call of the turn is lost.
            allowed_calls = sum(1 for r in response.tool_calls if r.name in allowed)
            journal.check_budget("tool", calls=allowed_calls, step_id=step.id)
            messages.append(Message(role="assistant", content=response.text, tool_calls=response.tool_calls))
            for index, request in enumerate(response.tool_calls):
                # A sibling paused the task: the rest of this turn is asked for again on resume.
                stop.check()
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
        except anyio.get_cancelled_exc_class():
            journal.call_cancelled(call_id, step.id, request.name)
            raise
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
            check = CallCheck.from_gate_record((call.result or {}).get("gate") or {})
            raise CallGatedError(call.id, step.id, call.tool_name, call.arguments, check)
        tool = str(decision.get("tool", call.tool_name))
        arguments = decision.get("arguments", call.arguments)
        made = ToolCallRequest(id=request.id, name=tool, arguments=dict(arguments))
        message = await self._call(step, turn, call.call_index, made, set(step.tools), tools, journal, retry_of=call.id)
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
