"""An LLMClient that builds its provider client (and imports its SDK) on first use.

``import openai`` costs about a second here and ``import anthropic`` two to three: paid at
start-up they delay readiness. :class:`LazyLLM` defers the import to :meth:`LazyLLM.prepare`, which
the service starts in the background once it is serving, or to the first call, whichever comes
first. The import runs in a worker thread, so the event loop keeps serving while it runs.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from agent_runtime.llm.base import LLMClient, LLMResponse, Message, ModelT, TextDeltaHandler, ToolSpec, Usage


class LazyLLM(LLMClient):
    """Stands in for the client ``build`` makes, calling ``build`` once, on first need."""

    def __init__(self, provider: str, model: str, build: Callable[[], LLMClient]) -> None:
        self.provider = provider
        self.model = model
        self._build = build
        self._client: LLMClient | None = None
        self._lock = anyio.Lock()

    async def prepare(self) -> LLMClient:
        """Build the client now (in a worker thread) if it is not built yet; return it."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await anyio.to_thread.run_sync(self._build)
        return self._client

    async def warm_up(self) -> None:
        await self.prepare()

    async def generate_structured(
        self,
        *,
        system: str,
        messages: list[Message],
        schema: type[ModelT],
        tools_hint: list[ToolSpec] | None = None,
    ) -> tuple[ModelT, Usage]:
        client = await self.prepare()
        return await client.generate_structured(system=system, messages=messages, schema=schema, tools_hint=tools_hint)

    async def generate(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        on_text_delta: TextDeltaHandler | None = None,
    ) -> LLMResponse:
        client = await self.prepare()
        return await client.generate(system=system, messages=messages, tools=tools, on_text_delta=on_text_delta)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
