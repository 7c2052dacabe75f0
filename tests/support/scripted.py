"""Moved to :mod:`agent_runtime.testing.scripted`; this re-export keeps older imports working. Import from
``agent_runtime.testing`` in new code."""

from agent_runtime.testing.scripted import ScriptedModel, ToolCalls, one_step_plan, openai_overrides, wire

__all__ = ["ScriptedModel", "ToolCalls", "one_step_plan", "openai_overrides", "wire"]
