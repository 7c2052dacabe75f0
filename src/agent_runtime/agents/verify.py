"""Verification: after the last step, ask the executor's model whether the task's request was met,
with the steps' results as evidence. The verdict is recorded, not enforced: a task whose verdict is
"not met" still completes, with ``verification.met`` false in its result (see the README)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agent_runtime.agents import prompts
from agent_runtime.llm.base import LLMClient, LLMResponse, Message


class Verification(BaseModel):
    """The model's verdict (its structured output)."""

    model_config = ConfigDict(extra="forbid")

    met: bool = Field(description="Whether the step results show the request was met.")
    reason: str = Field(description="One sentence: why, or what is missing.")


async def verify(llm: LLMClient, prompt: str, outputs: dict[str, str]) -> tuple[Verification, LLMResponse]:
    """Ask ``llm`` for a verdict; return it with the call's usage (as a response, for the journal)."""
    verdict, usage = await llm.generate_structured(
        system=prompts.VERIFY_SYSTEM,
        messages=[Message(role="user", content=prompts.verification_request(prompt, outputs))],
        schema=Verification,
    )
    return verdict, LLMResponse(text=verdict.model_dump_json(), usage=usage)
