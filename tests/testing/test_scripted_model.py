"""agent_runtime.testing: the scripted model answers by its rules in process, and no service code imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from agent_runtime.agents.verify import Verification
from agent_runtime.domain.plan import Plan
from agent_runtime.llm.base import Message, ToolSpec
from agent_runtime.llm.factory import build_llm_client
from agent_runtime.settings import Provider
from agent_runtime.testing import ScriptedModel, ToolCalls, one_step_plan, resolved_for

SRC = Path(__file__).resolve().parents[2] / "src" / "agent_runtime"
ECHO = ToolSpec(name="example.echo", description="echo", input_schema={"type": "object"})


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_module_of_the_service_imports_the_testing_package() -> None:
    offenders = [
        str(path.relative_to(SRC))
        for path in sorted(SRC.rglob("*.py"))
        if "testing" not in path.relative_to(SRC).parts
        and any(m == "agent_runtime.testing" or m.startswith("agent_runtime.testing.") for m in _imported_modules(path))
    ]
    assert offenders == []


async def test_the_in_process_model_plans_calls_the_steps_tools_then_answers_with_text() -> None:
    llm = ScriptedModel(one_step_plan("example.echo"), {"s1": [("example.echo", {"text": "hi"})]}).client()
    plan, _ = await llm.generate_structured(system="plan", messages=[Message("user", "Request: hi")], schema=Plan)
    assert [(s.id, s.tools) for s in plan.steps] == [("s1", ["example.echo"])]

    prompt = Message("user", "Your step (s1: example.echo):\ncall example.echo")
    first = await llm.generate(system="run", messages=[prompt], tools=[ECHO])
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("example.echo", {"text": "hi"})]

    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    result = Message("tool", "hi", tool_call_id=first.tool_calls[0].id, tool_name="example.echo")
    second = await llm.generate(
        system="run",
        messages=[prompt, Message("assistant", tool_calls=first.tool_calls), result],
        tools=[ECHO],
        on_text_delta=on_delta,
    )
    assert second.tool_calls == ()
    assert second.text == "step done: hi"
    assert "".join(deltas) == second.text and len(deltas) > 1
    assert len(llm.spans) == 3 and llm.seconds >= 0


async def test_rules_can_be_functions_of_the_conversation_and_text_need_not_stream() -> None:
    def calls(conversation: str, step_id: str) -> ToolCalls:
        return [] if "quiet" in conversation else [("example.echo", {"text": step_id})]

    model = ScriptedModel(one_step_plan("example.echo"), calls, step_text="ok", text_deltas=0)
    llm = model.client()
    loud = await llm.generate(system="", messages=[Message("user", "Your step (s1: x):\nsay")], tools=[ECHO])
    assert [c.arguments for c in loud.tool_calls] == [{"text": "s1"}]

    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    quiet = await llm.generate(
        system="", messages=[Message("user", "Your step (s1: x):\nquiet")], tools=[ECHO], on_text_delta=on_delta
    )
    assert (quiet.text, quiet.tool_calls, deltas) == ("ok", (), [])


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_behind_the_wire_fake_the_model_answers_either_providers_sdk_by_the_same_rules(
    provider: Provider,
) -> None:
    model = ScriptedModel(one_step_plan("example.echo"), {"s1": [("example.echo", {"text": "hi"})]})
    llm = build_llm_client(resolved_for(provider), http_client=model.fake().http_client())
    try:
        plan, _ = await llm.generate_structured(system="plan", messages=[Message("user", "Request: hi")], schema=Plan)
        asked = [Message("user", "met?")]
        verdict, _ = await llm.generate_structured(system="check", messages=asked, schema=Verification)
        prompt = Message("user", "Your step (s1: example.echo):\ncall example.echo")
        first = await llm.generate(system="run", messages=[prompt], tools=[ECHO])
        result = Message("tool", "hi", tool_call_id=first.tool_calls[0].id, tool_name="example.echo")
        turns = [prompt, Message("assistant", tool_calls=first.tool_calls), result]
        second = await llm.generate(system="run", messages=turns, tools=[ECHO])
        summary = await llm.generate(system="sum", messages=[Message("user", "Summarise.")], tools=[])
    finally:
        await llm.aclose()

    assert [(s.id, s.tools) for s in plan.steps] == [("s1", ["example.echo"])]
    assert verdict.met is True
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("example.echo", {"text": "hi"})]
    assert (second.text, second.tool_calls) == ("step done: hi", ())
    assert summary.text == "summary: all steps finished"
