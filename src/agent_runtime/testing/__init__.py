"""Test doubles for agent-runtime's users, its own tests and its benchmarks; never imported by the service.

* :class:`ScriptedModel` (``scripted.py``): the scripted test model. ``model.client()`` answers in
  process with zero latency; ``model.fake()`` answers the same way through the real OpenAI or Anthropic SDK
  (``openai_overrides(fake)``, ``wire_overrides(fake, provider)``).
* :class:`FakeLLM` (``fake_server.py``): a fake server speaking the OpenAI Chat Completions and
  Anthropic Messages wire protocols, scripted reply by reply or by a responder; in process
  (``fake.http_client()``) or on loopback (``serve_on_loopback``).

Everything here needs only the service's runtime dependencies (FastAPI, uvicorn, httpx2 and the
provider SDKs), so it imports in a ``--no-dev`` install too.
"""

from agent_runtime.testing.fake_server import (
    IN_PROCESS_ROOT,
    TEST_MODELS,
    FakeLLM,
    RecordedRequest,
    Reply,
    Responder,
    ScriptedCall,
    resolved_for,
    serve_on_loopback,
)
from agent_runtime.testing.scripted import (
    CallRule,
    PlanRule,
    ScriptedLLM,
    ScriptedModel,
    ToolCalls,
    one_step_plan,
    openai_overrides,
    wire,
    wire_overrides,
)

__all__ = [
    "IN_PROCESS_ROOT",
    "TEST_MODELS",
    "CallRule",
    "FakeLLM",
    "PlanRule",
    "RecordedRequest",
    "Reply",
    "Responder",
    "ScriptedCall",
    "ScriptedLLM",
    "ScriptedModel",
    "ToolCalls",
    "one_step_plan",
    "openai_overrides",
    "resolved_for",
    "serve_on_loopback",
    "wire",
    "wire_overrides",
]
