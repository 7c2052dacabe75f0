"""A lean SSE response: a body of already-encoded chunks, one ASGI ``send`` per chunk.

Same wire behaviour as ``sse_starlette.EventSourceResponse`` as we used it (headers, ``: ping - <time>``
comments every ``ping_seconds``, the stream ends with the body, on client disconnect and on the
service's shutdown), without its per-chunk costs: no ``ServerSentEvent`` encoding (the body yields
bytes) and no cancel scope per send. With 1,000 followers every event is 1,000 sends, so this is the
fan-out's hot path; docs/benchmarks.md has the measurements behind the choice. Shutdown is the
runtime's ``shutdown_event``, set when the drain starts (``runtime.drain_runtime``), instead of a
process-wide watcher of uvicorn's exit flag.

A send that stays blocked (the client stopped reading) for ``send_timeout`` seconds ends the stream;
it is noticed at the next keep-alive tick instead of by a timer around every send.

Per stream, the body is pumped by the request's own task inside one cancel scope; two plain asyncio
tasks watch for the client's disconnect and the shutdown event and cancel that scope when they see
it. The keep-alive task starts only when the first ping is due (a timer until then), so a stream
that ends within ``ping_seconds`` never has one. No task group: its scopes and task wrappers cost as
much as the rest of a short stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from datetime import UTC, datetime

import anyio
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class LastChunk(bytes):
    """A body chunk after which the body ends: it goes out with the end of the response, in one
    ``send`` (one socket write) instead of two. The body may still just end after a plain chunk."""


class SSEResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        *,
        ping_seconds: float,
        send_timeout: float,
        shutdown: anyio.Event,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """``shutdown``: once set, the stream ends (the client reconnects, with ``Last-Event-ID``)."""
        self.status_code = 200
        self.background = None
        self._body = body
        self._shutdown = shutdown
        self._ping_seconds = ping_seconds
        self._send_timeout = send_timeout
        self._sending_since: float | None = None
        self._error: BaseException | None = None
        self._client_left = False
        merged = MutableHeaders()
        merged.update(headers or {})
        merged.setdefault("Cache-Control", "no-store")
        merged["Connection"] = "keep-alive"
        merged["X-Accel-Buffering"] = "no"
        self.init_headers(merged)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The body's cleanup runs however the stream ended: shielded if it ended by an exception
        # (cancellation included), else there is nothing to shield it from.
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if scope["method"] == "HEAD":  # headers only: an endless body would never complete
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                await self._serve(receive, send)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._body.aclose()
            raise
        await self._body.aclose()

    async def _serve(self, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        helpers: list[asyncio.Task[None]] = []
        with anyio.CancelScope() as stop:
            done = self._on_helper_done(stop)
            for helper in (self._until_disconnected(receive), self._shutdown.wait()):
                task = loop.create_task(helper)
                task.add_done_callback(done)
                helpers.append(task)

            def start_keepalive() -> None:
                task = loop.create_task(self._keepalive(send, stop))
                task.add_done_callback(done)
                helpers.append(task)

            timer = loop.call_later(self._ping_seconds, start_keepalive)
            ended = False
            try:
                ended = await self._stream(send)
            finally:
                timer.cancel()
                for task in helpers:
                    task.cancel()
        if self._error is not None:
            raise self._error  # a helper's own error (as a task group would have raised it)
        shut_down = self._shutdown.is_set() and self._sending_since is None and not self._client_left
        if ended or shut_down:
            # the helpers are stopped; this send does not wait unless the client is slow. After a
            # shutdown between chunks the response is ended too, not cut off (uvicorn would log that).
            with anyio.move_on_after(self._send_timeout, shield=True):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _on_helper_done(self, stop: anyio.CancelScope) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            if task.cancelled():
                return  # the stream ended first and stopped it
            error = task.exception()
            if error is not None and self._error is None:
                self._error = error
            stop.cancel()

        return done

    async def _stream(self, send: Send) -> bool:
        """Send the body's chunks. True once the body has ended and the end of the response is still
        to be sent; False after a :class:`LastChunk` (it was sent with the end)."""
        async for chunk in self._body:
            last = isinstance(chunk, LastChunk)
            self._sending_since = time.monotonic()
            await send({"type": "http.response.body", "body": bytes(chunk), "more_body": not last})
            if last:
                break  # the sending mark stays: no keep-alive after the end
            self._sending_since = None
        else:
            last = False
            self._sending_since = time.monotonic()  # no keep-alive after the end
        # Streams woken by the same (terminal) event send theirs before this one is torn down.
        await asyncio.sleep(0)
        return not last

    async def _until_disconnected(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._client_left = True

    async def _keepalive(self, send: Send, stop: anyio.CancelScope) -> None:
        """From the first ping on: a ping every ``ping_seconds`` unless a chunk is being sent."""
        while True:
            since = self._sending_since
            if since is not None:  # a chunk is being sent: no ping now, but is the client still reading?
                if time.monotonic() - since >= self._send_timeout:
                    stop.cancel()
                    return
            else:
                ping = f": ping - {datetime.now(UTC)}\r\n\r\n".encode()
                with anyio.move_on_after(self._send_timeout) as timer:
                    await send({"type": "http.response.body", "body": ping, "more_body": True})
                if timer.cancelled_caught:
                    stop.cancel()
                    return
            await anyio.sleep(self._ping_seconds)
