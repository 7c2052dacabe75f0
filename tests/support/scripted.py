"""A rule-driven model behind the fake LLM server, for service tests through the real OpenAI SDK.

Planner requests (structured output) get ``plan``; executor turns call the tools listed for the
step (found by step id in the prompt) once each, then answer with text. Deterministic: the reply
depends only on the request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agent_runtime.llm.base import LLMClient
from agent_runtime.llm.factory import build_llm_client
from agent_runtime.runtime import Overrides
from tests.support.fake_llm import FakeLLM, RecordedRequest, Reply, ScriptedCall, resolved_for

ToolCalls = list[tuple[str, dict[str, Any]]]
"""The (namespaced tool name, arguments) pairs a scripted model calls in one turn."""


def wire(name: str) -> str:
    server, _, tool = name.partition(".")
    return f"{server}__{tool}"


@dataclass
class ScriptedModel:
    plan: dict[str, Any]
    calls: dict[str, ToolCalls] = field(default_factory=dict)
    """step id -> [(tool, arguments)] the model calls in that step's first turn."""

    def __call__(self, request: RecordedRequest) -> Reply:
        body = request.body
        if "response_format" in body:
            return Reply(json=self.plan)
        messages: list[dict[str, Any]] = body["messages"]
        if messages[-1]["role"] == "tool":
            results = [m["content"] for m in messages if m["role"] == "tool"]
            return Reply(text=("step done: " + " | ".join(str(r) for r in results))[:400])
        prompt = str(messages[-1]["content"])
        for step_id, calls in self.calls.items():
            if f"Your step ({step_id}:" in prompt:
                return Reply.calls(*[ScriptedCall(name=wire(t), arguments=a) for t, a in calls])
        return Reply(text="summary: all steps finished")

    def fake(self) -> FakeLLM:
        return FakeLLM(responder=self)


def openai_overrides(fake: FakeLLM) -> Overrides:
    """Planner and executor both the real OpenAI SDK, talking to ``fake`` in process."""
    client: LLMClient = build_llm_client(resolved_for("openai"), http_client=fake.http_client())
    return Overrides(planner_llm=client, executor_llm=client)


def one_step_plan(tool: str, step_id: str = "s1") -> dict[str, Any]:
    return {
        "summary": f"use {tool}",
        "steps": [{"id": step_id, "title": tool, "instruction": f"call {tool}", "tools": [tool], "depends_on": []}],
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj)
