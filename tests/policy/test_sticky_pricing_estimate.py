"""Re-approval scope (sticky), the price table with dated model names, and the plan estimate."""

from __future__ import annotations

import pytest

from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.llm.base import Usage
from agent_runtime.policy import PriceTable, StepSample, cost_of, estimate_plan, is_scope_subset
from agent_runtime.policy.estimate import (
    HEURISTIC_BASE_INPUT,
    HEURISTIC_OUTPUT_PER_TURN,
    HEURISTIC_SECONDS_PER_CALL,
    HEURISTIC_SECONDS_PER_TURN,
    HEURISTIC_TOKENS_PER_TOOL,
    HEURISTIC_TOKENS_PER_TURN,
)
from agent_runtime.settings import ModelPrice, PricingSettings


def step(step_id: str, tools: list[str], instruction: str | None = None, deps: list[str] | None = None) -> PlanStep:
    return PlanStep(
        id=step_id,
        title=f"title {step_id}",
        instruction=instruction or f"do {step_id}",
        tools=tools,
        depends_on=deps or [],
    )


APPROVED = Plan(
    summary="approved",
    steps=[step("a", ["notes.read", "notes.write"]), step("b", ["notes.read"], deps=["a"]), step("c", [])],
)


# --- sticky ----------------------------------------------------------------------------------


def test_the_same_plan_or_a_narrower_one_keeps_its_scope() -> None:
    assert is_scope_subset(APPROVED, APPROVED)
    narrower = Plan(
        summary="new summary",
        steps=[PlanStep(id="a", title="renamed", instruction="do a ", tools=["notes.read"], depends_on=[])],
    )
    assert is_scope_subset(narrower, APPROVED)  # fewer steps, fewer tools, another title
    dropped_dependency_target = Plan(summary="s", steps=[step("b", ["notes.read"])])
    assert is_scope_subset(dropped_dependency_target, APPROVED)  # 'a' is gone, so b's dependency on it goes too


@pytest.mark.parametrize(
    ("steps", "why"),
    [
        ([step("a", ["notes.read", "notes.write", "notes.delete"])], "a tool added to a step"),
        ([step("b", ["notes.read", "notes.write"], deps=["a"]), step("a", ["notes.read"])], "a tool moved to a step"),
        ([step("a", ["notes.read"]), step("d", [])], "a step added"),
        ([step("a", ["notes.read"], instruction="delete everything")], "an instruction changed"),
        ([step("a", ["notes.read"]), step("b", ["notes.read"])], "a dependency dropped (b could run first)"),
    ],
)
def test_anything_that_adds_scope_needs_a_new_decision(steps: list[PlanStep], why: str) -> None:
    assert not is_scope_subset(Plan(summary="s", steps=steps), APPROVED), why


# --- pricing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "input_usd", "output_usd"),
    [
        ("gpt-4o", 2.50, 10.00),
        ("gpt-4o-2024-08-06", 2.50, 10.00),
        ("gpt-4o-mini-2024-07-18", 0.15, 0.60),  # the longest key wins over gpt-4o
        ("gpt-4.1-mini", 0.40, 1.60),
        ("openai/gpt-4.1", 2.00, 8.00),
        ("o4-mini-2025-04-16", 1.10, 4.40),
        ("gpt-5-mini", 0.25, 2.00),
        ("claude-sonnet-4-20250514", 3.00, 15.00),
        ("claude-sonnet-4-5-20250929", 3.00, 15.00),
        ("claude-3-5-haiku-latest", 0.80, 4.00),
        ("claude-opus-4-1-20250805", 15.00, 75.00),
        ("claude-haiku-4-5", 1.00, 5.00),
    ],
)
def test_shipped_prices_cover_dated_names(model: str, input_usd: float, output_usd: float) -> None:
    assert cost_of(model, 1_000_000, 0) == pytest.approx(input_usd)
    assert cost_of(model, 0, 1_000_000) == pytest.approx(output_usd)


def test_an_unknown_model_or_another_suffix_has_no_price() -> None:
    assert cost_of("my-local-llama", 1000, 1000) is None
    assert cost_of("o3-pro", 1000, 1000) is None  # not a dated o3: unknown, not o3's price
    assert cost_of("gpt-4o-audio-preview", 1000, 1000) is None


