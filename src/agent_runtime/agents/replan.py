"""Replanning: after a step failed with ``on_failure: replan``, a new plan version of the steps not
yet completed.

The planner sees the request, the completed steps with their outputs, the failed steps' errors and
the steps not yet done, and writes only the steps still needed. The new version is the completed
steps *exactly as they were* (same ids, same definitions; their outputs are carried over, so they
do not run again) followed by the planner's new steps, checked like any plan (ids unique, tools
known, ``depends_on`` acyclic; a new step may depend on a completed one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from agent_runtime.agents import prompts
from agent_runtime.agents.planner import InvalidHandler, PlannerAgent, PlannerMeter, PlanOutcome
from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.llm.base import ToolSpec


@dataclass(frozen=True, slots=True)
class ReplanContext:
    previous: Plan
    """The version that ran (the approved one)."""
    outputs: dict[str, str]
    """Completed step id -> its output."""
    failed: dict[str, str] = field(default_factory=dict)
    """Failed (or cancelled) step id -> its error message."""

    def kept(self) -> list[PlanStep]:
        return [s for s in self.previous.steps if s.id in self.outputs]

    def remaining(self) -> list[PlanStep]:
        return [s for s in self.previous.steps if s.id not in self.outputs]

    def merge(self, answer: Plan) -> Plan:
        """The completed steps as they were, then the planner's steps (a completed step the model
        repeated unchanged is dropped; a changed one keeps its id and fails the checks as a duplicate)."""
        kept = self.kept()
        unchanged = {s.id: s for s in kept}
        new = [s for s in answer.steps if unchanged.get(s.id) != s]
        return Plan(
            summary=answer.summary,
            steps=[*kept, *new],
            on_failure=answer.on_failure or self.previous.on_failure,
            verify=answer.verify if answer.verify is not None else self.previous.verify,
        )


async def replan(
    planner: PlannerAgent,
    prompt: str,
    tools: list[ToolSpec],
    context: ReplanContext,
    *,
    version: int,
    feedback: str | None = None,
    on_invalid: InvalidHandler | None = None,
    check: Callable[[Plan], list[str]] | None = None,
    meter: PlannerMeter | None = None,
) -> PlanOutcome:
    """Ask ``planner`` for the remaining steps of plan ``version`` (new ids start ``v<version>-``)."""
    completed = {s.id: (s, context.outputs[s.id]) for s in context.kept()}
    request = prompts.replan_request(
        prompt, tools, completed, context.failed, context.remaining(), f"v{version}-", feedback
    )
    return await planner.plan(
        prompt, tools, on_invalid=on_invalid, check=check, request=request, complete=context.merge, meter=meter
    )
