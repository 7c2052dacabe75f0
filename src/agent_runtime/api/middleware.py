"""Request context: a request id on every log line and response, and a trace span per request."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_runtime.observability.tracing import Tracing

HEADER = "x-request-id"
_SAFE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContext:
    """Pure ASGI middleware (streams pass through untouched)."""

    def __init__(self, app: ASGIApp, tracing: Callable[[], Tracing | None]) -> None:
        self.app = app
        self._tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(HEADER.encode(), b"").decode("latin-1")
        request_id = incoming if _SAFE.match(incoming) else secrets.token_hex(8)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER.encode(), request_id.encode())]
            await send(message)

        tracing = self._tracing()
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            if tracing is None or not tracing.enabled:
                await self.app(scope, receive, send_with_id)
                return
            with tracing.span(
                f"HTTP {scope['method']}",
                **{"http.method": scope["method"], "http.target": scope["path"]},
                request_id=request_id,
            ):
                await self.app(scope, receive, send_with_id)