def test_configured_prices_add_models_and_replace_shipped_ones() -> None:
    table = PriceTable.from_settings(
        PricingSettings(
            models={
                "my-local-llama": ModelPrice(input_usd_per_mtok=0, output_usd_per_mtok=0),
                "gpt-4o": ModelPrice(input_usd_per_mtok=1, output_usd_per_mtok=2),
            }
        )
    )
    assert table.cost("my-local-llama", 10**6, 10**6) == 0
    assert table.cost("gpt-4o-2024-11-20", 500_000, 250_000) == pytest.approx(1.0)
    assert cost_of("gpt-4o", 500_000, 250_000, table) == pytest.approx(1.0)
    assert table.cost("gpt-4.1", 10**6, 0) == pytest.approx(2.0)  # the rest of the shipped table stays


# --- estimate --------------------------------------------------------------------------------


def test_without_history_each_step_follows_the_documented_heuristic() -> None:
    plan = Plan(summary="s", steps=[step("a", ["notes.read", "notes.write"]), step("b", [])])
    estimate = estimate_plan(
        plan, Usage(input_tokens=1000, output_tokens=200), planner_model="gpt-4.1-mini", executor_model="gpt-4.1-mini"
    )
    a, b = estimate.steps
    # a: 3 turns (two calls, then the answer), two tool schemas, a growing conversation
    per_turn = HEURISTIC_BASE_INPUT + 2 * HEURISTIC_TOKENS_PER_TOOL
    assert a.input_tokens == 3 * per_turn + HEURISTIC_TOKENS_PER_TURN * (0 + 1 + 2)
    assert a.output_tokens == 3 * HEURISTIC_OUTPUT_PER_TURN
    assert a.wall_seconds == 3 * HEURISTIC_SECONDS_PER_TURN + 2 * HEURISTIC_SECONDS_PER_CALL
    assert (a.tool_calls, a.basis) == (2, "heuristic")
    assert (b.input_tokens, b.output_tokens, b.tool_calls) == (HEURISTIC_BASE_INPUT, HEURISTIC_OUTPUT_PER_TURN, 0)
    assert estimate.basis == "heuristic"
    assert estimate.input_tokens == 1000 + a.input_tokens + b.input_tokens  # the planner's usage is included
    assert estimate.output_tokens == 200 + a.output_tokens + b.output_tokens
    assert estimate.wall_seconds == a.wall_seconds + b.wall_seconds
    assert estimate.cost_usd == pytest.approx(cost_of("gpt-4.1-mini", estimate.input_tokens, estimate.output_tokens))


def test_history_of_steps_with_the_same_tool_set_replaces_the_heuristic() -> None:
    plan = Plan(summary="s", steps=[step("a", ["notes.write", "notes.read"]), step("b", ["web.search"])])
    history = [
        StepSample(
            frozenset({"notes.read", "notes.write"}), input_tokens=1000, output_tokens=100, wall_seconds=2, tool_calls=1
        ),
        StepSample(
            frozenset({"notes.read", "notes.write"}), input_tokens=3000, output_tokens=300, wall_seconds=4, tool_calls=3
        ),
        StepSample(frozenset({"notes.read"}), input_tokens=99_999, output_tokens=99_999, wall_seconds=99, tool_calls=9),
    ]
    estimate = estimate_plan(
        plan, Usage(input_tokens=500, output_tokens=50), history, planner_model="gpt-4o", executor_model="gpt-4o-mini"
    )
    a, b = estimate.steps
    assert (a.input_tokens, a.output_tokens, a.wall_seconds, a.tool_calls, a.basis, a.samples) == (
        2000,
        200,
        3.0,
        2,
        "history",
        2,
    )
    assert b.basis == "heuristic"
    assert estimate.basis == "mixed"
    expected = cost_of("gpt-4o", 500, 50)
    executor = cost_of("gpt-4o-mini", a.input_tokens + b.input_tokens, a.output_tokens + b.output_tokens)
    assert expected is not None and executor is not None
    assert estimate.cost_usd == pytest.approx(expected + executor)
    assert estimate.as_dict()["basis"] == "mixed"


def test_the_cost_is_unknown_when_a_model_has_no_price() -> None:
    plan = Plan(summary="s", steps=[step("a", [])])
    assert estimate_plan(plan, Usage(10, 10), executor_model="my-local-llama", planner_model="gpt-4o").cost_usd is None
    assert estimate_plan(plan, Usage(10, 10), executor_model="gpt-4o", planner_model="mystery").cost_usd is None
    assert estimate_plan(plan, None, executor_model=None).cost_usd is None
    assert estimate_plan(plan, None, executor_model="gpt-4o").cost_usd is not None  # no planner usage: none needed
