"""Anthropic adapter: the Messages API through ``anthropic.AsyncAnthropic``.

``generate`` uses ``messages.stream()``: text deltas are forwarded as they arrive and
``tool_use`` blocks become :class:`ToolCallRequest` records. Tool results go back as
``tool_result`` blocks (with ``is_error``) inside a user turn; consecutive user-side turns are
merged, as the API wants roles to alternate. ``generate_structured`` uses ``messages.parse``
with ``output_format=schema`` (sent as ``output_config.format``) and validates the reply.
The Messages API of this SDK generation has no ``temperature`` parameter, so that setting is
not sent to Anthropic. Requests go through the SDK's aiohttp transport (why: :mod:`.base`).
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import pydantic
from anthropic.types import (
    ContentBlockParam,
    MessageParam,
    ToolParam,
)
from anthropic.types import (
    Usage as AnthropicUsage,
)

from agent_runtime.errors import ConfigError, LLMError
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
from agent_runtime.llm.naming import ToolNameMap
from agent_runtime.llm.retry import RetryPolicy, SDKErrors, call_with_retries, schema_mismatch, translate_error
from agent_runtime.settings import ResolvedLLM

ANTHROPIC_ERRORS = SDKErrors(
    base=anthropic.AnthropicError,
    status=anthropic.APIStatusError,
    timeout=anthropic.APITimeoutError,
    connection=anthropic.APIConnectionError,
)


class AnthropicClient(LLMClient):
    """Messages API with tools, streaming and structured output."""

    provider = "anthropic"

    def __init__(self, resolved: ResolvedLLM, *, http_client: httpx2.AsyncClient | None = None) -> None:
        if resolved.api_key is None:
            raise ConfigError("llm provider 'anthropic' needs an API key: set ANTHROPIC_API_KEY")
        self.model = resolved.model
        self._settings = resolved
        self._policy = RetryPolicy.from_settings(resolved)
        self._client = anthropic.AsyncAnthropic(
            api_key=resolved.api_key.get_secret_value(),
            base_url=resolved.base_url,
            timeout=resolved.timeout_seconds,
            max_retries=0,
            # aiohttp's connection pool, not httpx2's: see llm/base.py.
            http_client=http_client if http_client is not None else anthropic.DefaultAioHttpClient(),
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def generate_structured(
        self,
        *,
        system: str,
        messages: list[Message],
        schema: type[ModelT],
        tools_hint: list[ToolSpec] | None = None,
    ) -> tuple[ModelT, Usage]:
        wire = to_anthropic_messages(messages, ToolNameMap())

        async def attempt() -> tuple[ModelT, Usage]:
            try:
                reply = await self._client.messages.parse(
                    model=self.model,
                    max_tokens=self._settings.max_output_tokens,
                    system=system or anthropic.omit,
                    messages=wire,
                    output_format=schema,
                )
            except pydantic.ValidationError as exc:
                raise schema_mismatch(self.provider, schema, exc) from exc
            parsed = reply.parsed_output
            if parsed is None:
                raise LLMError(
                    f"anthropic: no structured output for {schema.__name__} (stop reason {reply.stop_reason})",
                    provider=self.provider,
                )
            return parsed, _usage(reply.usage)

        return await call_with_retries(attempt, policy=self._policy, provider=self.provider, errors=ANTHROPIC_ERRORS)

    async def generate(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        on_text_delta: TextDeltaHandler | None = None,
    ) -> LLMResponse:
        names = ToolNameMap(t.name for t in tools)
        wire = to_anthropic_messages(messages, names)
        wire_tools = [to_anthropic_tool(t, names) for t in tools]

        async def attempt() -> LLMResponse:
            emitted = False
            try:
                async with self._client.messages.stream(
                    model=self.model,
                    max_tokens=self._settings.max_output_tokens,
                    system=system or anthropic.omit,
                    messages=wire,
                    tools=wire_tools if wire_tools else anthropic.omit,
                ) as stream:
                    async for event in stream:
                        if event.type == "text" and event.text and on_text_delta is not None:
                            emitted = True
                            await on_text_delta(event.text)
                    final = await stream.get_final_message()
            except (anthropic.AnthropicError, httpx2.TransportError) as exc:
                if not emitted:
                    raise
                # Text already reached the caller: a retry would repeat it.
                error = translate_error(exc, provider=self.provider, errors=ANTHROPIC_ERRORS)
                error.retryable = False
                raise error from exc
            text: list[str] = []
            calls: list[ToolCallRequest] = []
            for block in final.content:
                if block.type == "text":
                    text.append(block.text)
                elif block.type == "tool_use":
                    calls.append(
                        ToolCallRequest(
                            id=block.id,
                            name=names.from_wire(block.name),
                            arguments=dict(block.input),
                        )
                    )
            return LLMResponse(
                text="".join(text),
                tool_calls=tuple(calls),
                usage=_usage(final.usage),
                stop_reason=final.stop_reason,
            )

        return await call_with_retries(attempt, policy=self._policy, provider=self.provider, errors=ANTHROPIC_ERRORS)


def to_anthropic_tool(tool: ToolSpec, names: ToolNameMap) -> ToolParam:
    schema: dict[str, Any] = tool.input_schema or {"type": "object", "properties": {}}
    return {
        "name": names.to_wire(tool.name),
        "description": tool.description,
        "input_schema": schema,
    }


def to_anthropic_messages(messages: list[Message], names: ToolNameMap) -> list[MessageParam]:
    """Our turns as Messages API turns. Roles must alternate, so consecutive user-side turns (tool
    results, then user text) share one message; empty turns are dropped."""
    groups: list[tuple[bool, list[ContentBlockParam]]] = []  # (is_assistant, blocks)
    for message in messages:
        blocks: list[ContentBlockParam] = []
        if message.role == "tool":
            blocks.append(
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id or "",
                    "content": message.content,
                    "is_error": message.is_error,
                }
            )
        elif message.content:
            blocks.append({"type": "text", "text": message.content})
        for call in message.tool_calls:
            blocks.append(
                {"type": "tool_use", "id": call.id, "name": names.to_wire(call.name), "input": call.arguments}
            )
        assistant = message.role == "assistant"
        if groups and groups[-1][0] == assistant:
            groups[-1][1].extend(blocks)
        elif blocks:
            groups.append((assistant, blocks))
    return [
        {"role": "assistant", "content": blocks} if assistant else {"role": "user", "content": blocks}
        for assistant, blocks in groups
    ]


def _usage(usage: AnthropicUsage) -> Usage:
    cached = (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    return Usage(input_tokens=usage.input_tokens + cached, output_tokens=usage.output_tokens)
