"""A scriptable fake LLM server speaking the real wire protocols, for tests through the real SDKs.

It serves ``POST /v1/chat/completions`` (OpenAI Chat Completions: JSON or SSE chunks with
tool-call deltas and the usage chunk) and ``POST /v1/messages`` (Anthropic Messages: JSON or the
typed SSE event sequence). Replies come from a queue of :class:`Reply` scripts, then from an
optional ``responder`` callback; every request body is recorded in :attr:`FakeLLM.requests`.

Use it in process (``fake.http_client()`` -> ``httpx2.ASGITransport``) or on loopback
(``with serve_on_loopback(fake) as root:``). SDK base URLs: OpenAI ``{root}/v1``, Anthropic ``{root}``.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import SecretStr

from agent_runtime.settings import Provider, ResolvedLLM

Api = Literal["openai", "anthropic"]
IN_PROCESS_ROOT = "http://fake-llm.test"
TEST_MODELS: dict[Provider, str] = {
    "openai": "gpt-4.1-mini",
    "anthropic": "claude-sonnet-4-6",
    "offline": "offline-test",
}
_WIRE_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def resolved_for(provider: Provider, root: str = IN_PROCESS_ROOT, **overrides: Any) -> ResolvedLLM:
    """LLM settings pointing ``provider`` at a fake served at ``root``; retries back off ~1 ms."""
    values: dict[str, Any] = {
        "provider": provider,
        "model": TEST_MODELS[provider],
        "base_url": f"{root}/v1" if provider == "openai" else root,
        "api_key": SecretStr("sk-test-not-a-real-key"),
        "timeout_seconds": 5.0,
        "max_retries": 2,
        "retry_base_delay_seconds": 0.001,
        "max_output_tokens": 256,
        "temperature": None,
    }
    values.update(overrides)
    return ResolvedLLM(**values)


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    """A tool call the fake model makes; ``name`` is the wire name (e.g. ``files__read``)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted model turn, or an HTTP error when ``status`` >= 400.

    ``text`` as a tuple is streamed chunk by chunk exactly as given; ``json`` (structured output)
    is sent as the text content, which is what ``.parse()`` in both SDKs reads.
    """

    text: str | tuple[str, ...] = ""
    tool_calls: tuple[ScriptedCall, ...] = ()
    json: Any = None
    status: int = 200
    retry_after: str | None = None
    error_message: str = "scripted error"
    delay_seconds: float = 0.0
    input_tokens: int = 11
    output_tokens: int = 7
    stream_error: str | None = None
    """Streaming only: an in-stream error event of this type (e.g. ``overloaded_error``) after the text."""
    finish_reason: str | None = None
    """OpenAI, not streamed: the choice's ``finish_reason`` (e.g. ``length``) instead of ``stop``/``tool_calls``."""

    @classmethod
    def error(cls, status: int, *, retry_after: str | None = None, message: str = "scripted error") -> Reply:
        return cls(status=status, retry_after=retry_after, error_message=message)

    @classmethod
    def calls(cls, *calls: ScriptedCall, text: str = "") -> Reply:
        return cls(text=text, tool_calls=calls)

    @property
    def chunks(self) -> tuple[str, ...]:
        if self.json is not None:
            body = json.dumps(self.json)
            return (body[: len(body) // 2], body[len(body) // 2 :])
        if isinstance(self.text, tuple):
            return self.text
        size = max(1, -(-len(self.text) // 3))  # about three deltas
        return tuple(self.text[i : i + size] for i in range(0, len(self.text), size)) or ("",)

    @property
    def content(self) -> str:
        return "".join(self.chunks)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    api: Api
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def streamed(self) -> bool:
        return bool(self.body.get("stream"))


Responder = Callable[[RecordedRequest], Reply]


class FakeLLM:
    """Scripted replies in, recorded requests out."""

    def __init__(self, *replies: Reply, responder: Responder | None = None) -> None:
        self.replies: deque[Reply] = deque(replies)
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self.responder_errors: list[Exception] = []
        self._lock = threading.Lock()
        self._release = threading.Event()  # cuts scripted delays short when a loopback server stops
        self.app = self._build_app()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def http_client(self) -> httpx2.AsyncClient:
        """An in-process client for the SDKs' ``http_client`` (base URL: :data:`IN_PROCESS_ROOT`)."""
        return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=self.app), base_url=IN_PROCESS_ROOT)

    def _next(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self.replies:
                return self.replies.popleft()
        if self.responder is None:
            return Reply.error(400, message="FakeLLM: no scripted reply left and no responder")
        try:
            return self.responder(request)
        except Exception as exc:  # a bug in a test's responder: report it, do not look like a network error
            self.responder_errors.append(exc)
            return Reply.error(400, message=f"FakeLLM responder raised {type(exc).__name__}: {exc}")

    def _build_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            return await self._handle("openai", request)

        @app.post("/v1/messages")
        async def messages(request: Request) -> Response:
            return await self._handle("anthropic", request)

        return app

    async def _handle(self, api: Api, request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        recorded = RecordedRequest(api, body, {k.lower(): v for k, v in request.headers.items()})
        reply = self._next(recorded)
        if reply.delay_seconds > 0:
            await asyncio.to_thread(self._release.wait, reply.delay_seconds)
        bad = [t for t in _tool_names(api, body) if not _WIRE_NAME.match(t)]
        if bad:
            reply = Reply.error(400, message=f"invalid tool name(s): {bad}")
        if reply.status >= 400:
            return _error(api, reply)
        if api == "openai":
            if recorded.streamed:
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return _sse(_openai_chunks(reply, body, include_usage))
            return JSONResponse(_openai_completion(reply, body))
        if recorded.streamed:
            return _sse(_anthropic_events(reply, body))
        return JSONResponse(_anthropic_message(reply, body))


def _tool_names(api: Api, body: dict[str, Any]) -> list[str]:
    tools: list[dict[str, Any]] = body.get("tools") or []
    if api == "openai":
        return [str(t.get("function", {}).get("name", "")) for t in tools]
    return [str(t.get("name", "")) for t in tools]


def _error(api: Api, reply: Reply) -> Response:
    headers = {"retry-after": reply.retry_after} if reply.retry_after is not None else {}
    kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}.get(
        reply.status, "rate_limit_error" if reply.status == 429 else "api_error"
    )
    body: dict[str, Any] = {"error": {"type": kind, "message": reply.error_message}}
    if api == "openai":
        body["error"].update(code=None, param=None)
    else:
        body = {"type": "error", **body}
    return JSONResponse(body, status_code=reply.status, headers=headers)


def _sse(events: Iterator[tuple[str | None, str]]) -> StreamingResponse:
    async def stream() -> AsyncIterator[bytes]:
        for event, data in events:
            prefix = f"event: {event}\n" if event else ""
            yield f"{prefix}data: {data}\n\n".encode()

    return StreamingResponse(stream(), media_type="text/event-stream")


def _call_id(api: Api, index: int, call: ScriptedCall) -> str:
    return call.id or ("call_" if api == "openai" else "toolu_") + f"fake{index}"


# --- OpenAI Chat Completions ---------------------------------------------------------------------


def _openai_usage(reply: Reply) -> dict[str, int]:
    used = {"prompt_tokens": reply.input_tokens, "completion_tokens": reply.output_tokens}
    return {**used, "total_tokens": reply.input_tokens + reply.output_tokens}


def _openai_completion(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content or None, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": _call_id("openai", i, c),
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for i, c in enumerate(reply.tool_calls)
        ]
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": _openai_usage(reply),
    }


def _openai_chunks(reply: Reply, body: dict[str, Any], include_usage: bool) -> Iterator[tuple[None, str]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, str]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0}
        return None, json.dumps({**base, "model": body.get("model", "fake"), "choices": [choice]})

    yield chunk({"role": "assistant", "content": ""})
    for piece in reply.chunks:
        if piece:
            yield chunk({"content": piece})
    if reply.stream_error:
        yield None, json.dumps({"error": {"type": reply.stream_error, "message": reply.error_message}})
        return
    for i, call in enumerate(reply.tool_calls):
        head = {"index": i, "id": _call_id("openai", i, call), "type": "function"}
        yield chunk({"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]})
        args = json.dumps(call.arguments)
        for part in (args[: len(args) // 2], args[len(args) // 2 :]):
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]})
    yield chunk({}, "tool_calls" if reply.tool_calls else "stop")
    if include_usage:
        usage = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "choices": []}
        yield None, json.dumps({**usage, "model": body.get("model", "fake"), "usage": _openai_usage(reply)})
    yield None, "[DONE]"


# --- Anthropic Messages --------------------------------------------------------------------------


def _anthropic_message(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.content}] if reply.content else []
    content += [
        {"type": "tool_use", "id": _call_id("anthropic", i, c), "name": c.name, "input": c.arguments}
        for i, c in enumerate(reply.tool_calls)
    ]
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "fake"),
        "content": content,
        "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def _anthropic_events(reply: Reply, body: dict[str, Any]) -> Iterator[tuple[str, str]]:
    def event(kind: str, **data: Any) -> tuple[str, str]:
        return kind, json.dumps({"type": kind, **data})

    start = {**_anthropic_message(reply, body), "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": reply.input_tokens, "output_tokens": 1}
    yield event("message_start", message=start)
    yield event("ping")
    index = 0
    if reply.content:
        yield event("content_block_start", index=0, content_block={"type": "text", "text": ""})
        for piece in reply.chunks:
            if piece:
                yield event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
        yield event("content_block_stop", index=0)
        index = 1
    if reply.stream_error:
        yield event("error", error={"type": reply.stream_error, "message": reply.error_message})
        return
    for i, call in enumerate(reply.tool_calls, start=index):
        block = {"type": "tool_use", "id": _call_id("anthropic", i, call), "name": call.name, "input": {}}
        yield event("content_block_start", index=i, content_block=block)
        args = json.dumps(call.arguments)
        for part in (args[: len(args) // 2], args[len(args) // 2 :]):
            yield event("content_block_delta", index=i, delta={"type": "input_json_delta", "partial_json": part})
        yield event("content_block_stop", index=i)
    stop = "tool_use" if reply.tool_calls else "end_turn"
    delta = {"stop_reason": stop, "stop_sequence": None}
    yield event("message_delta", delta=delta, usage={"output_tokens": reply.output_tokens})
    yield event("message_stop")


# --- serving on loopback -------------------------------------------------------------------------


class _ThreadedServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()


@contextmanager
def serve_on_loopback(
    fake: FakeLLM, *, startup_timeout: float = 10.0, tls: tuple[str, str] | None = None
) -> Iterator[str]:
    """Serve ``fake`` with uvicorn on 127.0.0.1 (free port) in a thread; yield its root URL.

    ``tls``: (certificate chain file, key file): serve HTTPS instead."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    certfile, keyfile = tls if tls is not None else (None, None)
    config = uvicorn.Config(fake.app, lifespan="off", log_config=None, log_level="warning", access_log=False, ws="none",
                            ssl_certfile=certfile, ssl_keyfile=keyfile)  # fmt: skip
    server = _ThreadedServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="fake-llm", daemon=True)
    thread.start()
    try:
        if not server.ready.wait(startup_timeout) or not server.started:
            raise RuntimeError("fake LLM server did not start")
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        fake._release.set()
        server.should_exit = True
        thread.join(startup_timeout)
        sock.close()
        fake._release.clear()
