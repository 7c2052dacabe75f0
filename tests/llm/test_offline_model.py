"""The offline test model: schema-valid, tool-grounded and deterministic, with no network."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field, SecretStr

from agent_runtime.agents import prompts
from agent_runtime.agents.planner import PlannerAgent
from agent_runtime.agents.verify import Verification
from agent_runtime.domain.plan import Plan, check_plan
from agent_runtime.errors import ConfigError
from agent_runtime.llm.base import Message, ToolCallRequest, ToolSpec
from agent_runtime.llm.factory import build_llm_client
from agent_runtime.llm.offline import OFFLINE_MARK, OfflineTestModel
from agent_runtime.testing import resolved_for

TOOLS = [
    ToolSpec(
        name="files.read_file",
        description="Read the complete contents of a file from the workspace.",
        input_schema={"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    ),
    ToolSpec(
        name="files.write_file",
        description="Create or overwrite a file with new content.",
        input_schema={
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    ),
    ToolSpec(
        name="time.get_current_time",
        description="Get the current time in a specific timezone.",
        input_schema={
            "type": "object",
            "properties": {"timezone": {"type": "string", "description": "IANA name"}},
            "required": ["timezone"],
        },
    ),
]
REQUEST = "Read the notes file.\nWrite a short summary into summary.txt.\nWhat time is it in Tokyo?"


async def _plan(request: str = REQUEST, tools: list[ToolSpec] = TOOLS, feedback: str | None = None) -> Plan:
    previous = Plan(summary="old", steps=[]) if feedback else None
    text = prompts.planner_request(request, tools, feedback, previous)
    plan, usage = await OfflineTestModel().generate_structured(
        system="plan", messages=[Message(role="user", content=text)], schema=Plan, tools_hint=tools
    )
    assert usage.input_tokens > 0
    return plan


async def test_a_plan_names_only_hinted_tools_matched_to_each_sentence() -> None:
    plan = await _plan()

    assert [s.tools for s in plan.steps] == [["files.read_file"], ["files.write_file"], ["time.get_current_time"]]
    assert [s.instruction for s in plan.steps] == REQUEST.splitlines()
    assert plan.steps[0].title == "Read the notes file"
    assert plan.summary.startswith(OFFLINE_MARK)
    assert check_plan(plan, known_tools=[t.name for t in TOOLS], max_steps=12) == []


async def test_the_same_request_gives_the_same_plan() -> None:
    assert (await _plan()).content_hash() == (await _plan()).content_hash()


async def test_a_sentence_matching_no_tool_falls_back_to_the_first_hinted_tool() -> None:
    plan = await _plan("Do something nobody described", tools=TOOLS[2:])

    assert [s.tools for s in plan.steps] == [["time.get_current_time"]]


async def test_revision_feedback_adds_steps() -> None:
    plan = await _plan(feedback="Then write the result to result.txt.")

    assert len(plan.steps) == 4
    assert plan.steps[-1].tools == ["files.write_file"]


async def test_the_planner_agent_accepts_the_offline_plan_first_time() -> None:
    outcome = await PlannerAgent(OfflineTestModel(), max_steps=12).plan(REQUEST, TOOLS)

    assert outcome.attempts == 1
    assert outcome.author == "planner:offline/offline-test"
    assert outcome.plan.all_tools() <= {t.name for t in TOOLS}


class Task(BaseModel):
    id: int = Field(ge=10)
    description: str = Field(max_length=12)
    tools: list[str] = Field(min_length=1, max_length=1)


class OtherPlan(BaseModel):
    goal: str
    notes: str | None = None
    tasks: list[Task]


async def test_plan_shaped_schemas_with_other_field_names_are_recognised() -> None:
    plan, _ = await OfflineTestModel().generate_structured(
        system="", messages=[Message(role="user", content=REQUEST)], schema=OtherPlan, tools_hint=TOOLS
    )

    assert len(plan.tasks) == 3
    assert plan.tasks[2].tools == ["time.get_current_time"]
    assert plan.tasks[0].description == "Read the not"
    assert plan.notes is not None
    assert plan.notes.startswith(OFFLINE_MARK)


class Colour(BaseModel):
    name: Literal["red", "green"]
    weight: Annotated[float, Field(gt=0, le=0.5)]


class Anything(BaseModel):
    title: str = Field(min_length=3, pattern=r"^[A-Z]")
    count: int = Field(ge=5, multiple_of=5)
    when: dt.date
    colours: list[Colour] = Field(min_length=2)
    tags: dict[str, int]
    mode: Literal["a", "b"] = "b"
    child: Anything | None = None
    summary: str = ""


async def test_other_schemas_are_filled_validly_and_deterministically() -> None:
    model = OfflineTestModel()
    messages = [Message(role="user", content="make something up")]

    first, _ = await model.generate_structured(system="", messages=messages, schema=Anything)
    second, _ = await model.generate_structured(system="", messages=messages, schema=Anything)

    assert first == second
    assert first.count == 5
    assert len(first.colours) == 2
    assert first.mode == "b"
    assert first.summary.startswith(OFFLINE_MARK)


NOTES = [
    ToolSpec(
        name="example.write_note",
        description="Write (or overwrite) the note ``name`` with ``text`` in the workspace.",
        input_schema={
            "type": "object",
            "properties": {"name": {"type": "string"}, "text": {"type": "string"}},
            "required": ["name", "text"],
        },
    ),
    ToolSpec(
        name="example.read_note",
        description="Return the text of the note ``name``.",
        input_schema={"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    ),
]


async def test_a_plan_and_its_steps_carry_names_from_the_request_into_tool_arguments() -> None:
    request = "Write a note named hello saying hi, then read it back."
    model = OfflineTestModel()
    plan = (await PlannerAgent(model, max_steps=12).plan(request, NOTES)).plan
    calls: list[ToolCallRequest] = []
    for step in plan.steps:
        message = Message(role="user", content=prompts.step_request(request, plan, step, {}))
        specs = [t for t in NOTES if t.name in step.tools]
        calls += (await model.generate(system="", messages=[message], tools=specs)).tool_calls

    assert [s.instruction for s in plan.steps] == ["Write a note named hello saying hi", "Read it back."]
    assert [(c.name, c.arguments["name"]) for c in calls] == [
        ("example.write_note", "hello"),
        ("example.read_note", "hello"),
    ]


async def test_file_paths_and_urls_in_the_step_become_arguments() -> None:
    tool = ToolSpec(
        name="web.save",
        description="Save a page",
        input_schema={
            "type": "object",
            "properties": {"url": {"type": "string"}, "file_path": {"type": "string"}, "dir": {"type": "string"}},
            "required": ["url", "file_path", "dir"],
        },
    )
    text = "Fetch https://example.org/a?b=1 and store it in out/page.html please."

    response = await OfflineTestModel().generate(system="", messages=[Message(role="user", content=text)], tools=[tool])

    assert response.tool_calls[0].arguments == {
        "url": "https://example.org/a?b=1",
        "file_path": "out/page.html",
        "dir": ".",
    }


async def test_input_schemas_are_not_modified_and_refs_and_all_of_are_followed() -> None:
    schema = {
        "type": "object",
        "$defs": {
            "Point": {"type": "object", "properties": {"x": {"type": "integer", "minimum": 3}}, "required": ["x"]}
        },
        "properties": {"where": {"allOf": [{"$ref": "#/$defs/Point"}], "description": "a point"}},
        "required": ["where"],
    }
    before = json.dumps(schema, sort_keys=True)
    tool = ToolSpec(name="geo.mark", description="", input_schema=schema)

    response = await OfflineTestModel().generate(system="", messages=[Message(role="user", content="go")], tools=[tool])

    assert response.tool_calls[0].arguments == {"where": {"x": 3}}
    assert json.dumps(schema, sort_keys=True) == before


STEP_PROMPT = "Task request:\nDo it.\n\nPlan summary: x\n\nYour step (s1: Read):\nRead notes.txt please"
RICH_TOOL = ToolSpec(
    name="search.query",
    description="Search",
    input_schema={
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1},
            "limit": {"type": "integer", "minimum": 1, "maximum": 50},
            "order": {"type": "string", "enum": ["relevance", "date"]},
            "filters": {
                "type": "object",
                "properties": {"lang": {"type": "string"}, "since": {"type": "string", "format": "date"}},
                "required": ["since"],
                "additionalProperties": False,
            },
            "verbose": {"type": "boolean"},
        },
        "required": ["query", "limit", "order", "filters"],
        "additionalProperties": False,
    },
)


async def test_first_executor_turn_calls_each_offered_tool_with_schema_valid_arguments() -> None:
    tools = [RICH_TOOL, *TOOLS]
    messages = [Message(role="user", content=STEP_PROMPT)]

    response = await OfflineTestModel().generate(system="", messages=messages, tools=tools)
    again = await OfflineTestModel().generate(system="", messages=messages, tools=tools)

    assert response == again
    assert [c.name for c in response.tool_calls] == [t.name for t in tools[:3]]
    assert response.stop_reason == "tool_use"
    for call, tool in zip(response.tool_calls, tools, strict=False):
        jsonschema.validate(call.arguments, tool.input_schema)
    assert response.tool_calls[0].arguments["query"] == "Read notes.txt please"
    assert "verbose" not in response.tool_calls[0].arguments


async def test_after_tool_results_the_model_streams_a_labelled_summary() -> None:
    call = ToolCallRequest(id="c1", name="files.read_file", arguments={"path": "."})
    messages = [
        Message(role="user", content=STEP_PROMPT),
        Message(role="assistant", tool_calls=(call,)),
        Message(role="tool", content="hello from notes", tool_call_id="c1", tool_name="files.read_file"),
    ]
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    response = await OfflineTestModel().generate(system="", messages=messages, tools=TOOLS, on_text_delta=on_delta)

    assert response.tool_calls == ()
    assert response.text.startswith(OFFLINE_MARK)
    assert "files.read_file returned: hello from notes" in response.text
    assert len(deltas) > 1
    assert "".join(deltas) == response.text


async def test_without_tools_the_model_answers_in_text() -> None:
    response = await OfflineTestModel().generate(
        system="", messages=[Message(role="user", content="Summarise: all done")], tools=[]
    )

    assert response.text.startswith(OFFLINE_MARK)
    assert response.stop_reason == "end_turn"


def test_the_factory_builds_the_offline_model_without_a_key() -> None:
    client = build_llm_client(resolved_for("offline", api_key=None))

    assert isinstance(client, OfflineTestModel)
    assert (client.provider, client.model) == ("offline", "offline-test")


@pytest.mark.parametrize(("provider", "variable"), [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")])
def test_a_missing_key_is_a_config_error_naming_the_variable(provider: Any, variable: str) -> None:
    for key in (None, SecretStr("")):
        with pytest.raises(ConfigError, match=variable):
            build_llm_client(resolved_for(provider, api_key=key))


async def test_a_then_makes_a_step_wait_for_the_one_before_and_separate_sentences_are_independent() -> None:
    plan = await _plan("Read the notes file, then write a summary into summary.txt. What time is it in Tokyo?")
    assert [(s.id, s.depends_on) for s in plan.steps] == [("step-1", []), ("step-2", ["step-1"]), ("step-3", [])]
    assert check_plan(plan, known_tools={t.name for t in TOOLS}, max_steps=12) == []


@pytest.mark.parametrize(
    ("words", "on_failure"),
    [
        ("Retry on failure.", {"action": "retry", "attempts": 3, "backoff_seconds": 0.2}),
        ("Skip it on error.", {"action": "skip"}),
        ("replan on failure", {"action": "replan"}),
        ("", None),
    ],
)
async def test_words_of_the_request_set_the_plans_failure_policy(words: str, on_failure: Any) -> None:
    plan = await _plan(f"Read the notes file. {words}")

    got = plan.on_failure.model_dump(mode="json") if plan.on_failure else None
    assert got == on_failure
    assert plan.verify is None


async def test_verify_in_the_request_asks_for_verification_and_the_verdict_follows_the_results() -> None:
    assert (await _plan("Read the notes file and verify it.")).verify is True
    model = OfflineTestModel()

    async def verdict(outputs: dict[str, str]) -> Verification:
        text = prompts.verification_request("read", outputs)
        found, _usage = await model.generate_structured(
            system=prompts.VERIFY_SYSTEM, messages=[Message(role="user", content=text)], schema=Verification
        )
        return found

    assert (await verdict({"s1": "the notes say hi"})).met is True
    skipped = await verdict({"s1": "[step s1 was skipped after it failed: too many calls]", "s2": "ok"})
    assert skipped.met is False and "s1 was skipped" in skipped.reason and skipped.reason.startswith(OFFLINE_MARK)
