"""OpenAI adapter: Chat Completions through ``openai.AsyncOpenAI``.

``generate`` streams (``stream=True`` with ``include_usage``), forwards text deltas as they arrive
and assembles the streamed tool-call fragments. ``generate_structured`` sends the pydantic schema
as a strict ``json_schema`` response format (built once per schema with the SDK's
``pydantic_function_tool``) and validates the reply with the schema. Tool names cross the wire in
provider-safe form (:mod:`.naming`); SDK retries are off and :mod:`.retry` does the retrying and
error translation. Requests go through the SDK's aiohttp transport (``openai.DefaultAioHttpClient``;
why: :mod:`.base`).

The request bodies are built here, typed with the SDK's own ``CompletionCreateParams*``
TypedDicts, and sent with the client's public ``post`` (its documented way to send a request the
typed methods would send, with the client's headers, auth, timeouts and errors). The typed
methods ``chat.completions.create``/``parse`` walk every message and tool schema against the
params' union types on each call (``_async_transform_recursive``, a no-op for Chat Completions
bodies, which have no aliased or formatted fields), and ``parse`` rebuilds the schema's strict
JSON schema each call: with four model calls per task that was ~30 % of the service's CPU
(17.4-18.8 -> 12.2-13.1 ms per task, 53-57 -> 76-81 tasks/s; docs/benchmarks.md).
``tests/llm/test_provider_clients.py`` checks the bodies against what the SDK's helpers build.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
import pydantic
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionAssistantMessageParam,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)
from openai.types.shared_params import ResponseFormatJSONSchema

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

OPENAI_ERRORS = SDKErrors(
    base=openai.OpenAIError,
    status=openai.APIStatusError,
    timeout=openai.APITimeoutError,
    connection=openai.APIConnectionError,
)
TOOL_ERROR_PREFIX = "[tool error] "
CHAT_COMPLETIONS = "/chat/completions"
# A structured reply that stopped for these reasons is not the whole answer (what parse() raised on).
CUT_SHORT = {
    "length": "it reached max_output_tokens: raise llm.<role>.max_output_tokens",
    "content_filter": "the provider's content filter stopped it",
}
ChunkStream = openai.AsyncStream[ChatCompletionChunk]
# Stop reasons in one vocabulary across providers (Anthropic's words).
STOP_REASONS = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}


class OpenAIClient(LLMClient):
    """Chat Completions with function tools, streaming and strict structured output."""

    provider = "openai"

    def __init__(self, resolved: ResolvedLLM, *, http_client: httpx2.AsyncClient | None = None) -> None:
        if resolved.api_key is None:
            raise ConfigError("llm provider 'openai' needs an API key: set OPENAI_API_KEY")
        self.model = resolved.model
        self._settings = resolved
        self._policy = RetryPolicy.from_settings(resolved)
        self._client = openai.AsyncOpenAI(
            api_key=resolved.api_key.get_secret_value(),
            base_url=resolved.base_url,
            timeout=resolved.timeout_seconds,
            max_retries=0,
            # aiohttp's connection pool, not httpx2's: see llm/base.py.
            http_client=http_client if http_client is not None else openai.DefaultAioHttpClient(),
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
        wire = to_openai_messages(system, messages, ToolNameMap())

        body: CompletionCreateParamsNonStreaming = {
            "model": self.model,
            "messages": wire,
            "response_format": response_format(schema),
            "max_completion_tokens": self._settings.max_output_tokens,
        }
        if self._settings.temperature is not None:
            body["temperature"] = self._settings.temperature

        async def attempt() -> tuple[ModelT, Usage]:
            completion = await self._client.post(CHAT_COMPLETIONS, cast_to=ChatCompletion, body=body)
            choice = completion.choices[0] if completion.choices else None
            if choice is not None and choice.finish_reason in CUT_SHORT:
                why = CUT_SHORT[choice.finish_reason]
                raise LLMError(
                    f"openai: structured output for {schema.__name__} was cut short ({why})",
                    provider=self.provider,
                    details={"finish_reason": choice.finish_reason},
                )
            message = choice.message if choice is not None else None
            if message is None or message.refusal or not message.content:
                reason = message.refusal if message is not None and message.refusal else "no content"
                raise LLMError(
                    f"openai: no structured output for {schema.__name__}: {reason}",
                    provider=self.provider,
                )
            try:
                parsed = schema.model_validate_json(message.content)
            except pydantic.ValidationError as exc:
                raise schema_mismatch(self.provider, schema, exc) from exc
            usage = completion.usage
            return parsed, Usage(
                input_tokens=usage.prompt_tokens if usage else 0,
                output_tokens=usage.completion_tokens if usage else 0,
            )

        return await call_with_retries(attempt, policy=self._policy, provider=self.provider, errors=OPENAI_ERRORS)

    async def generate(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        on_text_delta: TextDeltaHandler | None = None,
    ) -> LLMResponse:
        names = ToolNameMap(t.name for t in tools)
        wire = to_openai_messages(system, messages, names)
        wire_tools = [to_openai_tool(t, names) for t in tools]

        body: CompletionCreateParamsStreaming = {
            "model": self.model,
            "messages": wire,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_completion_tokens": self._settings.max_output_tokens,
        }
        if wire_tools:
            body["tools"] = wire_tools
        if self._settings.temperature is not None:
            body["temperature"] = self._settings.temperature

        async def attempt() -> LLMResponse:
            turn = _StreamedTurn()
            try:
                stream = await self._client.post(
                    CHAT_COMPLETIONS, cast_to=ChatCompletion, body=body, stream=True, stream_cls=ChunkStream
                )
                async with stream:
                    async for chunk in stream:
                        delta_text = turn.add(chunk)
                        if delta_text and on_text_delta is not None:
                            turn.emitted = True
                            await on_text_delta(delta_text)
            except (openai.OpenAIError, httpx2.TransportError) as exc:
                if not turn.emitted:
                    raise
                # Text already reached the caller: a retry would repeat it.
                error = translate_error(exc, provider=self.provider, errors=OPENAI_ERRORS)
                error.retryable = False
                raise error from exc
            return turn.response(names, self.provider)

        return await call_with_retries(attempt, policy=self._policy, provider=self.provider, errors=OPENAI_ERRORS)


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(slots=True)
class _StreamedTurn:
    """Accumulates one streamed completion."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    emitted: bool = False

    def add(self, chunk: ChatCompletionChunk) -> str:
        """Fold ``chunk`` in; return its text delta ("" if none)."""
        if chunk.usage is not None:
            self.usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        if not chunk.choices:
            return ""
        choice = chunk.choices[0]
        if choice.finish_reason is not None:
            self.finish_reason = choice.finish_reason
        for part in choice.delta.tool_calls or ():
            call = self.calls.setdefault(part.index, _PartialCall())
            if part.id:
                call.id = part.id
            if part.function is not None:
                call.name += part.function.name or ""
                call.arguments += part.function.arguments or ""
        content = choice.delta.content or ""
        if content:
            self.text.append(content)
        return content

    def response(self, names: ToolNameMap, provider: str) -> LLMResponse:
        calls = tuple(
            ToolCallRequest(
                id=call.id,
                name=names.from_wire(call.name),
                arguments=parse_arguments(call.arguments, provider),
            )
            for _, call in sorted(self.calls.items())
        )
        return LLMResponse(
            text="".join(self.text),
            tool_calls=calls,
            usage=self.usage,
            stop_reason=STOP_REASONS.get(self.finish_reason or "", self.finish_reason),
        )


