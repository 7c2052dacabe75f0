"""A lean SSE response: a body of already-encoded chunks, one ASGI ``send`` per chunk.

Same wire behaviour as ``sse_starlette.EventSourceResponse`` as we used it (headers, ``: ping - <time>``
comments every ``ping_seconds``, the stream ends with the body, on client disconnect and on server
exit), without its per-chunk costs: no ``ServerSentEvent`` encoding (the body yields bytes) and no
cancel scope per send. With 1,000 followers every event is 1,000 sends, so this is the fan-out's hot
path; docs/benchmarks.md has the measurements behind the choice.

A send that stays blocked (the client stopped reading) for ``send_timeout`` seconds ends the stream;
it is noticed at the next keep-alive tick instead of by a timer around every send.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime

import anyio
from sse_starlette.sse import EventSourceResponse
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class SSEResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        *,
        ping_seconds: float,
        send_timeout: float,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = 200
        self.background = None
        self._body = body
        self._ping_seconds = ping_seconds
        self._send_timeout = send_timeout
        self._sending_since: float | None = None
        merged = MutableHeaders()
        merged.update(headers or {})
        merged.setdefault("Cache-Control", "no-store")
        merged["Connection"] = "keep-alive"
        merged["X-Accel-Buffering"] = "no"
        self.init_headers(merged)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if scope["method"] == "HEAD":  # headers only: an endless body would never complete
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._until_disconnected, receive, tg.cancel_scope)
                    tg.start_soon(self._until_server_exit, tg.cancel_scope)
                    tg.start_soon(self._keepalive, send, tg.cancel_scope)
                    await self._stream(send, tg.cancel_scope)
            except BaseExceptionGroup as group:  # the body's own error, not a group around it
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._body.aclose()  # runs the body's cleanup however the stream ended

    async def _stream(self, send: Send, scope: anyio.CancelScope) -> None:
        async for chunk in self._body:
            self._sending_since = time.monotonic()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self._sending_since = None
        self._sending_since = time.monotonic()  # no keep-alive after the end
        # Streams woken by the same (terminal) event send theirs before this one is torn down.
        await anyio.lowlevel.checkpoint()
        scope.cancel()  # the helpers; the send below does not wait unless the client is slow
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._send_timeout):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _until_disconnected(receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    @staticmethod
    async def _until_server_exit(scope: anyio.CancelScope) -> None:
        # sse-starlette's process-wide watcher of uvicorn's exit flag: one poller, one event per stream.
        await EventSourceResponse._listen_for_exit_signal()
        scope.cancel()

    async def _keepalive(self, send: Send, scope: anyio.CancelScope) -> None:
        while True:
            await anyio.sleep(self._ping_seconds)
            since = self._sending_since
            if since is not None:  # a chunk is being sent: no ping now, but is the client still reading?
                if time.monotonic() - since >= self._send_timeout:
                    scope.cancel()
                continue
            ping = f": ping - {datetime.now(UTC)}\r\n\r\n".encode()
            with anyio.move_on_after(self._send_timeout) as timer:
                await send({"type": "http.response.body", "body": ping, "more_body": True})
            if timer.cancelled_caught:
                scope.cancel()
