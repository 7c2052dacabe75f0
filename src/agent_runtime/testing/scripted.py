"""The scripted test model: one set of rules, served in process or behind the wire-protocol fake.

* ``model.client()`` is an :class:`LLMClient` that answers in process with no I/O and no sleeping (a
  zero-latency reply): for tests of the service's own logic and for benchmarks that measure the
  service, not a provider. It records the wall-clock span of every call (``ScriptedLLM.spans``).
* ``model.fake()`` is a :class:`FakeLLM` server answering with the same rules over the OpenAI Chat
  Completions wire protocol, for tests (and benchmarks) that go through the real OpenAI SDK.

Rules: a planning request (structured output) gets ``plan``; a verification request (the
``Verification`` schema, ``agents/verify.py``) gets ``verdict``. An executor turn whose last message
names a step (``Your step (s1: ...``, as ``agents/prompts.py`` writes it) calls that step's tools
(``calls``) once each; once tool results are in the conversation, or when the step has no calls, it
answers with text; any other turn answers with the summary. ``plan`` and ``calls`` are fixed values
or functions of the conversation text. Deterministic: the reply depends only on the request.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent_runtime.llm.base import (
    LLMClient,
    LLMResponse,
    Message,
    ModelT,
    TextDeltaHandler,
    ToolCallRequest,
    ToolSpec,
    Usage,
)
from agent_runtime.llm.factory import build_llm_client
from agent_runtime.runtime import Overrides
from agent_runtime.settings import Provider
from agent_runtime.testing.fake_server import FakeLLM, RecordedRequest, Reply, ScriptedCall, resolved_for

ToolCalls = list[tuple[str, dict[str, Any]]]
"""The (namespaced tool name, arguments) pairs a scripted model calls in one turn."""
PlanRule = Callable[[str], dict[str, Any]]
"""Conversation text -> the plan (as the ``Plan`` schema's JSON)."""
CallRule = Callable[[str, str], ToolCalls]
"""(conversation text, step id) -> the calls of that step's first turn; ``[]`` answers with text."""

_STEP = re.compile(r"Your step \(([^:()]+):")
VERIFICATION_SCHEMA = "Verification"
"""The name of the verification verdict's schema (``agents.verify.Verification``)."""


def wire(name: str) -> str:
    """The provider-side name of a namespaced tool (``files.read`` -> ``files__read``)."""
    server, _, tool = name.partition(".")
    return f"{server}__{tool}"


def tokens(text: str) -> int:
    """A rough token count: four characters a token, at least one."""
    return max(1, len(text) // 4)


def pieces(text: str, deltas: int) -> tuple[str, ...]:
    """``text`` cut into about ``deltas`` streamed pieces (at least one)."""
    size = max(1, -(-len(text) // max(1, deltas)))
    return tuple(text[i : i + size] for i in range(0, len(text), size)) or ("",)


@dataclass
class ScriptedModel:
    plan: dict[str, Any] | PlanRule
    calls: dict[str, ToolCalls] | CallRule = field(default_factory=dict)
    """step id -> [(tool, arguments)] the model calls in that step's first turn (or a :data:`CallRule`)."""
    step_text: str | None = None
    """The answer after a step's tool results; None: ``step done: <the results>``."""
    summary_text: str = "summary: all steps finished"
    text_deltas: int = 3
    """How many pieces text answers are streamed in; 0 (in process only): returned, not streamed."""
    verdict: dict[str, Any] | PlanRule = field(
        default_factory=lambda: {"met": True, "reason": "scripted: the step results meet the request"}
    )
    """The answer to a verification request (``{"met": bool, "reason": str}``), or a function of the
    conversation text giving it."""

    # -- the rules, on plain values ----------------------------------------------------------------

    def plan_for(self, conversation: str) -> dict[str, Any]:
        return self.plan(conversation) if callable(self.plan) else self.plan

    def structured_for(self, schema_name: str, conversation: str) -> dict[str, Any]:
        """A structured-output answer: the verdict for a verification, else the plan."""
        if schema_name == VERIFICATION_SCHEMA:
            return self.verdict(conversation) if callable(self.verdict) else self.verdict
        return self.plan_for(conversation)

    def calls_for(self, conversation: str, step_id: str) -> ToolCalls:
        if callable(self.calls):
            return self.calls(conversation, step_id)
        return self.calls.get(step_id, [])

    def turn(self, conversation: str, last_role: str, last_text: str, results: list[str]) -> str | ToolCalls:
        """An executor turn: the text to answer with, or the tool calls to make."""
        if last_role == "tool":
            return self.step_text if self.step_text is not None else ("step done: " + " | ".join(results))[:400]
        step = _STEP.search(last_text)
        if step is None:
            return self.summary_text
        calls = self.calls_for(conversation, step.group(1))
        if not calls:
            return self.step_text if self.step_text is not None else "step done: no tool needed"
        return calls

    # -- served behind the wire-protocol fake ------------------------------------------------------

    def __call__(self, request: RecordedRequest) -> Reply:
        """The :data:`~agent_runtime.testing.fake_server.Responder`: OpenAI Chat Completions or Anthropic Messages."""
        body = request.body
        turns = _anthropic_turns(body) if request.api == "anthropic" else _openai_turns(body)
        conversation = "\n".join(text for _, text in turns)
        # Usage as a provider would count it, roughly: four characters a token of what was sent
        # (messages and tool schemas) and of what comes back.
        sent = tokens(json.dumps(body["messages"]) + json.dumps(body.get("tools") or []))
        schema_name = _structured_schema_name(request.api, body)
        if schema_name is not None:
            answer_json = self.structured_for(schema_name, conversation)
            return Reply(json=answer_json, input_tokens=sent, output_tokens=tokens(json.dumps(answer_json)))
        results = [text for role, text in turns if role == "tool"]
        answer = self.turn(conversation, turns[-1][0], turns[-1][1], results)
        if isinstance(answer, str):
            return Reply(text=pieces(answer, self.text_deltas), input_tokens=sent, output_tokens=tokens(answer))
        calls = [ScriptedCall(name=wire(tool), arguments=args) for tool, args in answer]
        return Reply(tool_calls=tuple(calls), input_tokens=sent, output_tokens=tokens(json.dumps(answer)))

    def fake(self) -> FakeLLM:
        return FakeLLM(responder=self)

    # -- served in process ---------------------------------------------------------------------------

    def client(self) -> ScriptedLLM:
        return ScriptedLLM(self)


class ScriptedLLM(LLMClient):
    """A :class:`ScriptedModel` as an in-process ``LLMClient``: no I/O, no sleeping.

    ``spans`` holds the wall-clock (start, end) of every call, minus the time spent in the caller's
    ``on_text_delta`` callback, so a benchmark can subtract the model's own cost.
    """

    provider = "scripted"
    model = "scripted-test-model"

    def __init__(self, script: ScriptedModel) -> None:
        self.script = script
        self.spans: list[tuple[float, float]] = []

    @property
    def seconds(self) -> float:
        """Total time spent inside the model's calls."""
        return sum(end - start for start, end in self.spans)

    async def generate_structured(
        self,
        *,
        system: str,
        messages: list[Message],
        schema: type[ModelT],
        tools_hint: list[ToolSpec] | None = None,
    ) -> tuple[ModelT, Usage]:
        started = time.time()
        value = schema.model_validate(self.script.structured_for(schema.__name__, _conversation(messages)))
        self.spans.append((started, time.time()))
        return value, Usage(input_tokens=1, output_tokens=1)

    async def generate(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        on_text_delta: TextDeltaHandler | None = None,
    ) -> LLMResponse:
        started, in_callback = time.time(), 0.0
        last = messages[-1]
        results = [m.content for m in messages if m.role == "tool"]
        answer = self.script.turn(_conversation(messages), last.role, last.content, results)
        if isinstance(answer, str):
            if on_text_delta is not None and self.script.text_deltas > 0:
                for piece in pieces(answer, self.script.text_deltas):
                    before = time.time()
                    await on_text_delta(piece)
                    in_callback += time.time() - before
            response = LLMResponse(text=answer, usage=Usage(1, 1), stop_reason="end_turn")
        else:
            base = len(self.spans)
            requests = tuple(
                ToolCallRequest(id=f"call_{base}_{i}", name=tool, arguments=args)
                for i, (tool, args) in enumerate(answer)
            )
            response = LLMResponse(text="", tool_calls=requests, usage=Usage(1, 1), stop_reason="tool_use")
        self.spans.append((started, time.time() - in_callback))
        return response


def _structured_schema_name(api: str, body: dict[str, Any]) -> str | None:
    """The schema's name when ``body`` asks for structured output, else None."""
    if api == "anthropic":  # its format carries no name: the pydantic schema's title is the model's name
        schema = ((body.get("output_config") or {}).get("format") or {}).get("schema")
        return None if schema is None else str(schema.get("title", ""))
    if "response_format" in body:
        return str((body["response_format"].get("json_schema") or {}).get("name", ""))
    return None


def _openai_turns(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of each Chat Completions message."""
    return [(str(m["role"]), str(m.get("content") or "")) for m in body["messages"]]


def _anthropic_turns(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of the system prompt and each Messages API block, a ``tool_result`` as a "tool" turn."""
    system = body.get("system") or ""
    turns: list[tuple[str, str]] = [("system", _text_of(system))] if system else []
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            turns.append((str(message["role"]), content))
            continue
        for block in content:
            if block["type"] == "text":
                turns.append((str(message["role"]), str(block["text"])))
            elif block["type"] == "tool_result":
                inner = block.get("content") or ""
                turns.append(("tool", _text_of(inner)))
    return turns


def _text_of(content: str | list[dict[str, Any]]) -> str:
    return content if isinstance(content, str) else "".join(str(block.get("text", "")) for block in content)


def _conversation(messages: list[Message]) -> str:
    return "\n".join(m.content for m in messages)


def wire_overrides(fake: FakeLLM, provider: Provider) -> Overrides:
    """Planner and executor both ``provider``'s real SDK, talking to ``fake`` in process."""
    client: LLMClient = build_llm_client(resolved_for(provider), http_client=fake.http_client())
    return Overrides(planner_llm=client, executor_llm=client)


def openai_overrides(fake: FakeLLM) -> Overrides:
    """Planner and executor both the real OpenAI SDK, talking to ``fake`` in process."""
    return wire_overrides(fake, "openai")


def one_step_plan(tool: str, step_id: str = "s1") -> dict[str, Any]:
    return {
        "summary": f"use {tool}",
        "steps": [{"id": step_id, "title": tool, "instruction": f"call {tool}", "tools": [tool], "depends_on": []}],
    }


__all__ = [
    "CallRule",
    "PlanRule",
    "ScriptedLLM",
    "ScriptedModel",
    "ToolCalls",
    "one_step_plan",
    "openai_overrides",
    "pieces",
    "wire",
]