def parse_arguments(raw: str, provider: str) -> dict[str, Any]:
    """Tool-call arguments as a dict; the model sending anything but a JSON object is an error."""
    try:
        value = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise LLMError(f"{provider}: tool call arguments are not valid JSON", provider=provider) from exc
    if not isinstance(value, dict):
        raise LLMError(f"{provider}: tool call arguments are not a JSON object", provider=provider)
    return value


def to_openai_tool(tool: ToolSpec, names: ToolNameMap) -> ChatCompletionFunctionToolParam:
    return {
        "type": "function",
        "function": {
            "name": names.to_wire(tool.name),
            "description": tool.description,
            "parameters": tool.input_schema,
        },
    }


def to_openai_messages(system: str, messages: list[Message], names: ToolNameMap) -> list[ChatCompletionMessageParam]:
    """Our provider-neutral turns as Chat Completions messages."""
    wire: list[ChatCompletionMessageParam] = []
    if system:
        wire.append({"role": "system", "content": system})
    for message in messages:
        if message.role == "user":
            wire.append({"role": "user", "content": message.content})
        elif message.role == "assistant":
            assistant: ChatCompletionAssistantMessageParam = {
                "role": "assistant",
                "content": message.content or None,
            }
            if message.tool_calls:
                assistant["tool_calls"] = [_tool_call(call, names) for call in message.tool_calls]
            wire.append(assistant)
        else:
            content = message.content
            if message.is_error:
                content = TOOL_ERROR_PREFIX + content
            wire.append({"role": "tool", "tool_call_id": message.tool_call_id or "", "content": content})
    return wire


def _tool_call(call: ToolCallRequest, names: ToolNameMap) -> ChatCompletionMessageFunctionToolCallParam:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": names.to_wire(call.name), "arguments": json.dumps(call.arguments)},
    }


@functools.cache
def response_format(schema: type[pydantic.BaseModel]) -> ResponseFormatJSONSchema:
    """The strict ``json_schema`` response format for ``schema``, built once per schema."""
    strict = openai.pydantic_function_tool(schema)["function"]
    return {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__, "schema": strict.get("parameters", {}), "strict": True},
    }
