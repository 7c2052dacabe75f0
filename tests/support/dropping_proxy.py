"""A TCP proxy on 127.0.0.1 that cuts task event streams mid-frame, as a dropped connection would.

It sits between a client and ``live_service``: bytes pass through unchanged, except that the n-th
``GET …/stream`` request's response is cut after ``cuts[n]`` whole SSE frames, a few bytes into the
next one, by closing both sockets. Requests after the listed cuts pass untouched. It records each
stream request's ``Last-Event-ID`` header, and can hide that header from the service
(``forget_position``) so that a reconnect replays from the start and the client must drop what it
already has.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import SocketAttribute, SocketStream

FRAME_START = b"\nid: "
LAST_EVENT_ID = re.compile(rb"\r\nlast-event-id: *([^\r]*)", re.IGNORECASE)


@dataclass
class DroppingProxy:
    upstream_port: int
    cuts: list[int]
    forget_position: bool = False
    url: str = ""
    stream_requests: list[str | None] = field(default_factory=list)
    """``Last-Event-ID`` of each stream request, in order (``None``: not sent)."""
    dropped: int = 0
    request_heads: list[bytes] = field(default_factory=list)
    """The first bytes of every request (method, path, headers), in order."""

    async def handle(self, client: SocketStream) -> None:
        async with client:
            upstream = await anyio.connect_tcp("127.0.0.1", self.upstream_port)
            async with upstream:
                state = _Connection()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._requests, client, upstream, state)
                    await self._responses(upstream, client, state)
                    tg.cancel_scope.cancel()

    async def _requests(self, client: SocketStream, upstream: SocketStream, state: _Connection) -> None:
        try:
            async for data in client:
                if data[:4] in (b"GET ", b"POST", b"PUT ") or data[:6] == b"DELETE":
                    self.request_heads.append(data.split(b"\r\n\r\n", 1)[0])
                    state.limit = None
                    state.response = b""
                    if data.startswith(b"GET ") and b"/stream" in data.split(b"\r\n", 1)[0]:
                        found = LAST_EVENT_ID.search(data)
                        self.stream_requests.append(found.group(1).decode() if found else None)
                        n = len(self.stream_requests) - 1
                        state.limit = self.cuts[n] if n < len(self.cuts) else None
                        if found and self.forget_position:
                            data = data[: found.start()] + b"\r\nx-forgotten-id:" + data[found.start() + 16 :]
                await upstream.send(data)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    async def _responses(self, upstream: SocketStream, client: SocketStream, state: _Connection) -> None:
        try:
            async for data in upstream:
                if state.limit is None:
                    await client.send(data)
                    continue
                before = len(state.response)
                state.response += data
                starts = [m.start() for m in re.finditer(re.escape(FRAME_START), state.response)]
                if len(starts) <= state.limit:
                    await client.send(data)
                    continue
                cut_at = starts[state.limit] + len(FRAME_START) + 1  # a few bytes into the next frame
                if cut_at > before:
                    await client.send(state.response[before:cut_at])
                self.dropped += 1
                return  # closing both sockets: the client sees the body end mid-chunk
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


@dataclass
class _Connection:
    limit: int | None = None
    response: bytes = b""


@asynccontextmanager
async def dropping_proxy(
    service_url: str, cuts: list[int], *, forget_position: bool = False
) -> AsyncIterator[DroppingProxy]:
    port = int(service_url.rsplit(":", 1)[1])
    proxy = DroppingProxy(upstream_port=port, cuts=cuts, forget_position=forget_position)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    proxy.url = f"http://127.0.0.1:{listener.extra(SocketAttribute.local_port)}"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy.handle)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()
