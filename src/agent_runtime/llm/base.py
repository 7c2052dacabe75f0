"""The LLM boundary: a small interface every provider adapter implements.

Messages and tool specs here are provider-neutral. Tool names are our namespaced ``server.tool``
form; adapters translate them to whatever the provider accepts (OpenAI and Anthropic allow only
``[a-zA-Z0-9_-]``) and back, so callers never see the wire names.

Both adapters send their requests through the SDKs' own aiohttp transport (``DefaultAioHttpClient``,
the ``[aiohttp]`` extra) instead of their default httpx2 pool. httpx2's pool checks every pooled
connection on each request (``_assign_requests_to_connections`` -> ``has_expired`` -> a socket
readability probe), so with a few dozen model calls in flight a quarter of the service's CPU went to
that bookkeeping; aiohttp's pool hands out an idle connection without the scan. Measured through the
service: 23.5-25.6 -> 16.4-17.2 ms of service CPU per task, 39-42 -> 58-61 tasks/s
(docs/benchmarks.md, "Real MCP servers through the service"). Tests pass an in-process httpx2
client bound to the fake LLM instead; the loopback tests go through aiohttp.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

ModelT = TypeVar("ModelT", bound=BaseModel)

TextDeltaHandler = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call: namespaced name, description, JSON schema of its arguments."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """The model asks to call ``name`` (namespaced) with ``arguments``."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Message:
    """One conversation turn.

    ``role="assistant"`` may carry ``tool_calls``; ``role="tool"`` carries the result of one call,
    with ``tool_call_id`` naming it and ``is_error`` telling whether the tool reported an error.
    """

    role: Literal["user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolCallRequest, ...] = ()
    tool_call_id: str | None = None
    tool_name: str | None = None
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    """One call's tokens, and which model answered it.

    ``provider``/``model`` are set when the answering model may differ from the client's own
    (:class:`agent_runtime.llm.fallback.FallbackLLM` sets them); ``None`` means the client's own."""

    input_tokens: int = 0
    output_tokens: int = 0
    provider: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class LLMResponse:
    """One model turn: text (possibly empty) and zero or more tool calls."""

    text: str
    tool_calls: tuple[ToolCallRequest, ...] = ()
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None


class LLMClient(abc.ABC):
    """A chat model with tool calling and structured output.

    Implementations retry 429/5xx/timeouts with backoff and raise only
    :class:`agent_runtime.errors.LLMError` subclasses.
    """

    provider: str
    model: str

    @abc.abstractmethod
    async def generate_structured(
        self,
        *,
        system: str,
        messages: list[Message],
        schema: type[ModelT],
        tools_hint: list[ToolSpec] | None = None,
    ) -> tuple[ModelT, Usage]:
        """Return an instance of ``schema`` produced by the model (JSON-schema structured output).

        ``tools_hint`` lists the tools the answer may refer to. Real providers read them from the
        prompt; the offline test model uses them to produce a plan that names real tools.
        """

    @abc.abstractmethod
    async def generate(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        on_text_delta: TextDeltaHandler | None = None,
    ) -> LLMResponse:
        """One assistant turn, streamed: text deltas go to ``on_text_delta`` as they arrive."""

    async def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Do now what the first call would otherwise wait for (e.g. import the provider SDK)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release HTTP connections."""
