"""A task's spend against its budget: limits reached at (not after) the limit, unknown cost fails closed."""

from __future__ import annotations

from agent_runtime.policy import Breach, Spent, breaches, effective_budget
from agent_runtime.settings import Budget


def test_no_limit_means_no_breach() -> None:
    assert breaches(Budget(), Spent(input_tokens=10**9, cost_usd=None, tool_calls=10**6)) == ()


def test_a_limit_is_reached_at_the_limit_so_the_next_call_waits() -> None:
    budget = Budget(tool_calls=5, input_tokens=1000, wall_seconds=60)
    assert breaches(budget, Spent(tool_calls=4, input_tokens=999, wall_seconds=59.9)) == ()
    assert breaches(budget, Spent(tool_calls=5, input_tokens=1200, wall_seconds=10)) == (
        Breach("input_tokens", 1000, 1200),
        Breach("tool_calls", 5, 5),
    )


def test_an_unknown_or_non_finite_cost_breaches_a_cost_limit() -> None:
    budget = Budget(cost_usd=2)
    assert breaches(budget, Spent(cost_usd=1.99)) == ()
    unknown = breaches(budget, Spent(cost_usd=None))
    assert unknown == (Breach("cost_usd", 2, None),)
    assert unknown[0].describe() == "cost_usd: spent an unknown amount (a model without a price) of 2"
    assert [b.limit for b in breaches(budget, Spent(cost_usd=float("nan")))] == ["cost_usd"]
    assert breaches(Budget(), Spent(cost_usd=None)) == ()  # no cost limit: an unknown cost is fine


def test_a_rule_budget_replaces_only_the_limits_it_names() -> None:
    defaults = Budget(cost_usd=5, tool_calls=100)
    assert effective_budget(defaults, None) == defaults
    assert effective_budget(defaults, Budget(cost_usd=20)) == Budget(cost_usd=20, tool_calls=100)
    assert breaches(effective_budget(defaults, Budget(cost_usd=20)), Spent(cost_usd=6)) == ()
