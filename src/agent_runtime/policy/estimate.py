"""An estimate of what a plan will spend, made when it is proposed (tokens, USD, wall time).

Per step, from history when there is some: the mean of finished steps that offered the same tool
set (the caller reads those from the store and passes them in as :class:`StepSample`). Otherwise a
heuristic, the same for every deployment and deliberately simple (calibrate it by comparing
estimates with actuals on the benchmark workloads):

* a step takes ``1 + len(tools)`` model turns (one call per tool, then the answer) and makes
  ``len(tools)`` tool calls;
* every turn sends ``HEURISTIC_BASE_INPUT`` tokens (system prompt, task, instruction), plus
  ``HEURISTIC_TOKENS_PER_TOOL`` per tool offered (its schema), plus ``HEURISTIC_TOKENS_PER_TURN``
  for each earlier turn of the step (the conversation grows), and gets ``HEURISTIC_OUTPUT_PER_TURN``
  tokens back;
* a turn takes ``HEURISTIC_SECONDS_PER_TURN`` and a tool call ``HEURISTIC_SECONDS_PER_CALL``.

Steps run one after another, so the wall time is the sum over steps. The planner's usage so far is
added to the tokens and the cost. The cost is ``None`` when a model involved has no price.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Literal, Protocol

from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.domain.records import StepUsage
from agent_runtime.policy.pricing import PriceTable

HEURISTIC_BASE_INPUT = 1_500
HEURISTIC_TOKENS_PER_TOOL = 250
HEURISTIC_TOKENS_PER_TURN = 400
HEURISTIC_OUTPUT_PER_TURN = 300
HEURISTIC_SECONDS_PER_TURN = 3.0
HEURISTIC_SECONDS_PER_CALL = 1.0

Basis = Literal["history", "heuristic", "mixed", "none"]


class TokenCounts(Protocol):
    """Anything with token counts (``llm.base.Usage`` is one)."""

    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...


StepSample = StepUsage
"""What one finished step spent, from history (the store reads it: ``TaskStore.step_history``)."""


@dataclass(frozen=True, slots=True)
class StepEstimate:
    step_id: str
    input_tokens: int
    output_tokens: int
    wall_seconds: float
    tool_calls: int
    basis: Literal["history", "heuristic"]
    samples: int = 0
    """How many finished steps the history part averaged."""


@dataclass(frozen=True, slots=True)
class Estimate:
    """The whole plan: planner usage so far plus every step's estimate."""

    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    wall_seconds: float
    tool_calls: int
    basis: Basis
    """``history`` (every step), ``heuristic`` (every step), ``mixed``, or ``none`` (no steps)."""
    steps: tuple[StepEstimate, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary (for events and views)."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
            "wall_seconds": round(self.wall_seconds, 3),
            "tool_calls": self.tool_calls,
            "basis": self.basis,
        }


def heuristic_step(step: PlanStep) -> StepEstimate:
    """The documented heuristic for one step with no history."""
    tools = len(set(step.tools))
    turns = 1 + tools
    per_turn = HEURISTIC_BASE_INPUT + HEURISTIC_TOKENS_PER_TOOL * tools
    input_tokens = sum(per_turn + HEURISTIC_TOKENS_PER_TURN * turn for turn in range(turns))
    return StepEstimate(
        step_id=step.id,
        input_tokens=input_tokens,
        output_tokens=HEURISTIC_OUTPUT_PER_TURN * turns,
        wall_seconds=HEURISTIC_SECONDS_PER_TURN * turns + HEURISTIC_SECONDS_PER_CALL * tools,
        tool_calls=tools,
        basis="heuristic",
    )


def _from_history(step: PlanStep, similar: Sequence[StepSample]) -> StepEstimate:
    return StepEstimate(
        step_id=step.id,
        input_tokens=round(fmean(s.input_tokens for s in similar)),
        output_tokens=round(fmean(s.output_tokens for s in similar)),
        wall_seconds=fmean(s.wall_seconds for s in similar),
        tool_calls=round(fmean(s.tool_calls for s in similar)),
        basis="history",
        samples=len(similar),
    )


def estimate_plan(
    plan: Plan,
    planner_usage: TokenCounts | None = None,
    history: Sequence[StepSample] = (),
    *,
    planner_model: str | None = None,
    executor_model: str | None = None,
    prices: PriceTable | None = None,
) -> Estimate:
    """Estimate ``plan``'s spend. ``history``: finished steps of earlier tasks; a step's estimate
    averages those that offered exactly its tool set. Without a model name the cost is ``None``."""
    by_tools: dict[frozenset[str], list[StepSample]] = {}
    for sample in history:
        by_tools.setdefault(frozenset(sample.tools), []).append(sample)
    steps = tuple(
        _from_history(step, similar) if (similar := by_tools.get(frozenset(step.tools))) else heuristic_step(step)
        for step in plan.steps
    )
    planner_in = planner_usage.input_tokens if planner_usage is not None else 0
    planner_out = planner_usage.output_tokens if planner_usage is not None else 0
    exec_in = sum(s.input_tokens for s in steps)
    exec_out = sum(s.output_tokens for s in steps)
    table = prices or PriceTable()
    cost: float | None = None
    planner_cost = table.cost(planner_model, planner_in, planner_out) if planner_model else None
    executor_cost = table.cost(executor_model, exec_in, exec_out) if executor_model else None
    if executor_cost is not None and (planner_cost is not None or planner_in + planner_out == 0):
        cost = executor_cost + (planner_cost or 0.0)
    bases = {s.basis for s in steps}
    basis: Basis = "none" if not bases else bases.pop() if len(bases) == 1 else "mixed"
    return Estimate(
        input_tokens=planner_in + exec_in,
        output_tokens=planner_out + exec_out,
        cost_usd=cost,
        wall_seconds=sum(s.wall_seconds for s in steps),
        tool_calls=sum(s.tool_calls for s in steps),
        basis=basis,
        steps=steps,
    )
