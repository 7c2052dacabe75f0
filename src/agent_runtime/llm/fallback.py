"""An LLMClient decorator that falls back to the next model of a role when one is out.

``llm.<role>.fallback`` lists models tried in order after the primary. A model is *out* when its
call failed with an error that says nothing about the request: a 429, 5xx, timeout or connection
failure that outlasted the client's own retries (the adapters mark those ``retryable``; by the
time one reaches us the retries are spent), or a refused key (401/403). A 400/404/422, a reply
that breaks the schema, or a stream that failed after text reached the caller is raised as is:
another model would get the same request, and streamed text cannot be taken back.

Why a refused key falls back: the request is not at fault (another provider would answer it),
and a revoked or rotated key is, for this service, an outage of that provider like any other. It
is a configuration problem all the same, so it is logged at error level on every call
(``llm_fallback`` with ``reason="auth"``) and ``/metrics`` counts it under the primary's labels; the
plan's author and each ``llm_usage`` event name the model that actually answered.

The answering model is reported per call, on the returned :class:`Usage` (``provider`` and
``model``), not by changing what this client reports: one client serves many tasks at once.
When every model is out, the last model's error is raised, with ``details["models_tried"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import structlog

from agent_runtime.errors import LLMAuthError, LLMError
from agent_runtime.llm.base import LLMClient, LLMResponse, Message, ModelT, TextDeltaHandler, ToolSpec, Usage

log = structlog.get_logger(__name__)

T = TypeVar("T")


def falls_back(error: LLMError) -> bool:
    """Whether ``error`` means the model is out (try the next one) rather than the request is wrong."""
    return error.retryable or isinstance(error, LLMAuthError)


def answered_by(usage: Usage, client: LLMClient) -> Usage:
    """``usage`` naming ``client`` as the model that answered (an inner fallback's name wins)."""
    if usage.model is not None:
        return usage
    return dataclasses.replace(usage, provider=client.provider, model=client.model)


class FallbackLLM(LLMClient):
    """Calls ``chain[0]``; while a model is out (:func:`falls_back`), the next one."""

    def __init__(self, chain: Sequence[LLMClient]) -> None:
        if not chain:
            raise ValueError("FallbackLLM needs at least one client")
        self.chain = tuple(chain)
        self.provider = self.chain[0].provider
        self.model = self.chain[0].model

    async def _first_answer(self, call: Callable[[LLMClient], Awaitable[T]]) -> tuple[T, LLMClient]:
        tried: list[str] = []
        for index, client in enumerate(self.chain):
            name = f"{client.provider}/{client.model}"
            try:
                return await call(client), client
            except LLMError as exc:
                tried.append(name)
                last = index == len(self.chain) - 1
                if last or not falls_back(exc):
                    if index > 0:
                        exc.details["models_tried"] = tried
                    raise
                nxt = self.chain[index + 1]
                auth = isinstance(exc, LLMAuthError)
                (log.error if auth else log.warning)(
                    "llm_fallback",
                    reason="auth" if auth else "unavailable",
                    failed=name,
                    next=f"{nxt.provider}/{nxt.model}",
                    error_code=exc.code.value,
                    status=exc.details.get("status"),
                    attempts=exc.details.get("attempts"),
                    message="the API key was refused: fix it; calls go to the next model meanwhile" if auth else None,
                )
        raise AssertionError("unreachable")

    async def generate_structured(
        self,
        *,
        system: str,
        messages: list[Message],
        schema: type[ModelT],
        tools_hint: list[ToolSpec] | None = None,
    ) -> tuple[ModelT, Usage]:
        (value, usage), client = await self._first_answer(
            lambda c: c.generate_structured(system=system, messages=messages, schema=schema, tools_hint=tools_hint)
        )
        return value, answered_by(usage, client)

    async def generate(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        on_text_delta: TextDeltaHandler | None = None,
    ) -> LLMResponse:
        response, client = await self._first_answer(
            lambda c: c.generate(system=system, messages=messages, tools=tools, on_text_delta=on_text_delta)
        )
        return dataclasses.replace(response, usage=answered_by(response.usage, client))

    async def warm_up(self) -> None:
        """The primary's SDK is imported ahead of the first call; the fallbacks' wait until needed."""
        await self.chain[0].warm_up()

    async def aclose(self) -> None:
        for client in self.chain:
            await client.aclose()
