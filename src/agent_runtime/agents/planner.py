"""PlannerAgent: request + tool catalogue → a validated plan, with one repair attempt."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from agent_runtime.agents import prompts
from agent_runtime.domain.plan import Plan, check_plan
from agent_runtime.errors import PlanInvalidError
from agent_runtime.llm.base import LLMClient, Message, ToolSpec, Usage

InvalidHandler = Callable[[list[str]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    plan: Plan
    author: str
    attempts: int
    usage: Usage
    """Every model call's tokens together (each call is counted through the ``meter``)."""


class PlannerMeter(Protocol):
    """What the planning job counts of the planner's model calls (``services.usage.PlannerSpend``)."""

    def before_call(self) -> None:
        """Raise (a spent budget) to stop before the next model call."""

    def called(self, usage: Usage) -> None:
        """One model call was answered (and billed), whatever becomes of its plan."""


class PlannerAgent:
    def __init__(self, llm: LLMClient, *, max_steps: int, system: str | None = None) -> None:
        """``system``: a profile's planner prompt instead of the built-in one."""
        self.llm = llm
        self.max_steps = max_steps
        self.system = system

    @property
    def author(self) -> str:
        return f"planner:{self.llm.provider}/{self.llm.model}"

    def _author(self, usage: Usage) -> str:
        """The model that answered (a fallback's, when the primary was out)."""
        return f"planner:{usage.provider or self.llm.provider}/{usage.model or self.llm.model}"

    async def plan(
        self,
        prompt: str,
        tools: list[ToolSpec],
        *,
        feedback: str | None = None,
        previous: Plan | None = None,
        on_invalid: InvalidHandler | None = None,
        check: Callable[[Plan], list[str]] | None = None,
        request: str | None = None,
        complete: Callable[[Plan], Plan] | None = None,
        history: str | None = None,
        meter: PlannerMeter | None = None,
    ) -> PlanOutcome:
        """Ask the model for a plan; if it is invalid (or ``check``, the approval policy, names
        problems), show it the problems once; then give up. ``request``: the user message to send
        instead of the usual one; ``complete``: turns the model's answer into the plan to check and
        keep (a replan adds the completed steps, see ``agents/replan.py``). ``history``: the summary
        of the session's earlier tasks, shown before the usual request. ``meter``: checks the budget
        before each model call and counts each one."""
        system = prompts.planner_system(self.system, self.max_steps)
        request = request or prompts.planner_request(prompt, tools, feedback, previous, history)
        messages = [Message(role="user", content=request)]
        known = {t.name for t in tools}
        calls: list[Usage] = []
        for attempt in (1, 2):
            if meter is not None:
                meter.before_call()
            plan, usage = await self.llm.generate_structured(
                system=system, messages=messages, schema=Plan, tools_hint=tools
            )
            calls.append(usage)
            if meter is not None:
                meter.called(usage)
            answer, plan = plan, complete(plan) if complete is not None else plan
            problems = check_plan(plan, known_tools=known, max_steps=self.max_steps)
            if not problems and check is not None:
                problems = check(plan)
            if not problems:
                total = Usage(sum(u.input_tokens for u in calls), sum(u.output_tokens for u in calls))
                return PlanOutcome(plan, self._author(usage), attempt, total)
            if on_invalid is not None:
                await on_invalid(problems)
            if attempt == 2:
                raise PlanInvalidError(
                    "the planner produced an invalid plan twice: " + "; ".join(problems), problems=problems
                )
            messages += [
                Message(role="assistant", content=answer.model_dump_json()),
                Message(role="user", content=prompts.repair_request(problems)),
            ]
        raise AssertionError("unreachable")
