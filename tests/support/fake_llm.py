"""Moved to :mod:`agent_runtime.testing.fake_server`; this re-export keeps older imports working. Import from
``agent_runtime.testing`` in new code."""

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

__all__ = [
    "IN_PROCESS_ROOT",
    "TEST_MODELS",
    "FakeLLM",
    "RecordedRequest",
    "Reply",
    "Responder",
    "ScriptedCall",
    "resolved_for",
    "serve_on_loopback",
]
