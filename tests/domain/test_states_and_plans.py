"""The state table and plan checks are pure functions."""

from __future__ import annotations

import pytest

from agent_runtime.domain.plan import Plan, PlanStep, check_plan, execution_order
from agent_runtime.domain.states import TERMINAL, TRANSITIONS, TaskStatus, can_transition, check_transition
from agent_runtime.errors import InvalidStateError


def test_terminal_states_allow_nothing_but_a_retry_and_every_other_state_can_be_cancelled() -> None:
    for status in TaskStatus:
        if status == TaskStatus.FAILED:
            assert TRANSITIONS[status] == frozenset({TaskStatus.APPROVED})  # POST …/retry
        elif status in TERMINAL:
            assert TRANSITIONS[status] == frozenset()
        else:
            assert can_transition(status, TaskStatus.CANCELLED), status


def test_an_illegal_transition_names_the_current_state() -> None:
    with pytest.raises(InvalidStateError) as info:
        check_transition(TaskStatus.QUEUED, TaskStatus.EXECUTING, action="execute")
    assert info.value.message == "cannot execute: task is queued"
    assert info.value.details == {"current_status": "queued", "requested": "executing"}


def test_execution_needs_an_approval_first() -> None:
    assert not can_transition(TaskStatus.AWAITING_APPROVAL, TaskStatus.EXECUTING)
    assert can_transition(TaskStatus.AWAITING_APPROVAL, TaskStatus.APPROVED)
    assert can_transition(TaskStatus.APPROVED, TaskStatus.EXECUTING)


def _step(sid: str, tools: list[str], deps: list[str] | None = None) -> PlanStep:
    return PlanStep(id=sid, title=sid, instruction=f"do {sid}", tools=tools, depends_on=deps or [])


def test_plan_checks_report_every_problem_in_words_a_model_can_act_on() -> None:
    plan = Plan(
        summary="s",
        steps=[_step("a", ["x.known", "x.nope"], ["zz"]), _step("a", [], ["a"]), _step("bad id!", [])],
    )
    assert check_plan(plan, known_tools={"x.known"}, max_steps=2) == [
        "the plan has 3 steps; at most 2 are allowed",
        "step 'a' names unknown tool 'x.nope'",
        "step 'a' depends on unknown step 'zz'",
        "step id 'a' is used twice",
        "step 'a' depends on itself",
        "step id 'bad id!' must be 1-40 letters, digits, '_' or '-'",
    ]


def test_cycles_are_rejected_and_order_respects_dependencies() -> None:
    cyclic = Plan(summary="s", steps=[_step("a", [], ["b"]), _step("b", [], ["a"])])
    assert check_plan(cyclic, known_tools=set(), max_steps=5) == ["the steps' depends_on form a cycle: a -> b -> a"]
    plan = Plan(summary="s", steps=[_step("c", [], ["b"]), _step("a", []), _step("b", [], ["a"])])
    assert [s.id for s in execution_order(plan)] == ["a", "b", "c"]
    independent = Plan(summary="s", steps=[_step("d", []), _step("f", [], ["d"]), _step("e", []), _step("g", [])])
    assert [s.id for s in execution_order(independent)] == ["d", "f", "e", "g"]  # the plan's order among ready steps
    assert plan.servers() == set()


def test_the_content_hash_changes_with_the_content_only() -> None:
    one = Plan(summary="s", steps=[_step("a", ["x.t"])])
    same = Plan.model_validate(one.model_dump())
    other = Plan(summary="s", steps=[_step("a", ["x.u"])])
    assert one.content_hash() == same.content_hash() != other.content_hash()
    assert one.content_hash().startswith("sha256:")
