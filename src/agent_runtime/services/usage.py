"""What a task spends, and whether its budget lets the next model or tool call start.

:class:`UsageMeter` keeps the task's running totals (``tasks.usage``: tokens, cost from the price
table, tool calls, execution seconds, and model calls without a price) for one run of the executor.
It starts from what the task already spent, so a resumed or retried run goes on counting, and the
journal writes its snapshot with every usage record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Literal

from agent_runtime.agents.execution import BudgetExceededError
from agent_runtime.domain.events import LLMUsage
from agent_runtime.llm.base import Usage
from agent_runtime.policy.budget import Spent, breaches
from agent_runtime.settings import Budget
from agent_runtime.store.tx import TaskTx

Pricer = Callable[[str, int, int], float | None]
"""``price(model, input_tokens, output_tokens)``: USD, or None for a model without a price."""
USAGE_KEYS = ("input_tokens", "output_tokens", "cost_usd", "tool_calls", "wall_seconds")
"""What a task spends (``tasks.usage``) and what a budget may limit (``tasks.budget``)."""
UNPRICED = "unpriced_calls"
"""Usage key: model calls that had no price. Persisted with the usage, so a resumed run still knows
that the task's ``cost_usd`` is a lower bound and a cost limit counts as reached (fail closed)."""


class UsageMeter:
    def __init__(
        self,
        usage: Mapping[str, float] | None = None,
        budget: Mapping[str, float] | None = None,
        price: Pricer | None = None,
    ) -> None:
        self.usage: dict[str, float] = {k: float((usage or {}).get(k) or 0) for k in (*USAGE_KEYS, UNPRICED)}
        """What the task has spent, this run included."""
        self.budget: dict[str, float] = dict(budget or {})
        self._limits = Budget.model_validate(self.budget) if self.budget else None
        self._price = price
        self._clock = time.monotonic()
        self._reserved: dict[str, int] = {}
        """step id -> tool calls its current turn passed the check for and has not made yet."""

    def model_call(
        self,
        role: Literal["planner", "executor"],
        model: str,
        input_tokens: int,
        output_tokens: int,
        step_id: str | None = None,
    ) -> LLMUsage:
        """Count one model call (``model``: the one that answered); its ``llm_usage`` event."""
        cost = self._price(model, input_tokens, output_tokens) if self._price is not None else None
        self.usage["input_tokens"] += input_tokens
        self.usage["output_tokens"] += output_tokens
        self.usage["cost_usd"] = round(self.usage["cost_usd"] + (cost or 0.0), 6)
        if cost is None:
            self.usage[UNPRICED] += 1
        return LLMUsage(
            role=role,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost,
            step_id=step_id,
        )

    def tool_call(self, step_id: str | None = None) -> None:
        self.usage["tool_calls"] += 1
        if step_id is not None and self._reserved.get(step_id):
            self._reserved[step_id] -= 1

    def release(self, step_id: str) -> None:
        """The step ended: the calls its last turn reserved and did not make are free again."""
        self._reserved.pop(step_id, None)

    def tick(self) -> dict[str, float]:
        """Count the time since the last tick as execution time; the usage to write."""
        now = time.monotonic()
        self.usage["wall_seconds"] = round(self.usage["wall_seconds"] + now - self._clock, 3)
        self._clock = now
        return dict(self.usage)

    def check(
        self, before: Literal["llm", "tool"], *, calls: int = 0, step_id: str | None = None, clock: bool = True
    ) -> None:
        """Raise :class:`BudgetExceededError` if the next call may not start. Tokens, cost and time
        are known only after a call, so nothing new starts once one of them reached its limit (an
        unpriced model's cost breaches a cost limit: fail closed). Tool calls are known before: the
        next ``calls`` may take the count up to the limit, not past it, counting the calls other
        steps' turns passed this check for and have not made yet; with ``step_id`` they are reserved
        for that step (its next check, or its end, frees what it did not make). ``clock``: count the
        time since the last check as execution time (not while planning)."""
        if clock:
            self.tick()
        budget = self._limits
        if budget is None:
            return
        u = self.usage
        spent = Spent(
            input_tokens=int(u["input_tokens"]),
            output_tokens=int(u["output_tokens"]),
            cost_usd=None if u[UNPRICED] else u["cost_usd"],
            tool_calls=int(u["tool_calls"]),
            wall_seconds=u["wall_seconds"],
        )
        found: list[str] = [b.limit for b in breaches(budget, spent) if b.limit != "tool_calls"]
        if before == "tool" and calls and budget.tool_calls is not None:
            others = sum(n for step, n in self._reserved.items() if step != step_id)
            if u["tool_calls"] + others + calls > budget.tool_calls:
                found.append("tool_calls")
        if found:
            raise BudgetExceededError(found[0], dict(u), dict(self.budget))
        if before == "tool" and step_id is not None:
            self._reserved[step_id] = calls


class PlannerSpend:
    """The planning job's model calls (:class:`~agent_runtime.agents.planner.PlannerMeter`): the
    task's budget is checked before each, and each is counted and written with the job's next
    transaction (its repair request, the proposal or the failure), so a planning that fails still
    counts what it spent. A crash before that transaction loses the count with the planning itself,
    which runs again."""

    def __init__(
        self,
        usage: Mapping[str, float] | None,
        budget: Mapping[str, float] | None,
        price: Pricer | None,
        model: str,
    ) -> None:
        self.meter = UsageMeter(usage, budget, price)
        self._model = model
        self._unwritten: list[LLMUsage] = []

    def before_call(self) -> None:
        self.meter.check("llm", clock=False)

    def called(self, usage: Usage) -> None:
        # ``usage.model``: the model that answered (a fallback's, when the primary was out)
        model = usage.model or self._model
        self._unwritten.append(self.meter.model_call("planner", model, usage.input_tokens, usage.output_tokens))

    def write(self, tx: TaskTx) -> None:
        """Record the calls not yet written, with the task's usage so far."""
        if not self._unwritten:
            return
        for event in self._unwritten:
            tx.emit(event)
        tx.update(usage=dict(self.meter.usage))
        self._unwritten.clear()
