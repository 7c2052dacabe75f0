"""An LLMClient decorator that counts calls, outcomes and tokens in the service's metrics."""

from __future__ import annotations

from agent_runtime.errors import LLMError
from agent_runtime.llm.base import LLMClient, LLMResponse, Message, ModelT, TextDeltaHandler, ToolSpec, Usage
from agent_runtime.observability.metrics import Metrics


class MeteredLLM(LLMClient):
    def __init__(self, inner: LLMClient, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.provider = inner.provider
        self.model = inner.model

    async def generate_structured(
        self,
        *,
        system: str,
        messages: list[Message],
        schema: type[ModelT],
        tools_hint: list[ToolSpec] | None = None,
    ) -> tuple[ModelT, Usage]:
        try:
            result, usage = await self.inner.generate_structured(
                system=system, messages=messages, schema=schema, tools_hint=tools_hint
            )
        except LLMError as exc:
            self.metrics.llm_call(self.provider, self.model, exc.code.value)
            raise
        self.metrics.llm_call(self.provider, self.model, "ok", usage.input_tokens, usage.output_tokens)
        return result, usage

    async def generate(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        on_text_delta: TextDeltaHandler | None = None,
    ) -> LLMResponse:
        try:
            response = await self.inner.generate(
                system=system, messages=messages, tools=tools, on_text_delta=on_text_delta
            )
        except LLMError as exc:
            self.metrics.llm_call(self.provider, self.model, exc.code.value)
            raise
        usage = response.usage
        self.metrics.llm_call(self.provider, self.model, "ok", usage.input_tokens, usage.output_tokens)
        return response

    async def warm_up(self) -> None:
        await self.inner.warm_up()

    async def aclose(self) -> None:
        await self.inner.aclose()
