"""The lean SSE response: one send per chunk, keep-alive comments; ends with the body, the client, a stuck
send or the service's shutdown event."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import pytest
from starlette.types import Message, Scope

from agent_runtime.api.sse import LastChunk, SSEResponse

GET: Scope = {"type": "http", "method": "GET"}


class _Client:
    """The ASGI side: every message sent lands in ``sent``; ``leave()`` makes ``receive`` report a disconnect."""

    def __init__(self, *, stuck_after: int | None = None) -> None:
        self.sent: list[Message] = []
        self._arrived = anyio.Event()
        self._left = anyio.Event()
        self._stuck_after = stuck_after
        self._count = 0

    async def receive(self) -> Message:
        await self._left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self._count += 1
        if self._stuck_after is not None and self._count > self._stuck_after:
            await anyio.Event().wait()  # the client stopped reading: this send never completes
        self.sent.append(message)
        self._arrived.set()
        self._arrived = anyio.Event()

    async def message(self, index: int) -> Message:
        while len(self.sent) <= index:
            await self._arrived.wait()
        return self.sent[index]

    def bodies(self) -> list[tuple[bytes, bool]]:
        return [(m["body"], m["more_body"]) for m in self.sent if m["type"] == "http.response.body"]

    def leave(self) -> None:
        self._left.set()


class _Body:
    def __init__(self, chunks: list[bytes], *, then_wait: bool = False, then_raise: bool = False) -> None:
        self.chunks, self.then_wait, self.then_raise = chunks, then_wait, then_raise
        self.started = self.closed = False

    async def __call__(self) -> AsyncGenerator[bytes, None]:
        self.started = True
        try:
            for chunk in self.chunks:
                yield chunk
            if self.then_raise:
                raise ValueError("the store went away")
            if self.then_wait:
                await anyio.Event().wait()
        finally:
            self.closed = True


def _response(
    body: _Body, *, ping: float = 60, send_timeout: float = 30, shutdown: anyio.Event | None = None
) -> SSEResponse:
    return SSEResponse(
        body(),
        ping_seconds=ping,
        send_timeout=send_timeout,
        shutdown=shutdown or anyio.Event(),
        headers={"Cache-Control": "no-store"},
    )


async def test_each_chunk_is_one_send_and_the_response_ends_with_the_body() -> None:
    client, body = _Client(), _Body([b"id: 1\r\n\r\n", b"id: 2\r\n\r\nid: 3\r\n\r\n"])
    with anyio.fail_after(5):
        await _response(body)(GET, client.receive, client.send)
        start = client.sent[0]
        assert start["status"] == 200
        assert dict(start["headers"]) == {
            b"cache-control": b"no-store",
            b"connection": b"keep-alive",
            b"x-accel-buffering": b"no",
            b"content-type": b"text/event-stream; charset=utf-8",
        }
        assert client.bodies() == [
            (b"id: 1\r\n\r\n", True),
            (b"id: 2\r\n\r\nid: 3\r\n\r\n", True),
            (b"", False),
        ]
    assert body.closed


async def test_a_last_chunk_goes_out_with_the_end_of_the_response() -> None:
    client, body = _Client(), _Body([b"id: 1\r\n\r\n", LastChunk(b"id: 2\r\n\r\n"), b"never sent"])
    with anyio.fail_after(5):
        await _response(body)(GET, client.receive, client.send)
    assert client.bodies() == [(b"id: 1\r\n\r\n", True), (b"id: 2\r\n\r\n", False)]
    assert all(type(m["body"]) is bytes for m in client.sent[1:])
    assert body.closed


async def test_keepalive_comments_flow_until_the_client_disconnects_and_the_body_is_closed() -> None:
    client, body = _Client(), _Body([b"id: 1\r\n\r\n"], then_wait=True)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_response(body, ping=0.01), GET, client.receive, client.send)
            assert (await client.message(0))["type"] == "http.response.start"
            assert (await client.message(1))["body"] == b"id: 1\r\n\r\n"
            ping = await client.message(2)
            assert re.fullmatch(rb": ping - \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\+00:00\r\n\r\n", ping["body"])
            assert ping["more_body"] is True
            client.leave()
    assert body.closed


async def test_head_answers_with_headers_only_and_never_starts_the_body() -> None:
    client, body = _Client(), _Body([b"id: 1\r\n\r\n"], then_wait=True)
    with anyio.fail_after(5):
        await _response(body)({"type": "http", "method": "HEAD"}, client.receive, client.send)
    assert client.sent[0]["type"] == "http.response.start"
    assert client.bodies() == [(b"", False)]
    assert not body.started


async def test_a_client_that_stops_reading_loses_its_stream_after_the_send_timeout() -> None:
    client, body = _Client(stuck_after=1), _Body([b"id: 1\r\n\r\n"], then_wait=True)
    with anyio.fail_after(5):
        await _response(body, ping=0.01, send_timeout=0.05)(GET, client.receive, client.send)
    assert body.closed


async def test_an_error_in_the_body_surfaces_as_itself() -> None:
    client, body = _Client(), _Body([b"id: 1\r\n\r\n"], then_raise=True)
    with anyio.fail_after(5), pytest.raises(ValueError, match="the store went away"):
        await _response(body)(GET, client.receive, client.send)
    assert body.closed


async def test_the_stream_ends_when_the_shutdown_event_is_set_mid_stream_or_before() -> None:
    shutdown = anyio.Event()
    client, body = _Client(), _Body([b"id: 1\r\n\r\n"], then_wait=True)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_response(body, shutdown=shutdown), GET, client.receive, client.send)
            assert (await client.message(1))["body"] == b"id: 1\r\n\r\n"
            shutdown.set()  # what runtime.drain_runtime does
    assert body.closed
    assert client.bodies()[-1] == (b"", False)  # the response was ended, not cut off
    late, late_body = _Client(), _Body([], then_wait=True)
    with anyio.fail_after(5):
        await _response(late_body, shutdown=shutdown)(GET, late.receive, late.send)
    assert late_body.closed


async def test_an_error_in_a_watcher_surfaces_as_itself_and_ends_the_stream() -> None:
    class _Broken(_Client):
        async def receive(self) -> Message:
            raise RuntimeError("the server's receive failed")

    client, body = _Broken(), _Body([b"id: 1\r\n\r\n"], then_wait=True)
    with anyio.fail_after(5), pytest.raises(RuntimeError, match="receive failed"):
        await _response(body)(GET, client.receive, client.send)
    assert body.closed


def _tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks()


async def test_no_helper_task_outlives_the_response() -> None:
    before = _tasks()
    for chunks, ping in (([b"id: 1\r\n\r\n"], 60.0), ([], 0.01)):
        client, body = _Client(), _Body(chunks, then_wait=ping < 1)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_response(body, ping=ping), GET, client.receive, client.send)
                if ping < 1:
                    assert (await client.message(1))["body"].startswith(b": ping - ")  # the keep-alive task runs
                    client.leave()
        await asyncio.sleep(0)  # cancelled helpers finish on the next loop iteration
        assert _tasks() == before
        assert body.closed
