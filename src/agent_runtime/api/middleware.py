"""Request context: a request id on every log line and response, a trace span per request, and
(``server.access_log``) one ``http_request`` log line per request when its response has ended."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_runtime.observability.tracing import Tracing

HEADER = "x-request-id"
_HEADER = HEADER.encode()
log = structlog.get_logger(__name__)
_SAFE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` (the last one, if repeated) if it is safe to log and echo, else a new
    random one (16 hex digits)."""
    given = None
    for name, value in headers:
        if name == _HEADER:  # ASGI servers lower-case header names
            given = value
    if given is not None:
        request_id = given.decode("latin-1")
        if _SAFE.match(request_id):
            return request_id
    return os.urandom(8).hex()


class RequestContext:
    """Pure ASGI middleware (streams pass through untouched)."""

    def __init__(self, app: ASGIApp, tracing: Callable[[], Tracing | None], access_log: bool = False) -> None:
        self.app = app
        self._tracing = tracing
        self._access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope["headers"])
        header = (_HEADER, request_id.encode())
        status = 500  # no response started: the server answers 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
                status = message["status"]
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            tracing = self._tracing()
            if tracing is None or not tracing.enabled:
                await self.app(scope, receive, send_with_id)
                return
            with tracing.span(
                f"HTTP {scope['method']}",
                **{"http.method": scope["method"], "http.target": scope["path"]},
                request_id=request_id,
            ):
                await self.app(scope, receive, send_with_id)
        finally:
            if self._access_log:  # the path only: query strings may carry cursors and filters
                duration_ms = round((time.perf_counter() - started) * 1000, 2)
                log.info("http_request", method=scope["method"], path=scope["path"], status=status,
                         duration_ms=duration_ms)  # fmt: skip
            structlog.contextvars.reset_contextvars(**tokens)
