"""Checking what a task has spent against its budget (``Budget``: ``budgets:`` in config.yaml,
with a policy rule's ``budget`` replacing the limits it names).

A limit is reached when the spend is *at or above* it (a non-finite spend too), so a caller that
checks before each model or tool call pauses the task at the limit instead of running past it. An
unknown cost (a model without a price) counts as a breach of a ``cost_usd`` limit: the budget
fails closed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from agent_runtime.settings import Budget

Limit = Literal["input_tokens", "output_tokens", "cost_usd", "tool_calls", "wall_seconds"]
LIMITS: tuple[Limit, ...] = ("input_tokens", "output_tokens", "cost_usd", "tool_calls", "wall_seconds")


@dataclass(frozen=True, slots=True)
class Spent:
    """What a task has used so far. ``cost_usd`` is ``None`` when some of it could not be priced."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    tool_calls: int = 0
    wall_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Breach:
    """One limit reached: which, the limit, and what was spent (``None``: an unknown cost)."""

    limit: Limit
    allowed: float
    spent: float | None

    def describe(self) -> str:
        spent = "an unknown amount (a model without a price)" if self.spent is None else f"{self.spent:g}"
        return f"{self.limit}: spent {spent} of {self.allowed:g}"


def effective_budget(defaults: Budget, override: Budget | None) -> Budget:
    """The budget of a task: the configured defaults with the deciding rule's limits on top."""
    return defaults.merged(override)


def breaches(budget: Budget, spent: Spent) -> tuple[Breach, ...]:
    """Every limit of ``budget`` that ``spent`` has reached (empty: the task may go on)."""
    found: list[Breach] = []
    for limit in LIMITS:
        allowed = getattr(budget, limit)
        if allowed is None:
            continue
        used: float | None = getattr(spent, limit)
        if used is None or not math.isfinite(used) or used >= allowed:
            found.append(Breach(limit=limit, allowed=allowed, spent=used))
    return tuple(found)
