"""The usage meter's tool-call limit with steps running in parallel: a turn's calls are reserved
when its check passes, so two steps' turns cannot pass the limit together."""

from __future__ import annotations

import pytest

from agent_runtime.agents.execution import BudgetExceededError
from agent_runtime.services.usage import UsageMeter


def test_parallel_turns_cannot_pass_the_tool_call_limit_together() -> None:
    meter = UsageMeter(budget={"tool_calls": 3})
    meter.check("tool", calls=2, step_id="a")  # a's turn: 2 calls, not made yet
    with pytest.raises(BudgetExceededError) as breach:
        meter.check("tool", calls=2, step_id="b")  # 0 made + 2 reserved by a + 2 > 3
    assert breach.value.limit == "tool_calls"
    meter.check("tool", calls=1, step_id="b")  # 1 fits beside a's 2
    for step in ("a", "a", "b"):
        meter.tool_call(step)
    assert meter.usage["tool_calls"] == 3
    with pytest.raises(BudgetExceededError):
        meter.check("tool", calls=1, step_id="c")


def test_a_step_frees_what_its_turn_reserved_and_did_not_make() -> None:
    meter = UsageMeter(budget={"tool_calls": 3})
    meter.check("tool", calls=3, step_id="a")
    meter.tool_call("a")  # one of three made; the step then ends (the others were not needed)
    meter.release("a")
    meter.check("tool", calls=2, step_id="b")  # 1 made + 2 = 3: fits (without the release: 1 + 2 + 2)
    with pytest.raises(BudgetExceededError):
        meter.check("tool", calls=1, step_id="c")  # 1 made + 2 reserved by b + 1 > 3


def test_a_steps_next_turn_replaces_its_own_reservation() -> None:
    meter = UsageMeter(budget={"tool_calls": 2})
    meter.check("tool", calls=2, step_id="a")
    meter.check("tool", calls=2, step_id="a")  # the same step asks again: not counted twice
    meter.tool_call("a")
    meter.tool_call("a")
    with pytest.raises(BudgetExceededError):
        meter.check("tool", calls=1, step_id="a")
